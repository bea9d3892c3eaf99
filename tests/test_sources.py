"""Source kinds and polite fetching: JSON Feed, HTML listings, OPML, conditional GET,
Retry-After and back-off, 410 Gone."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Workdir, rss, run_cli, seed_item
from monitor.fetch import retry_after_seconds
from monitor.parse import _canonical_parsed, canonical_url
from monitor.retry import delivery_delay, source_delay
from servers import FeedServer, WebhookReceiver

JSON_FEED = {"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
    {"id": "j1", "url": "https://j.example.org/1", "title": "Hamas and the truce",
     "content_html": "<p>Hamas accepted a truce on Monday.</p>",
     # Recent whatever the day the suite runs: older items are stored but not alerted.
     "date_published": (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()},
    {"id": "j2", "url": "https://j.example.org/2", "title": "Other", "content_text": "Nothing."}]}

LISTING = """<html><body><nav><a href="/about">About</a></nav>
<div class="story"><h2><a href="/world/1">Hamas weighs truce offer</a></h2></div>
<div class="story"><h2><a href="/world/2">Markets steady</a></h2></div>
<div class="story"><h2><a href="https://elsewhere.example.org/3">Aid reaches Gaza</a></h2></div>
</body></html>"""


def stored_rows(workdir: Workdir, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        return db.execute(sql).fetchall()


def test_json_feed_and_html_listing(workdir: Workdir, feeds: FeedServer,
                                   receiver: WebhookReceiver) -> None:
    feeds.put("/feed.json", json.dumps(JSON_FEED), content_type="application/feed+json")
    feeds.put("/world", LISTING, content_type="text/html")
    workdir.sources = [{"id": "json", "url": feeds.base + "/feed.json"},
                       {"id": "site", "url": feeds.base + "/world", "kind": "html",
                        "links": "div.story h2 a"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook",
                            "rules": ["gaza-ceasefire"]}]
    result = workdir.cli("once")
    assert "5 new" in result.stdout, result.stdout + result.stderr
    urls = {u for (u,) in stored_rows(workdir, "SELECT url FROM articles WHERE source_id='site'")}
    assert urls == {feeds.base + "/world/1", feeds.base + "/world/2",
                    "https://elsewhere.example.org/3"}
    assert sorted(r.json["data"]["source_id"] for r in receiver.received) == ["json", "site"]


def test_conditional_get_and_not_modified(workdir: Workdir, feeds: FeedServer) -> None:
    stamp = "Tue, 24 Nov 2026 10:00:00 GMT"
    feeds.put("/feed.xml", rss([seed_item()]), headers={"ETag": '"v1"', "Last-Modified": stamp})
    workdir.sources = [{"id": "wire", "url": feeds.base + "/feed.xml"}]
    workdir.cli("once")
    second = workdir.cli("once")
    assert "1 ok (1 unchanged)" in second.stdout
    headers = feeds.hits[-1][1]
    assert headers.get("if-none-match") == '"v1"'
    assert headers.get("if-modified-since") == "Tue, 24 Nov 2026 10:00:00 GMT"
    assert stored_rows(workdir, "SELECT http_status FROM sources") == [(200,)] or \
        stored_rows(workdir, "SELECT http_status FROM sources") == [(304,)]


def test_gone_disables_and_429_backs_off(workdir: Workdir, feeds: FeedServer) -> None:
    feeds.put("/gone.xml", "gone", status=410, content_type="text/plain")
    feeds.put("/busy.xml", "slow down", status=429, content_type="text/plain",
              headers={"Retry-After": "3600"})
    workdir.sources = [{"id": "gone", "url": feeds.base + "/gone.xml", "interval": "1m"},
                       {"id": "busy", "url": feeds.base + "/busy.xml", "interval": "1m"}]
    workdir.cli("once")
    table = workdir.cli("sources").stdout
    assert "disabled" in next(row for row in table.splitlines() if row.startswith("gone "))
    rows = dict(stored_rows(workdir, "SELECT id, next_due FROM sources"))
    wait = datetime.fromisoformat(rows["busy"]) - datetime.now(timezone.utc).replace(tzinfo=None)
    assert wait > timedelta(minutes=50)                      # Retry-After beat the 1m interval
    hits = len(feeds.hits)
    workdir.cli("once")
    assert not any(path == "/gone.xml" for path, _ in feeds.hits[hits:])   # stays disabled


def test_opml_import(workdir: Workdir) -> None:
    opml = workdir.path / "subs.opml"
    opml.write_text("<?xml version='1.0'?><opml version='2.0'><body>"
                    "<outline text='News'><outline text='Wire One' type='rss' "
                    "xmlUrl='https://one.example.org/rss'/>"
                    "<outline title='Wire Two' xmlUrl='https://two.example.org/atom'/></outline>"
                    "<outline text='bad' xmlUrl='file:///etc/passwd'/></body></opml>")
    workdir.sources = [{"id": "wire-one", "url": "https://one.example.org/rss"}]
    workdir.write()
    result = workdir.cli("sources", "import", str(opml))
    assert result.returncode == 0 and "1 source(s) added" in result.stdout
    text = (workdir.path / "sources.yaml").read_text()
    assert "https://two.example.org/atom" in text and "passwd" not in text
    check = run_cli("check", "--config", str(workdir.config_file), cwd=workdir.path)
    assert check.returncode == 0, check.stdout
    assert "2 source(s)" in check.stdout


@pytest.mark.parametrize("url,canonical", [
    ("HTTPS://News.Example.ORG/a/b?utm_source=x&id=3#frag", "https://news.example.org/a/b?id=3"),
    ("https://x.org/p?fbclid=1&gclid=2", "https://x.org/p"),
    ("http://x.org:80/p", "http://x.org/p"),
    ("https://x.org:8443/p?b=2&a=1", "https://x.org:8443/p?b=2&a=1"),
    ("https://x.org", "https://x.org/"),
])
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize("url", [
    "https://feed1.example.org/0", "http://x.org", "https://x.org/", "https://x.org/a%20b/c.html",
    "https://x.org/caf\u00e9/\u00e9t\u00e9", "https://x.org/a;b=c/d", "https://x-y.org./p",
    "https://x.org/a\tb", "https://x.org/a\nb", " https://x.org/p ", "https://x.org/p?",
    "https://x.org/p#", "https://u:p@x.org/p", "https://X.org/p", "https://x.org:443/p",
    "https://x.org/a\u00a0b", "https://x.org//double//slash", "https://[::1]/p",
])
def test_canonical_url_shortcut_agrees_with_the_long_way(url: str) -> None:
    """A link already in canonical form skips urlsplit; every other one takes it, and both
    ways give the same answer."""
    assert canonical_url(url) == _canonical_parsed(url)


def test_retry_policies() -> None:
    rng = random.Random(1)
    assert source_delay(0, 600, 3600) == 600
    assert 1080 <= source_delay(2, 600, 3600, rng=rng) <= 1320      # doubled, +/-10%
    assert source_delay(20, 600, 3600, rng=rng) <= 3960               # capped at the ceiling
    assert source_delay(1, 600, 3600, retry_after=7200, rng=rng) >= 7200 * 0.9
    schedule = (5, 300, 1800)
    assert 4.5 <= delivery_delay(1, schedule, rng=rng) <= 5.5
    assert delivery_delay(4, schedule) is None                        # dead-letter
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Wed, 25 Nov 2026 12:10:00 GMT", now) == 600
    assert retry_after_seconds("soon", now) is None
