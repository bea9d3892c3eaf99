"""Group commit: feeds ready at once share a transaction, each in its own savepoint."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from monitor.groupcommit import GROUP_ARTICLES, GroupCommit
from monitor.store import Store, open_store

pytestmark = pytest.mark.store


def probe_store(database_url: str) -> Store:
    """A real store with a table of its own to write: `probe`, and `child` whose reference
    to it is checked only at commit."""
    store = open_store(database_url)
    with store.session() as session:
        session.execute(text("CREATE TABLE probe (n INTEGER PRIMARY KEY)"))
        session.execute(text("CREATE TABLE child (n INTEGER REFERENCES probe (n) "
                             "DEFERRABLE INITIALLY DEFERRED)"))
    return store


def insert(*numbers: int, then: Callable[[Any], None] | None = None
           ) -> Callable[[Any], tuple[int, ...]]:
    def work(session: Any) -> tuple[int, ...]:
        for n in numbers:
            session.execute(text("INSERT INTO probe (n) VALUES (:n)"), {"n": n})
        if then is not None:
            then(session)
        return numbers
    return work


def stored(store: Store) -> list[int]:
    with store.session() as session:
        return [row[0] for row in session.execute(text("SELECT n FROM probe ORDER BY n"))]


def test_feeds_ready_together_share_one_commit(database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store, limit=400)

    async def main() -> list[tuple[int, ...]]:
        return list(await asyncio.gather(commits.write(insert(1)), commits.write(insert(2, 3), 2),
                                         commits.write(insert(4))))

    assert asyncio.run(main()) == [(1,), (2, 3), (4,)]
    assert stored(store) == [1, 2, 3, 4]
    assert (commits.groups, commits.written) == (1, 3)


def test_a_failing_feed_rolls_back_alone_and_the_others_commit(database_url: str) -> None:
    """On the defaults: on PostgreSQL in a savepoint of the group, on SQLite in its own
    transaction."""
    store = probe_store(database_url)
    commits = GroupCommit(store)

    def again(session: Any) -> None:       # the second feed repeats the first one's key
        session.execute(text("INSERT INTO probe (n) VALUES (1)"))

    async def main() -> list[Any]:
        return list(await asyncio.gather(
            commits.write(insert(1)), commits.write(insert(2, then=again)),
            commits.write(insert(3)), return_exceptions=True))

    first, second, third = asyncio.run(main())
    assert (first, third) == ((1,), (3,))
    assert isinstance(second, IntegrityError)
    assert stored(store) == [1, 3]          # the failing feed's own row 2 went with it
    # SQLite: three transactions, the failing feed's one left empty by its rollback.
    assert (commits.groups, commits.written) == (
        (1 if store.dialect == "postgresql" else 3), 2)


def test_a_failed_commit_fails_every_feed_of_its_group(database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store, limit=400)

    def orphan(session: Any) -> None:      # refused only when the group commits
        session.execute(text("INSERT INTO child (n) VALUES (99)"))

    async def main() -> list[Any]:
        return list(await asyncio.gather(commits.write(insert(1)),
                                         commits.write(insert(2, then=orphan)),
                                         return_exceptions=True))

    results = asyncio.run(main())
    assert all(isinstance(result, IntegrityError) for result in results)
    assert stored(store) == []
    assert commits.groups == 0

    # The next group is unaffected.
    assert asyncio.run(commits.write(insert(5))) == (5,)
    assert stored(store) == [5]


def test_a_group_waits_for_a_feed_still_being_prepared(tmp_path: Any) -> None:
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store, limit=400, wait=60)

    async def main() -> None:
        release = asyncio.Event()

        async def prepared_later() -> tuple[int, ...]:
            with commits.preparing():
                await release.wait()
            return await commits.write(insert(2))

        later = asyncio.create_task(prepared_later())
        ready = asyncio.create_task(commits.write(insert(1)))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not ready.done() and stored(store) == []
        release.set()
        assert await asyncio.gather(ready, later) == [(1,), (2,)]

    asyncio.run(main())
    assert stored(store) == [1, 2]
    assert (commits.groups, commits.written) == (1, 2)


def test_a_ready_feed_waits_for_another_at_most_the_group_wait(tmp_path: Any) -> None:
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store, limit=400, wait=0.2)

    async def main() -> float:
        release = asyncio.Event()

        async def stuck() -> None:
            with commits.preparing():
                await release.wait()

        other = asyncio.create_task(stuck())
        await asyncio.sleep(0)
        started = time.monotonic()
        await asyncio.wait_for(commits.write(insert(1)), 10)
        waited = time.monotonic() - started
        release.set()
        await other
        return waited

    waited = asyncio.run(main())
    assert 0.2 <= waited < 5
    assert stored(store) == [1]


def test_a_group_holds_at_most_its_limit_of_articles(tmp_path: Any) -> None:
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store, limit=3)

    async def main() -> None:
        await asyncio.gather(*(commits.write(insert(n), 1) for n in range(1, 5)))
        await asyncio.gather(*(commits.write(insert(n), 2) for n in range(5, 8)))

    asyncio.run(main())
    assert stored(store) == list(range(1, 8))
    # 1+1+1 | 1, then 2 | 2 | 2 (a group of one feed may exceed nothing: 2 + 2 > 3)
    assert (commits.groups, commits.written) == (5, 7)


def test_a_feed_given_up_before_its_group_is_not_written(tmp_path: Any) -> None:
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store, limit=400)

    async def main() -> None:
        given_up = asyncio.create_task(commits.write(insert(1)))
        kept = asyncio.create_task(commits.write(insert(2)))
        await asyncio.sleep(0)              # both queued; their group not yet written
        given_up.cancel()
        assert await kept == (2,)
        with pytest.raises(asyncio.CancelledError):
            await given_up

    asyncio.run(main())
    assert stored(store) == [2]


def test_on_the_defaults_postgresql_groups_feeds_and_sqlite_writes_each_alone(
        database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store)
    assert commits.limit == GROUP_ARTICLES[store.dialect] == (
        400 if store.dialect == "postgresql" else 1)

    async def main() -> None:
        await asyncio.gather(*(commits.write(insert(n), 20) for n in range(1, 4)))

    asyncio.run(main())
    assert stored(store) == [1, 2, 3]
    assert (commits.groups, commits.written) == ((1 if store.dialect == "postgresql" else 3), 3)
