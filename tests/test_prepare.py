"""Fingerprints and matches of new articles: in the match worker process, as in this one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import ROOT, SEED
from monitor import deliver, story
from monitor.errors import ParseError
from monitor.match import Engine
from monitor.models import Article
from monitor.prepare import IN_FLIGHT, Prepared, Preparer, explanation, prepare
from monitor.rules import load_rules

QUIET = Article(url="https://example.org/q", title="Local bakery wins a prize",
                body="The bakery on the corner won a regional prize for its bread this week.")
RULE = """\
rules:
  - id: {rule}
    title: {rule}
    all:
      - keywords: [{term}]
"""


# An article whose matching takes far longer than the deadlines below (the whole body is
# scanned, and every word is a hit), so a worker cannot beat them even on a busy machine.
HEAVY = Article(url="https://example.org/heavy", title="Gaza ceasefire",
                body="Hamas agreed a ceasefire in Gaza. " * 40_000)
SHORT = 0.005
NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


def seed_article() -> Article:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    return Article(url="https://example.org/seed", title=title, body=body)


def engine_of(directory: Path, rule: str, term: str) -> Engine:
    (directory / "rules.yaml").write_text(RULE.format(rule=rule, term=term), encoding="utf-8")
    ruleset, problems, _ = load_rules(directory)
    assert problems == []
    return Engine(ruleset, semantic=False)


@pytest.fixture(scope="module")
def shipped() -> Engine:
    ruleset, _, _ = load_rules(ROOT / "rules")
    return Engine(ruleset, semantic=False)


def run(preparer: Preparer, engine: Engine, articles: list[Article],
        deadline: float = 30.0) -> list[Prepared]:
    return asyncio.run(preparer.prepare(engine, "wire", articles, deadline))


def worker_pids(preparer: Preparer) -> list[int]:
    pool = preparer._pool
    assert pool is not None
    return [process.pid for process in pool._processes.values() if process.pid]


def test_prepare_gives_each_article_its_fingerprint_bands_and_explained_matches(
        shipped: Engine) -> None:
    seed, quiet = prepare(shipped, "wire", [seed_article(), QUIET])
    text = " ".join((seed_article().title, seed_article().summary, seed_article().body))
    assert seed.fingerprint == story.signature(text)
    assert seed.bands == story.bands(seed.fingerprint or [])
    assert "gaza-ceasefire" in [m.rule_id for m in seed.matches]
    found = shipped.match(seed_article(), "wire")
    assert [(m.rule_id, m.rule_title, json.loads(m.explanation)) for m in seed.matches] == \
        [(m.rule_id, m.rule_title, explanation(m)) for m in found]
    assert quiet.matches == ()


def test_an_alert_built_from_the_stored_match_says_what_the_match_says(shipped: Engine) -> None:
    """The worker sends back each match as stored (rule, title, explanation JSON), and the
    alert is built from that: it must carry the Match's own terms, actors, reasons (the
    implied actor here), snippet and marks."""
    article = seed_article()
    found = shipped.match(article, "wire")[0]
    stored = prepare(shipped, "wire", [article])[0].matches[0]
    alert = deliver.make_alert("msg_1", stored, article, "wire", "desk", NOW)
    assert found.reasons() == ["hamas — implied by 'Gaza'"]
    assert (alert.rule_id, alert.rule_title, alert.terms, alert.actors, alert.fields,
            alert.snippet, alert.marks, alert.reasons, alert.score) == \
        (found.rule_id, found.rule_title, found.terms, found.actors, found.fields,
         found.snippet, list(found.marks), found.reasons(), found.score)


def test_the_worker_process_computes_what_this_process_computes(shipped: Engine) -> None:
    preparer = Preparer(workers=1)
    try:
        assert run(preparer, shipped, [seed_article(), QUIET]) == \
            prepare(shipped, "wire", [seed_article(), QUIET])
        assert worker_pids(preparer) and os.getpid() not in worker_pids(preparer)
    finally:
        preparer.close()


def test_a_reloaded_engine_reaches_a_new_worker(tmp_path: Path) -> None:
    before = engine_of(tmp_path, "bakery", "bakery")
    after = engine_of(tmp_path, "bread", "bread")
    preparer = Preparer(workers=1)
    try:
        assert [m.rule_id for m in run(preparer, before, [QUIET])[0].matches] == ["bakery"]
        first = worker_pids(preparer)
        assert [m.rule_id for m in run(preparer, after, [QUIET])[0].matches] == ["bread"]
        assert worker_pids(preparer) != first
    finally:
        preparer.close()


def test_a_lost_worker_costs_no_feed_on_the_default_back_off(
        shipped: Engine, caplog: pytest.LogCaptureFixture) -> None:
    preparer = Preparer(workers=1)                  # retry_after left at its default
    assert preparer.retry_after == 60.0
    try:
        run(preparer, shipped, [QUIET])
        os.kill(worker_pids(preparer)[0], signal.SIGKILL)
        with caplog.at_level(logging.ERROR, "monitor.prepare"):
            got = run(preparer, shipped, [seed_article()])
        assert got == prepare(shipped, "wire", [seed_article()])
        assert "match worker lost" in caplog.text and "source wire" in caplog.text
        assert preparer._pool is None               # within the back-off: computed here
        assert run(preparer, shipped, [QUIET]) == prepare(shipped, "wire", [QUIET])
        assert preparer._pool is None
    finally:
        preparer.close()


def test_after_the_back_off_a_new_worker_starts(shipped: Engine) -> None:
    preparer = Preparer(workers=1, retry_after=0.0)
    try:
        run(preparer, shipped, [QUIET])
        lost = worker_pids(preparer)[0]
        os.kill(lost, signal.SIGKILL)
        run(preparer, shipped, [QUIET])             # the lost worker's feed: computed here
        assert run(preparer, shipped, [seed_article()]) == \
            prepare(shipped, "wire", [seed_article()])
        assert worker_pids(preparer) and lost not in worker_pids(preparer)
    finally:
        preparer.close()


def test_a_feed_past_its_deadline_fails_and_its_worker_is_stopped(shipped: Engine) -> None:
    preparer = Preparer(workers=1)
    try:
        run(preparer, shipped, [QUIET])             # the worker is up
        with pytest.raises(ParseError, match=r"matching 1 new article\(s\) took longer"):
            run(preparer, shipped, [HEAVY], deadline=SHORT)
        assert preparer._pool is None
        assert run(preparer, shipped, [QUIET]) == prepare(shipped, "wire", [QUIET])
    finally:
        preparer.close()


def test_no_workers_computes_here(shipped: Engine) -> None:
    preparer = Preparer()
    assert run(preparer, shipped, [seed_article()]) == prepare(shipped, "wire", [seed_article()])
    assert preparer._pool is None


def test_a_burst_waits_its_turn_outside_the_workers(shipped: Engine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """At most IN_FLIGHT feeds per worker are handed over at once, so a feed's deadline
    covers its own work, not the whole burst queued before it."""
    preparer = Preparer(workers=1)
    inside, most = 0, 0
    real = Preparer._in_worker

    async def counted(self: Preparer, *args: object) -> list[Prepared]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            return await real(self, *args)  # type: ignore[arg-type]
        finally:
            inside -= 1

    monkeypatch.setattr(Preparer, "_in_worker", counted)

    async def burst() -> list[list[Prepared]]:
        return list(await asyncio.gather(*(preparer.prepare(shipped, f"s{n}", [QUIET], 30.0)
                                           for n in range(3 * IN_FLIGHT))))
    try:
        assert asyncio.run(burst()) == [prepare(shipped, "wire", [QUIET])] * (3 * IN_FLIGHT)
        assert most == IN_FLIGHT
    finally:
        preparer.close()


def test_feeds_in_a_worker_stopped_for_another_feeds_deadline_are_computed_here(
        shipped: Engine) -> None:
    preparer = Preparer(workers=1)

    async def together() -> list[object]:
        return list(await asyncio.gather(
            preparer.prepare(shipped, "slow", [HEAVY], SHORT),
            *(preparer.prepare(shipped, "wire", [QUIET], 30.0) for _ in range(2)),
            return_exceptions=True))
    try:
        run(preparer, shipped, [QUIET])             # the worker is up
        late, *others = asyncio.run(together())
        assert isinstance(late, ParseError)
        assert others == [prepare(shipped, "wire", [QUIET])] * 2
        assert preparer._lost_until == 0.0          # not taken for a lost worker
    finally:
        preparer.close()


DAEMON = """
import asyncio, sys
from pathlib import Path
from monitor.match import Engine
from monitor.models import Article
from monitor.prepare import Preparer
from monitor.rules import load_rules

