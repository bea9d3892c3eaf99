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

from conftest import CORPORA
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
    """An entry with something to identify or match it by (an author alone is not news)."""
    return any(entry.get(key) for key in ("link", "links", "id", "title", "summary", "content"))


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
        async with Fetcher(settings, allow_private=True) as fetcher:
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


def test_fast_path_gives_the_same_items_as_feedparser() -> None:
    """Wherever the lxml fast path answers, its items equal the feedparser path's items."""
    from monitor.fastfeed import parse_fast
    from monitor.parse import html_to_text, parse_xml_feed
    now = datetime.now(timezone.utc)
    answered = 0
    differences = []
    for path in corpus_files():
        if path.suffix != ".xml":
            continue
        body = path.read_bytes()
        fast = parse_fast(body, "", "https://example.org/", now, html_to_text)
        if fast is None:
            continue
        answered += 1
        slow = parse_xml_feed(body, "", "https://example.org/", now)
        key = lambda a: (a.url, a.title, a.guid, a.published)  # noqa: E731
        if [key(a) for a in fast] != [key(a) for a in slow]:
            differences.append((str(path), [key(a) for a in fast], [key(a) for a in slow]))
    assert answered > 300
    assert differences == [], differences[:5]
