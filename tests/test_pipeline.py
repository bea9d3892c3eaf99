"""Saving a fetched feed, a few statements per feed: what one article at a time would store."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from conftest import ROOT
from monitor.config import Settings, SourceSpec, SubscriberSpec
from monitor.context import Context, Rules
from monitor.match import Engine
from monitor.models import Article, FetchResult
from monitor.pipeline import record_quiet, save
from monitor.rules import load_rules
from monitor.store import SIMILAR_BATCH, SourceRow, open_store

pytestmark = pytest.mark.store
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
RESULT = FetchResult(url="https://wire.example.org/feed", status=200, body=b"",
                     content_type="application/rss+xml")
STORY = ("Hamas and Israel agreed to a truce in Gaza on Thursday after weeks of talks mediated "
         "by Qatar and Egypt, officials said, with hostages to be released in stages and aid "
         "trucks allowed through the Rafah crossing under the terms of the deal.")


def context(database_url: str, subscribers: list[dict[str, object]] | None = None) -> Context:
    store = open_store(database_url)
    spec = SourceSpec(id="wire", url="https://wire.example.org/feed")
    store.sync_sources([spec], NOW)
    ruleset, _, _ = load_rules(ROOT / "rules")
    return Context(settings=Settings(database=database_url), store=store,
                   fetcher=None,  # type: ignore[arg-type]
                   rules=Rules(Engine(ruleset, semantic=False)), sources={"wire": spec},
                   subscribers=[SubscriberSpec.model_validate(s) for s in subscribers or []],
                   channels={}, now=lambda: NOW)


def feed(ctx: Context, articles: list[Article]) -> tuple[int, int, int]:
    row = ctx.store.source("wire")
    assert row is not None
    outcome = asyncio.run(save(ctx, row, ctx.sources["wire"], articles, RESULT))
    return outcome.new, outcome.duplicates, outcome.queued


def rows(ctx: Context, query: str) -> list[tuple[object, ...]]:
    with ctx.store.session() as session:
        return [tuple(r) for r in session.execute(text(query))]


def item(n: int, body: str = "", guid: str | None = None) -> Article:
    return Article(url=f"https://wire.example.org/{n}", title=f"Item {n}", body=body,
                   guid=guid or f"g{n}", published=NOW)


def test_new_duplicate_and_repeated_items_of_one_feed(database_url: str) -> None:
    ctx = context(database_url)
    assert feed(ctx, [item(1), item(2)])[:2] == (2, 0)
    # Known by GUID, known by URL, new, and the new one repeated within the feed.
    again = [item(1), Article(url="https://wire.example.org/2?utm_source=x", title="2 again",
                              guid="other"), item(3), item(3)]
    assert feed(ctx, again)[:2] == (1, 3)
    assert rows(ctx, "SELECT guid FROM articles ORDER BY id") == [("g1",), ("g2",), ("g3",)]


def test_a_feed_with_nothing_new_is_recorded_with_the_quiet_sources(database_url: str
                                                                    ) -> None:
    ctx = context(database_url)
    feed(ctx, [item(1), item(2)])
    logged = "SELECT items, new, not_modified FROM fetch_log ORDER BY id"
    assert rows(ctx, logged) == [(2, 2, False)]
    row = ctx.store.source("wire")
    assert row is not None
    outcome = asyncio.run(save(ctx, row, ctx.sources["wire"], [item(2), item(1)], RESULT))
    assert (outcome.new, outcome.duplicates, outcome.state is not None) == (0, 2, True)
    assert rows(ctx, logged) == [(2, 2, False)]          # nothing written yet
    record_quiet(ctx, [outcome], {"wire": row})
    assert rows(ctx, logged) == [(2, 2, False), (2, 0, False)]
    after = ctx.store.source("wire")
    assert after is not None and after.items_seen == 2 and after.articles_total == 2
    assert after.next_due is not None and after.next_due > NOW


def test_the_last_polls_items_again_need_no_lookup(database_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(database_url)
    feed(ctx, [item(1), item(2)])
    looked_up = []
    reading = ctx.store.reading

    def counted() -> object:
        looked_up.append(1)
        return reading()
    monkeypatch.setattr(ctx.store, "reading", counted)
    assert feed(ctx, [item(2), item(1)])[:2] == (0, 2)     # the same items, another order
    assert looked_up == []
    assert feed(ctx, [item(1), item(3)])[:2] == (1, 1)     # one new: looked up
    assert looked_up == [1]


def test_a_feed_longer_than_one_story_lookup(database_url: str) -> None:
    ctx = context(database_url)
    articles = [item(n, body=f"Report {n} on the harbour works: " + " ".join(
        f"w{n}x{k}" for k in range(40))) for n in range(SIMILAR_BATCH * 2 + 5)]
    assert feed(ctx, articles)[:2] == (len(articles), 0)
    assert rows(ctx, "SELECT count(DISTINCT coalesce(story_id, id)) FROM articles") == [
        (len(articles),)]


def test_near_duplicates_share_a_story_within_a_feed_and_across_feeds(database_url: str
                                                                      ) -> None:
    ctx = context(database_url)
    feed(ctx, [item(1, STORY), item(2, "Weather: rain " * 30), item(3, STORY + " Reuters")])
    feed(ctx, [item(4, "Updated: " + STORY)])
    stories = dict(rows(ctx, "SELECT guid, coalesce(story_id, id) FROM articles"))
    assert stories["g3"] == stories["g1"] == stories["g4"] != stories["g2"]


def test_one_alert_per_story_and_the_cooldown_counts_this_feed(database_url: str) -> None:
    ctx = context(database_url, [{"name": "desk", "webhook": "https://hooks.example.org/x",
                                  "rules": ["gaza-ceasefire"], "cooldown": "1h"}])
    other = ("Hamas negotiators arrived in Cairo for ceasefire talks as mediators pressed "
             "for a deal, a separate report said, quoting two officials close to the matter "
             "who spoke on condition of anonymity about the hostage release proposal.")
    new, _, queued = feed(ctx, [item(1, STORY), item(2, STORY + " AP"), item(3, other)])
    assert (new, queued) == (3, 2)          # items 1 and 2 are one story: one alert
    due = sorted(rows(ctx, "SELECT next_attempt FROM deliveries"))
    first, second = (datetime.fromisoformat(str(d[0])).replace(tzinfo=timezone.utc)
                     for d in due)
    assert first == NOW and second == NOW + timedelta(hours=1)
    payloads = [json.loads(str(p[0])) for p in rows(ctx, "SELECT payload FROM deliveries")]
    assert {p["article_url"] for p in payloads} == {"https://wire.example.org/1",
                                                       "https://wire.example.org/3"}


def test_a_source_row_read_before_the_feed_is_saved(database_url: str) -> None:
    """The fetch state is written with the feed, in the same transaction."""
    ctx = context(database_url)
    feed(ctx, [item(1), item(2)])
    row = ctx.store.source("wire")
    assert isinstance(row, SourceRow) and row.articles_total == 2 and row.items_seen == 2


def test_feeds_saved_at_once_share_one_commit_and_see_each_others_stories(
        database_url: str) -> None:
    """Feeds ready together are written in one transaction: the later one finds the earlier
    one's article as a story, as if it had been committed before."""
    ctx = context(database_url)
    agency = SourceSpec(id="agency", url="https://agency.example.org/feed")
    ctx.store.sync_sources([ctx.sources["wire"], agency], NOW)
    ctx.sources["agency"] = agency

    async def both() -> list[int]:
        outcomes = await asyncio.gather(*(
            save(ctx, ctx.store.source(source) or SourceRow(id=source, url=""),
                 ctx.sources[source], [item(n, body)], RESULT)
            for source, n, body in (("wire", 1, STORY), ("agency", 2, "Updated: " + STORY))))
        return [outcome.new for outcome in outcomes]

    assert asyncio.run(both()) == [1, 1]
    assert (ctx.commits.groups, ctx.commits.written) == (1, 2)
    assert (ctx.lookups.statements, ctx.lookups.answered) == (1, 2)   # asked together too
    stories = dict(rows(ctx, "SELECT guid, coalesce(story_id, id) FROM articles"))
    assert stories["g1"] == stories["g2"]
    assert [r[0] for r in rows(ctx, "SELECT articles_total FROM sources ORDER BY id")] == [1, 1]


