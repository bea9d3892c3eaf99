"""Group commit: the feeds ready to store at one moment share one transaction.

A feed's new articles, matches and outbox rows still commit together, and a feed that fails
rolls back alone while the others of its group commit. A group is first written without
savepoints; only when one of its feeds fails is the whole transaction rolled back and the group
written again with each feed in its own savepoint, so the failing one rolls back alone. A feed's
write touches nothing but the session, so running it twice is safe. Savepoints cost the writer
much on SQLite, which copies every page a savepoint changes into its sub-journal and frees it at
the release: without them the writer thread spends 7% less CPU per new article and stores 6%
more new articles/s (bench_store.py, seven interleaved pairs of runs; PostgreSQL, two pairs:
4% more).

What a group saves is per-commit work: on PostgreSQL the wait for the server's log flush; on
SQLite the index pages a commit writes to its log, since feeds committed together write a page
they share once (bench_store.py, interleaved runs: PostgreSQL 5-9% more new articles/s at 20 feeds a
commit; SQLite 13-36% at the ~3 feeds a commit the match worker's pace gives, with its larger
page cache).

A group is written as soon as the event loop is free: it holds the feeds that became ready
while the last one was being written, up to `limit` articles. Nothing waits for a feed still
being prepared (fetched, or matched in the worker): a ready feed is never held back, and the
longer a write takes against the worker's pace, the larger the next group. The write is
synchronous: no lock is held across an await.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

from sqlmodel import Session

from monitor.store import Store

_T = TypeVar("_T")

# Articles one group may hold: bounds how long one commit holds the event loop (20 feeds of
# 20 articles: ~180 ms on PostgreSQL here). A larger feed is a group of its own.
GROUP_ARTICLES = 400


# PostgreSQL's codes for a statement that lost a lock conflict rather than failed on its
# data: deadlock detected, serialization failure, lock not available.
TRANSIENT = {"40P01", "40001", "55P03"}


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a lost lock conflict, which the same write may win a moment later."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in TRANSIENT


@dataclass
class _Pending:
    work: Callable[[Session], Any]
    size: int
    future: asyncio.Future[Any]
    retried: bool = False


@dataclass
class GroupCommit:
    """Writes `work(session)` calls in groups; build one per store and pass it in.

    A group is written at the event loop's next turn after its first feed was ready, with
    every feed ready by then, up to `limit` articles."""

    store: Store
    limit: int = GROUP_ARTICLES
    groups: int = 0                         # commits made, and feeds they wrote
    written: int = 0
    _queue: NextTurn[_Pending] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._queue = NextTurn(self._commit, self.limit)

    async def write(self, work: Callable[[Session], _T], size: int = 1) -> _T:
        """`work` run in the next group commit; its result once committed. An error it
        raises is raised here, and only its own writes are rolled back."""
        pending = _Pending(work, size, asyncio.get_running_loop().create_future())
        self._queue.add([pending])
        return await pending.future  # type: ignore[no-any-return]

    def _commit(self, group: list[_Pending]) -> None:
        """The group in one transaction; in savepoints when one of its feeds fails."""
        if not self._all_at_once(group):
            self._in_savepoints(group)

    def _all_at_once(self, group: list[_Pending]) -> bool:
        """The group in one transaction, no savepoints: True once it is settled (committed, or
        its commit failed: that fails every feed); False when a feed failed and the whole
        transaction was rolled back, for the savepoints to sort out."""
        done: list[tuple[_Pending, Any]] = []
        failed = False
        try:
            with self.store.session() as session:
                for pending in group:
                    try:
                        done.append((pending, pending.work(session)))
                    except Exception:
                        failed = True
                        raise
        except Exception as exc:  # noqa: BLE001 (a feed failed, or the group's commit did)
            if failed:
                return False
            fail_all(group, exc)
            return True
        self._committed(done)
        return True

    def _in_savepoints(self, group: list[_Pending]) -> None:
        """The group in one transaction, each feed in a savepoint. A feed whose write lost a
        lock conflict (another process's transaction held a row it needed while waiting for
        one this group holds: PostgreSQL aborts one of the two) goes again, once, at the
        head of the next group, after this one has committed and let go of its rows."""
        done: list[tuple[_Pending, Any]] = []
        again: list[_Pending] = []
        try:
            with self.store.session() as session:
                for pending in group:
                    try:
                        with session.begin_nested():
                            done.append((pending, pending.work(session)))
                    except Exception as exc:  # noqa: BLE001 (its own error, raised to its caller)
                        if transient(exc) and not pending.retried:
                            pending.retried = True
                            again.append(pending)
                        else:
                            settle(pending.future, exc)
        except Exception as exc:  # noqa: BLE001 (the group's commit failed: every feed in it)
            fail_all(group, exc)
            return
        self._committed(done)
        self._queue.add(again, first=True)

    def _committed(self, done: list[tuple[_Pending, Any]]) -> None:
        """A group's commit went through: each feed written gets its result."""
        self.groups += 1
        self.written += len(done)
        for pending, result in done:
            settle(pending.future, result=result)


class _Waiting(Protocol):
    size: int
    future: asyncio.Future[Any]


_W = TypeVar("_W", bound=_Waiting)


def next_batch(pending: list[_W], limit: int) -> list[_W]:
    """The next batch, taken from the head of `pending`: what fits in `limit` (by `size`),
    at least one. One whose caller gave up meanwhile (a deadline) is dropped."""
    batch: list[_W] = []
    size = 0
    while pending and (not batch or size + pending[0].size <= limit):
        waiting = pending.pop(0)
        if not waiting.future.cancelled():
            batch.append(waiting)
            size += waiting.size
    return batch


class NextTurn(Generic[_W]):
    """Callers' requests gathered for the event loop's next turn and handed to `handle` a
    batch at a time (`next_batch`: up to `limit` by size); what does not fit goes at the turn
    after. Group commit's queue of feeds, and the identity lookups' (lookups.py)."""

    def __init__(self, handle: Callable[[list[_W]], None], limit: int) -> None:
        self.handle = handle
        self.limit = limit
        self._pending: list[_W] = []
        self._soon: asyncio.Handle | None = None

    def add(self, items: list[_W], first: bool = False) -> None:
        """Queue `items` (`first`: ahead of those waiting), for the loop's next turn."""
        if first:
            self._pending[:0] = items
        else:
            self._pending.extend(items)
        if self._pending and self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._soon = None
        batch = next_batch(self._pending, self.limit)
        self.add([])                                 # the rest: the next batch
        if batch:
            self.handle(batch)


def fail_all(waiting: Sequence[_Waiting], error: BaseException) -> None:
    """A shared step failed (a commit, a statement): every caller of it gets the error."""
    for one in waiting:
        settle(one.future, error)


def settle(future: asyncio.Future[Any], error: BaseException | None = None,
           result: Any = None) -> None:
    """Resolve a feed's future unless it already is (failed, or given up meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
