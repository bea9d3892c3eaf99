"""Every real-world test feed we have, through fetch and parse, served from loopback.

No exception may escape; every well-formed feed yields exactly the entries feedparser finds.
"""

from __future__ import annotations

import asyncio
import mimetypes
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import feedparser

from conftest import CORPORA, DATA
from monitor.config import FetchSettings
from monitor.errors import FetchError, ParseError
from monitor.fetch import Fetcher
from monitor.parse import parse_feed
from servers import FeedServer, respond

FEEDPARSER = CORPORA / "feeds" / "feedparser" / "tests"
FEED_RS = CORPORA / "feeds" / "feed-rs"


def corpus_files() -> list[Path]:
    files = [p for p in sorted(FEEDPARSER.rglob("*")) if p.is_file()]
    files += [p for p in sorted(FEED_RS.rglob("*")) if p.is_file()
              and p.suffix in (".xml", ".json", ".rss", ".atom") and ".serde" not in p.name]
    return files


def is_article(entry: dict) -> bool:
    """An entry with a link, an id or visible text (an author or an empty title is not news)."""
    from monitor.parse import html_to_text
    links = [entry.get("link")] + [each.get("href") for each in entry.get("links", [])]
    texts = [entry.get("title"), entry.get("summary")] + [
        each.get("value") for each in entry.get("content", [])]
    return any(link and link.strip() for link in links) or bool(
        (entry.get("id") or "").strip()) or any(html_to_text(text or "") for text in texts)


def test_the_corpus_is_where_the_tests_expect_it() -> None:
    assert len(corpus_files()) > 2000, f"feed corpus not found under {CORPORA}"


def test_every_corpus_feed_goes_through_fetch_and_parse(feeds: FeedServer) -> None:
    files = corpus_files()
    root = CORPORA / "feeds"

    def serve(request: BaseHTTPRequestHandler) -> None:
        path = root / request.path.lstrip("/")
        kind = "application/feed+json" if path.suffix == ".json" else (
            mimetypes.guess_type(path.name)[0] or "application/xml")
        respond(request, 200, path.read_bytes(), {"Content-Type": kind})

    for path in files:
        feeds.route("/" + str(path.relative_to(root)), serve)
    now = datetime.now(timezone.utc)
    outcomes: dict[Path, object] = {}

    async def one(fetcher: Fetcher, path: Path) -> None:
        try:
            result = await fetcher.get(f"{feeds.base}/{path.relative_to(root)}")
            outcomes[path] = parse_feed(result.body, "auto", result.content_type, result.url, now)
        except (FetchError, ParseError) as exc:
            outcomes[path] = exc

    async def run() -> None:
        settings = FetchSettings(concurrency=20, per_host=20, deadline=20)
        async with Fetcher.guarded(settings, allow_private=True) as fetcher:
            await asyncio.gather(*(one(fetcher, p) for p in files))

    asyncio.run(run())      # an exception other than Fetch/ParseError would fail the test here
    assert len(outcomes) == len(files)
    fetch_errors = [p for p, o in outcomes.items() if isinstance(o, FetchError)]
    assert fetch_errors == []
    wrong = []
    for path in files:
        if "wellformed" not in path.parts or path.suffix != ".xml":
            continue
        expected = sum(1 for e in feedparser.parse(path.read_bytes()).entries if is_article(e))
        got = outcomes[path]
        count = len(got) if isinstance(got, list) else -1
        if count != expected:
            wrong.append((str(path.relative_to(root)), expected, count, got))
    assert wrong == [], wrong[:10]


def test_news_site_snapshots_yield_articles_with_text() -> None:
    now = datetime.now(timezone.utc)
    snapshots = [p for p in FEED_RS.rglob("*.xml") if any(
        name in p.name.lower() for name in ("nbc", "spiegel", "newyorker", "golem"))]
    assert snapshots
    for path in snapshots:
        articles = parse_feed(path.read_bytes(), "auto", "", "https://example.org/", now)
        assert articles, path
        assert all(a.title or a.summary for a in articles), path


FIELDS = ("url", "title", "summary", "body", "guid", "published", "author")


def test_fast_path_gives_the_same_articles_as_feedparser() -> None:
    """Wherever the lxml fast path answers, every field of every article equals the feedparser
    path's: a feed that moves between paths (turning slightly invalid one day) must keep its
    items' identities and the text each rule field sees."""
    from monitor.fastfeed import parse_fast
    from monitor.parse import html_to_text, parse_xml_feed
    now = datetime.now(timezone.utc)
    answered = 0
    differences = []
    for path in corpus_files() + sorted(DATA.glob("*.xml")):
        body = path.read_bytes()
        fast = parse_fast(body, "", "https://example.org/", now, html_to_text)
        if fast is None:
            continue
        answered += 1
        slow = parse_xml_feed(body, "", "https://example.org/", now)
        if len(fast) != len(slow):
            differences.append((str(path), "count", len(fast), len(slow)))
            continue
        for one, other in zip(fast, slow, strict=True):
            differences += [(str(path), name, getattr(one, name), getattr(other, name))
                            for name in FIELDS if getattr(one, name) != getattr(other, name)]
    assert answered > 500
    assert differences == [], differences[:5]


def test_relative_atom_ids_resolve_against_xml_base_on_both_paths() -> None:
    from monitor.fastfeed import parse_fast
    from monitor.parse import html_to_text, parse_xml_feed
    now = datetime.now(timezone.utc)
    body = (DATA / "atom_xml_base.xml").read_bytes()
    for articles in (parse_fast(body, "", "https://example.org/", now, html_to_text),
                     parse_xml_feed(body, "", "https://example.org/", now)):
        assert articles is not None
        first = articles[0]
        assert first.guid == "http://example.org/news/2024/truce-talks"
        assert first.url == "http://example.org/news/2024/truce-talks.html"
        # Content and no summary element: the content is the summary on both paths.
        assert (first.summary, first.body) == ("Negotiators met again on Monday.", "")
        assert (articles[1].summary, articles[1].body) == ("Short summary", "Longer body text.")


def test_an_item_with_nothing_in_it_is_dropped_on_both_paths() -> None:
    from monitor.fastfeed import parse_fast
    from monitor.parse import html_to_text, parse_xml_feed
    now = datetime.now(timezone.utc)
    body = (DATA / "rss_empty_item.xml").read_bytes()
    fast = parse_fast(body, "", "https://example.org/", now, html_to_text)
    slow = parse_xml_feed(body, "", "https://example.org/", now)
    assert fast == slow
    assert [a.title for a in slow] == ["Real item"]