def test_a_feed_failing_in_a_shared_commit_leaves_the_others_stored_and_counted_once(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One feed's write fails: its group is rolled back whole and written again, each feed
    in a savepoint. The other feed is stored, and its match counted in the metrics, once."""
    ctx = context(database_url)
    agency = SourceSpec(id="agency", url="https://agency.example.org/feed")
    ctx.store.sync_sources([ctx.sources["wire"], agency], NOW)
    ctx.sources["agency"] = agency
    log_fetch = ctx.store.log_fetch

    def broken_for_agency(session: object, source_id: str, *args: object, **kw: object) -> None:
        if source_id == "agency":
            raise RuntimeError("agency's write failed")
        log_fetch(session, source_id, *args, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(ctx.store, "log_fetch", broken_for_agency)

    async def both() -> list[object]:
        return list(await asyncio.gather(*(
            save(ctx, ctx.store.source(source) or SourceRow(id=source, url=""),
                 ctx.sources[source], [item(n, body)], RESULT)
            for source, n, body in (("wire", 1, STORY), ("agency", 2, STORY + " More."))),
            return_exceptions=True))

    wire, failed = asyncio.run(both())
    assert isinstance(failed, RuntimeError) and getattr(wire, "new", None) == 1
    assert (ctx.commits.groups, ctx.commits.written) == (1, 1)
    assert rows(ctx, "SELECT guid FROM articles") == [("g1",)]
    counted = ctx.metrics.matches.labels("gaza-ceasefire")._value.get()
    assert counted == len(rows(ctx, "SELECT id FROM matches WHERE rule_id = 'gaza-ceasefire'"))
    assert counted == 1
