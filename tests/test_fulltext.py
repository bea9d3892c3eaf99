"""Full text: a source with full_text: true fetches each new article's page for its body."""

from __future__ import annotations

import gzip
import json

from conftest import CORPORA, Workdir, rss
from monitor.parse import main_text
from servers import FeedServer, WebhookReceiver

NEWS = CORPORA / "articles" / "trafilatura-en-news" / "tests"


def test_main_text_on_real_news_pages() -> None:
    cases = json.loads((NEWS / "evaldata.en-news-subset.json").read_text())
    found = wanted = unwanted = leaked = 0
    for case in cases.values():
        path = NEWS / "cache" / (case["file"] + ".gz")
        if not path.exists():
            continue
        text = main_text(gzip.decompress(path.read_bytes()))
        found += sum(snippet in text for snippet in case["with"])
        wanted += len(case["with"])
        leaked += sum(snippet in text for snippet in case["without"])
        unwanted += len(case["without"])
    assert wanted >= 20
    assert found / wanted >= 0.8 and leaked / unwanted <= 0.1, (found, wanted, leaked, unwanted)


PAGE = ("<html><head><title>Talks</title><script>var ad = 'Hamas truce';</script></head><body>"
        "<nav>Home | World | Hamas truce live</nav><article><h1>Talks resume</h1>"
        "<p>Negotiators met in Cairo on Sunday for a new round of talks that officials on "
        "both sides described as serious and detailed.</p>"
        "<p>Hamas said it was studying the latest truce proposal and would answer within "
        "days, according to two people briefed on the discussions.</p>"
        "<p>Mediators from Egypt and Qatar said they expected a reply by the end of the week "
        "and planned to meet again shortly afterwards.</p></article>"
        "<footer>Subscribe to our newsletter</footer></body></html>")


def test_full_text_source_matches_on_the_article_page(workdir: Workdir, feeds: FeedServer,
                                                      receiver: WebhookReceiver) -> None:
    page = feeds.put("/articles/talks", PAGE, content_type="text/html; charset=utf-8")
    feeds.put("/feed.xml", rss([{"title": "Talks resume", "link": page,
                                 "body": "<p>Negotiators met again.</p>"}]))
    workdir.sources = [{"id": "plain", "url": feeds.base + "/feed.xml"},
                       {"id": "full", "url": feeds.base + "/feed.xml?full", "full_text": True}]
    feeds.put("/feed.xml?full", rss([{"title": "Talks resume (full)", "link": page + "?full",
                                      "body": "<p>Negotiators met again.</p>"}]))
    feeds.put("/articles/talks?full", PAGE, content_type="text/html; charset=utf-8")
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook",
                            "rules": ["gaza-ceasefire"]}]
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    alerts = [r.json["data"] for r in receiver.received]
    assert [a["source_id"] for a in alerts] == ["full"]      # the summary alone never matched
    assert "body" in alerts[0]["fields"]
    assert "Subscribe" not in alerts[0]["snippet"] and "var ad" not in alerts[0]["snippet"]
    # The feed changes: only the new article's page is fetched, not the known one again.
    feeds.put("/articles/other", "<html><body><p>" + "Another story. " * 20 + "</p></body></html>",
              content_type="text/html")
    feeds.put("/feed.xml?full", rss([{"title": "Talks resume (full)", "link": page + "?full",
                                      "body": "<p>Negotiators met again.</p>"},
                                     {"title": "Other", "link": feeds.base + "/articles/other",
                                      "body": "<p>Other.</p>"}]))
    workdir.cli("once")
    pages = [path for path, _ in feeds.hits if path.startswith("/articles/")]
    assert pages.count("/articles/talks?full") == 1 and pages.count("/articles/other") == 1