if __name__ == "__main__":
    ruleset, _, _ = load_rules(Path(sys.argv[1]))
    preparer = Preparer(workers=1)
    asyncio.run(preparer.prepare(Engine(ruleset, semantic=False), "wire",
                                 [Article(url="u", title="t")], 30.0))
    print(*[p.pid for p in preparer._pool._processes.values()], flush=True)
    sys.stdin.read()                    # until killed
"""


def test_a_worker_exits_when_its_daemon_is_killed_outright(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON, encoding="utf-8")
    daemon = subprocess.Popen([sys.executable, str(script), str(ROOT / "rules")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        worker = int(daemon.stdout.readline())
        assert alive(worker)
        daemon.kill()                   # SIGKILL: no clean-up runs in the daemon
        daemon.wait(10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker)
    finally:
        daemon.kill()


def alive(pid: int) -> bool:
    """Whether a process is running (a zombie, exited but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_that_cannot_be_started_costs_no_feed(shipped: Engine,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise OSError(38, "Function not implemented")        # no /dev/shm for its locks

    monkeypatch.setattr("monitor.prepare.ProcessPoolExecutor", refused)
    preparer = Preparer(workers=1)
    with caplog.at_level(logging.ERROR, "monitor.prepare"):
        assert run(preparer, shipped, [seed_article()]) == \
            prepare(shipped, "wire", [seed_article()])
    assert "match worker lost" in caplog.text and "Function not implemented" in caplog.text
    assert preparer._lost_until > 0
