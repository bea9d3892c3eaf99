"""Identity lookups: feeds asking at once share one statement, each gets its own answer."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from monitor.lookups import IdentityLookups
from monitor.models import Article
from monitor.pipeline import article_record
from monitor.store import Store, open_store

pytestmark = pytest.mark.store

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


def stocked(database_url: str) -> Store:
    """A store holding g1 (source a, u1) and g2 (source b, u2)."""
    store = open_store(database_url)
    with store.session() as session:
        store.insert_articles(session, [
            article_record(source, Article(url=url, title=guid, guid=guid), NOW, None)
            for source, guid, url in (("a", "g1", "https://x.org/u1"),
                                      ("b", "g2", "https://x.org/u2"))])
    return store


def test_feeds_asking_at_once_share_one_statement_and_each_gets_its_own_answer(
        database_url: str) -> None:
    """A GUID counts only in its own source; a canonical URL counts from any source."""
    lookups = IdentityLookups(stocked(database_url))

    async def ask() -> list[tuple[set[str], set[str]]]:
        return list(await asyncio.gather(
            lookups.known("a", [("g1", "https://x.org/new"), ("g2", "https://x.org/u2"),
                                (None, "https://x.org/u3")]),
            lookups.known("b", [("g1", None), ("g2", None)]),
            lookups.known("c", [(None, "https://x.org/u1"), ("g9", "https://x.org/u9")])))

    assert asyncio.run(ask()) == [({"g1"}, {"https://x.org/u2"}), ({"g2"}, set()),
                                  (set(), {"https://x.org/u1"})]
    assert (lookups.statements, lookups.answered) == (1, 3)


def test_more_items_than_one_statement_holds_take_several(database_url: str) -> None:
    lookups = IdentityLookups(stocked(database_url), limit=2)

    async def ask() -> list[tuple[set[str], set[str]]]:
        return list(await asyncio.gather(*(lookups.known(source, [(guid, None), ("zz", None)])
                                           for source, guid in (("a", "g1"), ("b", "g2"),
                                                                ("a", "g2")))))

    assert asyncio.run(ask()) == [({"g1"}, set()), ({"g2"}, set()), (set(), set())]
    assert (lookups.statements, lookups.answered) == (3, 3)


def test_a_feed_without_identities_asks_nothing(database_url: str) -> None:
    lookups = IdentityLookups(stocked(database_url))
    assert asyncio.run(lookups.known("a", [(None, None)])) == (set(), set())
    assert lookups.statements == 0


def test_a_failed_statement_fails_every_feed_it_asked_for_and_the_next_one_runs(
        database_url: str) -> None:
    store = stocked(database_url)
    lookups = IdentityLookups(store)

    async def ask() -> list[object]:
        return list(await asyncio.gather(lookups.known("a", [("g1", None)]),
                                         lookups.known("b", [("g2", None)]),
                                         return_exceptions=True))

    with store.session() as session:
        session.execute(text("ALTER TABLE articles RENAME TO articles_away"))
    assert all(isinstance(outcome, DBAPIError) for outcome in asyncio.run(ask()))
    with store.session() as session:
        session.execute(text("ALTER TABLE articles_away RENAME TO articles"))
    assert asyncio.run(ask()) == [({"g1"}, set()), ({"g2"}, set())]
