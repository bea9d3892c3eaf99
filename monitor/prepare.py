"""A feed's new articles made ready to store: story fingerprints and rule matches, off the writer.

Storing a burst of new articles is two kinds of work per feed: computing (a story fingerprint
per article, every rule against it, the explanation of each match) and the feed's database
transaction. A database has one writer, so the daemon keeps the transactions and hands the
computing to a worker process: the next feed is matched on another core while this one is
written (bench_store.py, SQLite on two cores: 1.3-1.5x the new articles/s of one process).

The worker holds its own copy of the engine, built from the rules in service; when a reload
puts another engine in service, the next feed goes to a new worker built from it. A worker
that dies, or cannot be started, never costs a feed: that feed is computed here instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Sequence

from monitor import story
from monitor.errors import ParseError
from monitor.match import Engine
from monitor.models import Article, Match, Matched
from monitor.rules import RuleSet

log = logging.getLogger("monitor.prepare")


@dataclass(frozen=True)
class Prepared:
    """One article's story fingerprint and bands (None: too little text) and the rules it
    matched, each with the JSON of its explanation as stored (plain values: see Matched)."""

    fingerprint: list[int] | None
    bands: list[int] | None
    matches: tuple[Matched, ...]


def explanation(found: Match) -> dict[str, Any]:
    """Why a rule matched, as stored with the match (and shown by `explain`)."""
    return {"terms": found.terms, "actors": found.actors, "fields": found.fields,
            "snippet": found.snippet, "marks": [list(m) for m in found.marks],
            "hits": [[h.term, h.actor, h.field, h.start, h.end] for h in found.hits],
            "reasons": found.reasons(), "score": found.score, "nearest": found.nearest}


def matched(found: Match) -> Matched:
    """`found` as stored: its rule and the JSON of its explanation."""
    return Matched(found.rule_id, found.rule_title, json.dumps(explanation(found)))


def prepare(engine: Engine, source_id: str, articles: Sequence[Article]) -> list[Prepared]:
    """Each article's fingerprint, bands and matches, in order: a pure function of its inputs."""
    out = []
    for article in articles:
        fingerprint = story.signature(" ".join((article.title, article.summary, article.body)))
        out.append(Prepared(fingerprint, story.bands(fingerprint) if fingerprint else None,
                            tuple(map(matched, engine.match(article, source_id)))))
    return out


# --- the worker process's side: its engine, built once when it starts ---

_worker_engine: Engine | None = None


def _start_worker(ruleset: RuleSet, semantic: bool) -> None:
    global _worker_engine
    _worker_engine = Engine(ruleset, semantic=semantic)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="parent-watch",
                         daemon=True).start()


def _exit_with(parent: Any) -> None:
    """A worker outlives a daemon killed outright (SIGKILL, the OOM killer): it holds both
    ends of its own task queue, so it never sees the queue close. It exits with the daemon."""
    parent.join()
    os._exit(0)


def _prepare_in_worker(source_id: str, articles: Sequence[Article]) -> list[Prepared]:
    assert _worker_engine is not None, "worker started without an engine"
    return prepare(_worker_engine, source_id, articles)


# Feeds handed to one worker at a time: enough that it never waits for the next one while the
# daemon writes a group commit of the feeds it finished (4 left it idle during each one: 8%
# fewer new articles/s), few enough that a feed's deadline covers its own work and little
# queueing (a burst's other feeds wait their turn here, with no deadline running).
IN_FLIGHT = 16


@dataclass
class Preparer:
    """Where new articles are computed: `workers` processes, or none (0: in this process).

    A lost worker (it died, or could not be started) costs no feed: that feed and those of
    the next `retry_after` seconds are computed here, then a new worker is started. A feed
    past its deadline fails (ParseError: its poll is retried at the next due time) and its
    worker is stopped, so one pathological feed never holds up the ones queued behind it."""

    workers: int = 0
    retry_after: float = 60.0
    _pool: ProcessPoolExecutor | None = None
    _engine: Engine | None = None          # the engine the pool's workers were built from
    _lost_until: float = 0.0               # computed here until then (monotonic clock)
    _turns: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def prepare(self, engine: Engine, source_id: str, articles: Sequence[Article],
                      deadline: float) -> list[Prepared]:
        """`prepare`, in a worker when there is one, under `deadline` seconds."""
        if not self.workers or not articles:
            return prepare(engine, source_id, articles)
        async with self._turn():
            if time.monotonic() < self._lost_until:
                return prepare(engine, source_id, articles)
            return await self._in_worker(engine, source_id, articles, deadline)

    async def _in_worker(self, engine: Engine, source_id: str, articles: Sequence[Article],
                         deadline: float) -> list[Prepared]:
        pool = None
        try:
            pool = self._pool_for(engine)
            future = pool.submit(_prepare_in_worker, source_id, articles)
            return await asyncio.wait_for(asyncio.wrap_future(future), deadline)
        except asyncio.TimeoutError:
            self._retire(kill=True)
            raise ParseError(f"matching {len(articles)} new article(s) took longer than "
                             f"{deadline:g} s; given up") from None
        except (BrokenProcessPool, OSError) as exc:    # OSError: it could not be started
            if pool is None or pool is self._pool:
                log.error("match worker lost or not started (%s); source %s and the next "
                          "%g s of feeds are computed in the daemon's own process",
                          exc or type(exc).__name__, source_id, self.retry_after)
                self._retire(kill=True)
                self._lost_until = time.monotonic() + self.retry_after
            # else: a worker stopped on purpose (another feed's deadline) took this one along
            return prepare(engine, source_id, articles)

    def _turn(self) -> asyncio.Semaphore:
        """The running loop's limit of feeds in the workers at once (IN_FLIGHT each)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Semaphore(IN_FLIGHT * self.workers))
        return self._turns[1]

    def _pool_for(self, engine: Engine) -> ProcessPoolExecutor:
        """The pool whose workers hold `engine`: a new one when a reload changed it (the old
        one finishes what it was given, then exits)."""
        if self._pool is None or self._engine is not engine:
            self._retire()
            # spawn, not fork: the daemon has threads (asyncio's, the scheduler's), and a
            # forked copy of a process with threads can inherit a lock held mid-operation.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(engine.ruleset, engine.semantic))
            self._engine = engine
            log.info("match worker(s) starting: %d, with %d rule(s)", self.workers,
                     len(engine.ruleset.rules))
        return self._pool

    def _retire(self, kill: bool = False, wait: bool = False) -> None:
        """Let the pool's workers go: once their queue is done (waiting for that, or not), or
        at once (`kill`: one is stuck or broken)."""
        pool, self._pool, self._engine = self._pool, None, None
        if pool is None:
            return
        if kill:
            # The executor has no public way to stop a worker mid-call (3.14 adds one).
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        # Killed, what it was given fails over to this process (BrokenProcessPool);
        # otherwise the pool finishes it, then its workers exit.
        pool.shutdown(wait=wait)

    def close(self) -> None:
        """Stop the workers once they finish what they were given (at most a deadline)."""
        self._retire(wait=True)
