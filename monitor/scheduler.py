"""APScheduler wiring only: a short tick that runs due sources, and a rule-file watcher.

The store says which sources are due (each keeps its own interval in its row), so a restart
resumes where the last run stopped and several replicas can share the work. Every job runs
under its own deadline: a hung job cannot block its next runs forever (APScheduler 3 would
otherwise skip them as 'maximum number of running instances reached').
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.config import load_sources, read_subscribers
from monitor.errors import Problem
from monitor.match import load_engine
from monitor.context import Context
from monitor.pipeline import run_cycle
from monitor.rules import RuleFile
from monitor.runtime import cross_check, rules_fingerprint

log = logging.getLogger("monitor.scheduler")


class RuleWatcher:
    """Reloads the rules when their files change; a broken file keeps its last good version."""

    def __init__(self, ctx: Context, files: dict[str, RuleFile]) -> None:
        self.ctx = ctx
        self.files = files
        self.directory = ctx.settings.rules
        self.seen = rules_fingerprint(self.directory)
        self.failed: tuple[tuple[str, int, int], ...] | None = None

    def poll(self) -> bool:
        """Reload if anything changed; True when a new rule set went into service."""
        current = rules_fingerprint(self.directory)
        if current in (self.seen, self.failed):
            return False
        try:
            engine, problems, files = load_engine(self.directory, self.files)
        except Exception as exc:  # a loader bug must not freeze the rules: the next edit retries
            self.failed = current
            log.exception("rules reload failed; the rules in service are unchanged")
            self.ctx.rules.problems = [Problem(str(self.directory), 0,
                                               f"reload failed: {type(exc).__name__}: {exc}")]
            return False
        # Recorded only now: a state that never went into service is never taken as seen.
        self.seen, self.failed = current, None
        for problem in problems:
            log.error("rules not reloaded from this file, last good version kept: %s", problem)
        self.files = files
        self.ctx.rules.engine = engine          # one assignment: the swap is atomic
        self.ctx.rules.version += 1
        self.ctx.rules.loaded_at = datetime.now(timezone.utc)
        self.ctx.rules.problems = list(problems)
        self.ctx.metrics.rule_reloads.labels("with_errors" if problems else "ok").inc()
        log.info("rules reloaded: %d rules in service (version %d)%s", len(engine.ruleset.rules),
                 self.ctx.rules.version, f", {len(problems)} problem(s)" if problems else "")
        return True


class Daemon:
    """Runs the scheduler until SIGTERM or Ctrl-C, then stops between transactions."""

    def __init__(self, ctx: Context, watcher: RuleWatcher,
                 lists: ListWatcher | None = None) -> None:
        self.ctx = ctx
        self.watcher = watcher
        self.lists = lists
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task[Any]] = set()
        self.last_cycle: datetime | None = None
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)

    def _guarded(self, name: str, make: Callable[[], Awaitable[Any]], deadline: float
                 ) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                await asyncio.wait_for(make(), deadline)
            except asyncio.TimeoutError:
                log.error("job %s passed its %.0f s deadline and was stopped", name, deadline)
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
                # Cut short by the stop, at an await point between transactions: an expected
                # end, not a failure to report with a traceback.
                log.warning("job %s stopped before it finished", name)
            except Exception:  # the scheduler must outlive any one job
                log.exception("job %s failed", name)
            finally:
                self.running.discard(task)
        return job

    async def _cycle(self) -> None:
        report = await run_cycle(self.ctx)
        self.last_cycle = datetime.now(timezone.utc)
        if report.sources or report.sent or report.failed:
            log.info("cycle: %d source(s) ok, %d failed, %d new article(s), %d match(es), "
                     "%d alert(s) sent, %d failed", len(report.ok), len(report.failed_sources),
                     report.total("new"), report.total("matches"), report.sent, report.failed)

    async def _reload(self) -> None:
        self.watcher.poll()
        if self.lists is not None:
            self.lists.poll()

    async def run(self) -> None:
        settings = self.ctx.settings
        now = datetime.now(timezone.utc)
        self.scheduler.add_job(self._guarded("cycle", self._cycle, settings.job_deadline),
                               "interval", seconds=settings.tick, next_run_time=now,
                               id="cycle", max_instances=1, coalesce=True,
                               misfire_grace_time=max(30, int(settings.tick)))
        self.scheduler.add_job(self._guarded("reload", self._reload, 30.0), "interval",
                               seconds=settings.rules_poll, id="rules", max_instances=1,
                               coalesce=True, misfire_grace_time=30)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.scheduler.start()
        log.info("news-monitor running: %d source(s), %d rule(s), %d subscriber(s)",
                 len(self.ctx.sources), len(self.ctx.rules.engine.ruleset.rules),
                 len(self.ctx.subscribers))
        await self.stopping.wait()
        log.info("stopping: waiting for the running cycle to reach a safe point")
        # Paused first, shut down after the drain: the scheduler's shutdown cancels the jobs
        # still running, which must first get their moment to finish.
        self.scheduler.pause()
        await self._drain()
        self.scheduler.shutdown(wait=False)
        log.info("stopped")

    async def _drain(self) -> None:
        # Every write is one transaction, committed or not at all; cancelling at an await
        # point leaves nothing half-written. Give running work a moment to finish first.
        if self.running:
            done, pending = await asyncio.wait(set(self.running), timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _fingerprint(path: Path | None) -> tuple[int, int] | None:
    try:
        stat = path.stat() if path else None
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if stat else None


class ListWatcher:
    """Reloads the sources and subscribers files when they change, as rule files reload.

    The whole file is validated first; with any entry invalid, every problem is logged with
    its file:line and the version in service stays (a typo must not remove a subscriber and
    cancel their alerts). A good edit adds, changes and removes: a removed source is no longer
    polled (its stored articles stay); a removed subscriber's pending deliveries are cancelled.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.seen = {"sources": _fingerprint(settings.sources),
                     "subscribers": _fingerprint(settings.subscribers)}
        self.failed: dict[str, tuple[int, int] | None] = {}

    def poll(self) -> bool:
        changed = False
        for name, path, reload in (("sources", self.ctx.settings.sources, self._sources),
                                   ("subscribers", self.ctx.settings.subscribers,
                                    self._subscribers)):
            if path is None:
                continue
            current = _fingerprint(path)
            if current == self.seen[name] or (name in self.failed and
                                              current == self.failed[name]):
                continue
            try:
                ok = reload(path)
            except Exception:  # a loader bug must not freeze the file: the next edit retries
                log.exception("%s reload failed; the %s in service are unchanged", name, name)
                ok = False
            if ok:
                self.seen[name] = current
                self.failed.pop(name, None)
                changed = True
            else:
                self.failed[name] = current
        return changed

    def _sources(self, path: Path) -> bool:
        specs, problems = load_sources(path)
        if problems:
            for problem in problems:
                log.error("sources not reloaded, the version in service is kept: %s", problem)
            return False
        old, new = self.ctx.sources, {spec.id: spec for spec in specs}
        self.ctx.store.sync_sources(specs, self.ctx.now())
        self.ctx.sources = new
        log.info("sources reloaded from %s: %d in service%s", path, len(new),
                 _changes(old, new, "no longer polled, stored articles kept"))
        return True

    def _subscribers(self, path: Path) -> bool:
        specs, invalid, warnings = read_subscribers(path)
        if invalid:
            for problem in invalid:
                log.error("subscribers not reloaded, the version in service is kept: %s",
                          problem)
            return False
        for problem in warnings:
            log.error("%s", problem)
        old = {spec.name: spec for spec in self.ctx.subscribers}
        new = {spec.name: spec for spec in specs}
        for problem in cross_check(self.ctx.settings, specs, self.ctx.rules.engine.ruleset):
            log.warning("%s", problem)
        self.ctx.subscribers = specs
        removed = sorted(set(old) - set(new))
        cancelled = self.ctx.store.cancel_deliveries(removed,
                                                     f"subscriber removed from {path.name}")
        log.info("subscribers reloaded from %s: %d in service%s%s", path, len(new),
                 _changes(old, new, "pending deliveries cancelled"),
                 f" ({cancelled} delivery(ies) cancelled)" if cancelled else "")
        return True


def _changes(old: dict[str, Any], new: dict[str, Any], removed_note: str) -> str:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = [f"added {', '.join(added)}" if added else "",
             f"changed {', '.join(changed)}" if changed else "",
             f"removed {', '.join(removed)} ({removed_note})" if removed else ""]
    text = "; ".join(p for p in parts if p)
    return f"; {text}" if text else "; nothing changed"
