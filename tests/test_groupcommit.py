"""Group commit: feeds ready at once share a transaction, in savepoints when one fails."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
from sqlalchemy import event, text
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


def savepoints(store: Store) -> list[str]:
    """The SAVEPOINT statements the store's connections run from now on."""
    seen: list[str] = []

    def look(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SAVEPOINT"):
            seen.append(statement)
    event.listen(store.engine, "before_cursor_execute", look)
    return seen


def test_feeds_ready_together_share_one_commit(database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store)
    used = savepoints(store)

    async def main() -> list[tuple[int, ...]]:
        return list(await asyncio.gather(commits.write(insert(1)), commits.write(insert(2, 3), 2),
                                         commits.write(insert(4))))

    assert asyncio.run(main()) == [(1,), (2, 3), (4,)]
    assert stored(store) == [1, 2, 3, 4]
    assert (commits.groups, commits.written) == (1, 3)
    assert used == []                       # none failed: no savepoints


def test_a_failing_feed_rolls_back_alone_and_the_others_commit(database_url: str) -> None:
    """On the defaults: in a savepoint of the group, on either backend."""
    store = probe_store(database_url)
    commits = GroupCommit(store)
    used = savepoints(store)

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
    assert (commits.groups, commits.written) == (1, 2)
    assert len(used) == 3                   # written again, each feed in a savepoint


def test_a_failed_commit_fails_every_feed_of_its_group(database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store)

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


def test_a_ready_feed_never_waits_for_one_still_being_prepared(tmp_path: Any) -> None:
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store)

    async def main() -> None:
        release = asyncio.Event()

        async def still_in_the_worker() -> tuple[int, ...]:
            await release.wait()
            return await commits.write(insert(2))

        later = asyncio.create_task(still_in_the_worker())
        assert await asyncio.wait_for(commits.write(insert(1)), 5) == (1,)
        assert stored(store) == [1] and not later.done()
        release.set()
        assert await later == (2,)

    asyncio.run(main())
    assert (commits.groups, commits.written) == (2, 2)


def test_feeds_ready_while_a_group_is_written_form_the_next_group(tmp_path: Any) -> None:
    """What became ready while a commit ran is written at the loop's next turn, together."""
    store = probe_store(f"sqlite:///{tmp_path / 'probe.db'}")
    commits = GroupCommit(store)
    arrived: list[asyncio.Task[tuple[int, ...]]] = []

    def meanwhile(_session: Any) -> None:     # two feeds finish while the first is written
        arrived.extend(asyncio.create_task(commits.write(insert(n))) for n in (2, 3))

    async def main() -> None:
        assert await commits.write(insert(1, then=meanwhile)) == (1,)
        assert await asyncio.gather(*arrived) == [(2,), (3,)]

    asyncio.run(main())
    assert stored(store) == [1, 2, 3]
    assert (commits.groups, commits.written) == (2, 3)


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
    commits = GroupCommit(store)

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


def test_on_the_defaults_feeds_ready_together_share_a_commit(database_url: str) -> None:
    store = probe_store(database_url)
    commits = GroupCommit(store)
    assert commits.limit == GROUP_ARTICLES == 400

    async def main() -> None:
        await asyncio.gather(*(commits.write(insert(n), 20) for n in range(1, 4)))

    asyncio.run(main())
    assert stored(store) == [1, 2, 3]
    assert (commits.groups, commits.written) == (1, 3)


@pytest.mark.parametrize("in_savepoints", [False, True], ids=["first-try", "in-savepoints"])
def test_a_feed_that_loses_a_deadlock_is_written_again(in_savepoints: bool) -> None:
    """A real deadlock on PostgreSQL, as a replica's group meets another process's
    transaction (a replica starting up upserts every source) taking the same two rows in the
    other order: this group is the one aborted. On the group's first try (no savepoints) the
    whole transaction rolls back, letting go of its rows, and the group is written again in
    savepoints. Met while written in savepoints (here a third feed's own error sent the group
    there), the feed goes again once the group has committed and let go of its rows. A
    feed's own error is not retried (test above)."""
    import threading

    import psycopg

    from conftest import drop_pg_database, make_pg_database
    from servers import wait_for
    url = make_pg_database()
    try:
        store = probe_store(url)
        with store.session() as session:
            session.execute(text("INSERT INTO probe (n) VALUES (1), (2)"))
        commits = GroupCommit(store)
        holding, other_done = threading.Event(), threading.Event()

        def other_process() -> None:
            with psycopg.connect(url) as other:
                # This side never detects the deadlock first: the group's write is the one
                # PostgreSQL aborts.
                other.execute("SET deadlock_timeout = '30s'")
                other.execute("UPDATE probe SET n = n WHERE n = 2")
                holding.set()
                wait_for(group_waits_for_a_lock)    # its deadlock check comes 2 s later
                other.execute("UPDATE probe SET n = n WHERE n = 1")
            other_done.set()

        def group_waits_for_a_lock() -> bool:
            with psycopg.connect(url, autocommit=True) as watcher:
                row = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                      "current_database() AND wait_event_type = 'Lock'"
                                      ).fetchone()
            return row is not None and row[0] > 0

        def first(session: Any) -> str:         # the group takes row 1
            session.execute(text("UPDATE probe SET n = n WHERE n = 1"))
            return "first"

        tries: list[int] = []
        deadlocked_try = 2 if in_savepoints else 1

        def second(session: Any) -> str:        # then needs row 2, which the other holds
            tries.append(1)
            if len(tries) == deadlocked_try:
                session.execute(text("SET LOCAL deadlock_timeout = '2s'"))
                thread.start()
                assert holding.wait(10)
            session.execute(text("UPDATE probe SET n = n WHERE n = 2"))
            return "second"

        def third(session: Any) -> None:        # its own error, on every try
            session.execute(text("INSERT INTO probe (n) VALUES (1)"))

        thread = threading.Thread(target=other_process)

        async def main() -> list[Any]:
            feeds = [first, second] + ([third] if in_savepoints else [])
            return list(await asyncio.gather(*map(commits.write, feeds),
                                             return_exceptions=True))

        got = asyncio.run(main())
        assert got[:2] == ["first", "second"]
        thread.join(10)
        assert other_done.is_set()
        if in_savepoints:
            assert isinstance(got[2], IntegrityError)
            # first try: all rolled back (third failed); savepoints: first committed, second
            # deadlocked; the next group: second alone.
            assert len(tries) == 3 and (commits.groups, commits.written) == (2, 2)
        else:
            assert len(tries) == 2 and (commits.groups, commits.written) == (1, 2)
    finally:
        drop_pg_database(url)
