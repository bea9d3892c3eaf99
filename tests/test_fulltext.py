"""Full text: a source with full_text: true fetches each new article's page for its body."""

from __future__ import annotations

import gzip
import json
import sqlite3

import pytest

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


# --- charsets: HTTP header, byte-order mark, <meta>, detection -------------------------------

ARABIC = "أعلنت حركة حماس موافقتها على هدنة إنسانية في قطاع غزة لمدة أربعة أيام. "
CHINESE = "加沙停火协议今天生效，哈马斯同意释放部分人质，以色列释放巴勒斯坦囚犯。"
JAPANESE = "ガザ地区で停戦が発効し、ハマスは人質の一部を解放した。交渉は続いている。"
FRENCH = "Le café crème coûte trois euros à Montréal, précise le négociateur égyptien. "


def page(text: str, head: str = "") -> str:
    paragraphs = "".join(f"<p>{text * 3}</p>" for _ in range(4))
    return (f"<html><head>{head}<title>t</title></head><body><nav>Menu</nav>"
            f"<article>{paragraphs}</article></body></html>")


@pytest.mark.parametrize("encoding, text, content_type, head", [
    ("iso-8859-1", FRENCH, "text/html; charset=ISO-8859-1", ""),           # HTTP header
    ("iso-8859-1", FRENCH, "text/html", '<meta charset="iso-8859-1">'),     # <meta charset>
    ("windows-1256", ARABIC, "text/html",
     '<meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'),
    ("windows-1256", ARABIC, "text/html; charset=windows-1256", ""),
    ("gb2312", CHINESE, "text/html", '<meta charset="gb2312">'),
    ("gb2312", CHINESE, "text/html", ""),                                   # detection
    ("shift_jis", JAPANESE, "text/html; charset=Shift_JIS", ""),
    ("shift_jis", JAPANESE, "text/html", ""),                               # detection
    ("windows-1256", ARABIC, "text/html", ""),                              # detection
])
def test_article_pages_decode_by_their_charset(encoding: str, text: str, content_type: str,
                                               head: str) -> None:
    body = page(text, head).encode(encoding)
    extracted = main_text(body, content_type)
    assert text.split()[0] in extracted and text.strip()[-8:] in extracted
    assert "\ufffd" not in extracted


def test_a_byte_order_mark_decides_over_a_wrong_header() -> None:
    body = b"\xef\xbb\xbf" + page(ARABIC).encode("utf-8")
    assert ARABIC.split()[1] in main_text(body, "text/html; charset=iso-8859-1")


def test_a_windows_1256_page_through_full_text_matches_an_arabic_rule(
        workdir: Workdir, feeds: FeedServer) -> None:
    article = feeds.put("/ar/1", page(ARABIC).encode("windows-1256"),
                        content_type="text/html; charset=windows-1256")
    feeds.put("/ar.xml", rss([{"title": "خبر", "link": article}]))
    workdir.sources = [{"id": "ar", "url": feeds.base + "/ar.xml", "full_text": True}]
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        [(body,)] = db.execute("SELECT body FROM articles").fetchall()
    assert "حماس" in body and "\ufffd" not in body
