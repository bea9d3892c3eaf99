"""The daemon (`news-monitor run`): polling on its own, hot reload of rules, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, Workdir, rss
from servers import FeedServer, WebhookReceiver, wait_for


class Daemon:
    def __init__(self, workdir: Workdir) -> None:
        workdir.write()
        self.log = workdir.path / "daemon.log"
        self.log_file = self.log.open("w")
        env = {k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(workdir.config_file)],
            cwd=workdir.path, stdout=self.log_file, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self.log_file.close()


@pytest.fixture
def daemon_dir(workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver) -> Workdir:
    rules = workdir.path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "actors.yaml", rules / "actors.yaml")
    workdir.config.update({"rules": "rules", "tick": "1s", "rules_poll": "1s"})
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml", "interval": "1s"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook", "rules": "*"}]
    return workdir


def item(slug: str, title: str) -> dict[str, str]:
    return {"title": title, "link": f"https://news.example.org/{slug}", "body": f"<p>{title}</p>"}


def alerted(receiver: WebhookReceiver, title: str) -> bool:
    return any(r.json["data"]["article_title"] == title for r in receiver.received)


def test_hot_reload_under_a_running_scheduler(daemon_dir: Workdir, feeds: FeedServer,
                                              receiver: WebhookReceiver) -> None:
    items = [item("a", "Quantum computing milestone")]
    feeds.put("/wire.xml", rss(items))
    rule_file = daemon_dir.path / "rules" / "science.yaml"
    daemon = Daemon(daemon_dir)
    try:
        wait_for(lambda: len(feeds.hits) >= 2, timeout=20)   # polling on its own interval

        # A new rule file is picked up within 5 seconds, and alerts on the next new item.
        rule_file.write_text("rules:\n  - id: quantum\n    title: Quantum\n    all:\n"
                             "      - keywords: [quantum]\n")
        wait_for(lambda: "rules reloaded: 1 rules" in daemon.text(), timeout=5)
        items.append(item("b", "Quantum sensors in orbit"))
        feeds.put("/wire.xml", rss(items))
        wait_for(lambda: alerted(receiver, "Quantum sensors in orbit"), timeout=10)

        # A broken edit: errors logged with file:line, the last good rules keep running.
        rule_file.write_text("rules:\n  - id: quantum\n    title: Quantum\n    all:\n"
                             "      - keywords: [quantum\n")
        wait_for(lambda: f"{rule_file}:" in daemon.text(), timeout=5)
        items.append(item("c", "Quantum networks expand"))
        feeds.put("/wire.xml", rss(items))
        wait_for(lambda: alerted(receiver, "Quantum networks expand"), timeout=10)

        # A later good edit is picked up.
        rule_file.write_text("rules:\n  - id: photon\n    title: Photons\n    all:\n"
                             "      - keywords: [photon*]\n")
        wait_for(lambda: daemon.text().count("rules reloaded") >= 3, timeout=5)
        items.append(item("d", "Photonic chips arrive"))
        items.append(item("e", "Quantum weather"))
        feeds.put("/wire.xml", rss(items))
        wait_for(lambda: alerted(receiver, "Photonic chips arrive"), timeout=10)
        assert not alerted(receiver, "Quantum weather")
        assert not alerted(receiver, "Quantum computing milestone")   # stored before its rule
    finally:
        code = daemon.stop()
    assert code == 0, daemon.text()
    assert "stopped" in daemon.text()


def test_sigterm_stops_cleanly_with_exit_0(daemon_dir: Workdir, feeds: FeedServer) -> None:
    feeds.put("/wire.xml", rss([item("a", "Nothing to see")]))
    daemon = Daemon(daemon_dir)
    wait_for(lambda: feeds.hits, timeout=20)
    started = time.monotonic()
    assert daemon.stop() == 0, daemon.text()
    assert time.monotonic() - started < 15
    assert "Traceback" not in daemon.text(), daemon.text()


def test_operator_endpoint(daemon_dir: Workdir, feeds: FeedServer,
                           receiver: WebhookReceiver) -> None:
    import httpx
    from conftest import seed_item
    from servers import free_port
    feeds.put("/wire.xml", rss([seed_item()]))
    port = free_port()
    shutil.copy(ROOT / "rules" / "gaza.yaml", daemon_dir.path / "rules" / "gaza.yaml")
    daemon_dir.config["http_port"] = port
    daemon = Daemon(daemon_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: receiver.received, timeout=20)

        def get(path: str) -> httpx.Response | None:
            try:
                return httpx.get(base + path, timeout=2)
            except httpx.HTTPError:
                return None
        health = wait_for(lambda: get("/healthz"), timeout=10)
        assert health.status_code == 200
        ready = get("/readyz")
        assert ready is not None and ready.status_code == 200
        assert "database: ok" in ready.text and "scheduler: ok" in ready.text
        metrics = get("/metrics")
        assert metrics is not None and metrics.status_code == 200
        text = metrics.text
        assert 'news_monitor_fetches_total{outcome="ok"}' in text
        assert 'news_monitor_matches_total{rule="gaza-ceasefire"} 1.0' in text
        assert 'news_monitor_deliveries_total{channel="webhook",outcome="sent"} 1.0' in text
        assert "news_monitor_fetch_seconds_bucket" in text
        assert "news_monitor_deliveries_pending 0.0" in text
    finally:
        assert daemon.stop() == 0


def test_sources_and_subscribers_reload_without_a_restart(daemon_dir: Workdir, feeds: FeedServer,
                                                          receiver: WebhookReceiver) -> None:
    stuck = WebhookReceiver()
    stuck.script = [(500, {})] * 100
    newbie = WebhookReceiver()
    try:
        (daemon_dir.path / "rules" / "science.yaml").write_text(
            "rules:\n  - id: quantum\n    title: Quantum\n    all:\n      - keywords: [quantum]\n")
        daemon_dir.config["delivery"] = {"retry": ["1h"], "timeout": 10}
        daemon_dir.subscribers.append({"name": "stuck", "webhook": stuck.base + "/hook"})
        feeds.put("/wire.xml", rss([item("a", "Quantum computing milestone")]))
        daemon = Daemon(daemon_dir)
        try:
            wait_for(lambda: alerted(receiver, "Quantum computing milestone"), timeout=20)
            wait_for(lambda: stuck.received, timeout=10)       # failed once, pending for an hour

            # A new source and a new subscriber, and 'stuck' removed: no restart.
            feeds.put("/desk.xml", rss([item("d", "Quantum sensors from the desk")]))
            daemon_dir.sources.append({"id": "desk", "url": feeds.base + "/desk.xml",
                                       "interval": "1s"})
            daemon_dir.subscribers = [daemon_dir.subscribers[0],
                                      {"name": "newbie", "webhook": newbie.base + "/hook",
                                       "rules": ["quantum"]}]
            daemon_dir.write()
            wait_for(lambda: "sources reloaded" in daemon.text(), timeout=10)
            wait_for(lambda: "subscribers reloaded" in daemon.text(), timeout=10)
            wait_for(lambda: alerted(newbie, "Quantum sensors from the desk"), timeout=15)
            text = daemon.text()
            assert "added desk" in text and "added newbie" in text
            assert "removed stuck (pending deliveries cancelled) (1 delivery(ies) cancelled)" \
                in text
            listing = daemon_dir.cli("deliveries")
            assert "cancelled" in listing.stdout and "subscriber removed from subscribers.yaml" \
                in listing.stdout

            # A broken edit is reported with file:line and changes nothing.
            subscribers_file = daemon_dir.path / "subscribers.yaml"
            subscribers_file.write_text(subscribers_file.read_text() +
                                        "- name: broken\n  webhook: ftp://nowhere\n")
            wait_for(lambda: "subscribers not reloaded" in daemon.text(), timeout=10)
            assert f"{subscribers_file}:" in daemon.text()
            feeds.put("/desk.xml", rss([item("d", "Quantum sensors from the desk"),
                                        item("e", "Quantum links abroad")]))
            wait_for(lambda: alerted(newbie, "Quantum links abroad"), timeout=15)

            # A removed source is no longer polled; its articles stay in the store.
            daemon_dir.sources = daemon_dir.sources[:1]
            (daemon_dir.path / "sources.yaml").write_text(
                "sources:\n  - {id: wire, url: '" + feeds.base + "/wire.xml', interval: 1s}\n")
            wait_for(lambda: "removed desk (no longer polled" in daemon.text(), timeout=10)

            def polls(path: str) -> int:
                return sum(1 for hit, _ in feeds.hits if hit == path)
            # 'wire' (every 1 s) is polled twice more: any cycle that had started with 'desk'
            # is over; then three more polls of 'wire', and 'desk' not once.
            wire = polls("/wire.xml")
            wait_for(lambda: polls("/wire.xml") >= wire + 2, timeout=15)
            desk, wire = polls("/desk.xml"), polls("/wire.xml")
            wait_for(lambda: polls("/wire.xml") >= wire + 3, timeout=15)
            assert polls("/desk.xml") == desk
        finally:
            code = daemon.stop()
        assert code == 0, daemon.text()
    finally:
        stuck.close()
        newbie.close()


def test_a_job_running_at_the_stop_finishes_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """The scheduler is paused and the running job drained before the scheduler's shutdown,
    which would cancel it (APScheduler then logs the cancellation as a failure)."""
    import asyncio
    from types import SimpleNamespace

    from monitor.config import Settings
    from monitor.scheduler import Daemon as Scheduled
    finished = []
    started = asyncio.Event()

    async def slow_reload() -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(True)

    async def scenario() -> None:
        settings = Settings(database="sqlite://", rules_poll="1s", tick="1h")
        ctx = SimpleNamespace(settings=settings, sources={}, subscribers=[],
                              rules=SimpleNamespace(engine=SimpleNamespace(
                                  ruleset=SimpleNamespace(rules=()))))
        daemon = Scheduled(ctx, watcher=None)  # type: ignore[arg-type]
        daemon._cycle = lambda: asyncio.sleep(0)  # type: ignore[method-assign]
        daemon._reload = slow_reload  # type: ignore[method-assign]
        running = asyncio.create_task(daemon.run())
        await asyncio.wait_for(started.wait(), 10)    # the reload job is running (mid-sleep)
        daemon.stopping.set()
        await asyncio.wait_for(running, 10)

    caplog.set_level("INFO")
    asyncio.run(scenario())
    assert finished == [True]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")], caplog.text
