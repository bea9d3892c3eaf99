"""Every failure path once more on the documented defaults: what a user who copies the README's
config runs. Nothing is set but where things are (files, loopback ports) and
`allow_private_networks` (the servers are on 127.0.0.1); no `delivery:`, no `fetch:`, no
timeouts, SMTP with its default STARTTLS and a verified certificate.

The first release crashed on its first failed webhook because every test set `delivery.retry`
and the default was never parsed; these tests are the guard against that class of bug.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import rss, run_cli, seed_item
from monitor.store import DeliveryRow, SourceRow, open_store
from servers import FeedServer, SMTPServer, WebhookReceiver, self_signed_certificate, wait_for


class DefaultsDir:
    """A config that names its files and nothing else."""

    def __init__(self, path: Path, smtp_port: int | None = None) -> None:
        self.path = path
        self.config: dict[str, Any] = {"sources": "sources.yaml",
                                       "subscribers": "subscribers.yaml",
                                       "allow_private_networks": True}
        if smtp_port is not None:
            self.config["smtp"] = {"host": "127.0.0.1", "port": smtp_port}
        self.sources: list[dict[str, Any]] = []
        self.subscribers: list[dict[str, Any]] = []
        self.env: dict[str, str] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        (self.path / "monitor.yaml").write_text(yaml.safe_dump(self.config))
        (self.path / "sources.yaml").write_text(yaml.safe_dump({"sources": self.sources}))
        (self.path / "subscribers.yaml").write_text(
            yaml.safe_dump({"subscribers": self.subscribers}))
        return run_cli(*args, "--config", str(self.path / "monitor.yaml"), cwd=self.path,
                       env=self.env)

    def deliveries(self) -> list[DeliveryRow]:
        # The default database is ./monitor.db, next to where the command ran.
        store = open_store(f"sqlite:///{self.path / 'monitor.db'}")
        return store.deliveries(["pending", "sent", "dead", "disabled"])

    def sources_rows(self) -> dict[str, SourceRow]:
        return {row.id: row for row in open_store(f"sqlite:///{self.path / 'monitor.db'}")
                .sources()}

    def wait_until_due(self) -> None:
        """Wait (on the clock, with a deadline) until the pending delivery is due again."""
        [row] = [r for r in self.deliveries() if r.status == "pending"]
        wait_for(lambda: datetime.now(timezone.utc) >= row.next_attempt, timeout=10)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_smtp(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    server = SMTPServer(certificate)
    yield server
    server.close()


def webhook_dir(tmp_path: Path, feeds: FeedServer, receiver: WebhookReceiver) -> DefaultsDir:
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir = DefaultsDir(tmp_path)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook"}]
    return workdir


def mail_dir(tmp_path: Path, feeds: FeedServer, smtp: SMTPServer,
             certificate: tuple[Path, Path]) -> DefaultsDir:
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir = DefaultsDir(tmp_path, smtp.port)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ana", "email": "ana@example.org"}]
    workdir.env = {"SSL_CERT_FILE": str(certificate[0])}
    return workdir


def test_webhook_500_then_200_retries_after_the_default_first_wait(
        tmp_path: Path, feeds: FeedServer, receiver: WebhookReceiver) -> None:
    workdir = webhook_dir(tmp_path, feeds, receiver)
    receiver.script = [(500, {})]
    first = workdir.cli("once")
    assert first.returncode == 0, first.stderr
    assert "0 sent, 1 failed" in first.stdout
    [row] = workdir.deliveries()
    assert (row.status, row.attempts) == ("pending", 1)
    wait = (row.next_attempt - datetime.now(timezone.utc)).total_seconds()
    assert 3.0 <= wait <= 5.6          # the documented first retry: 5 s, +/- 10 %
    workdir.wait_until_due()
    second = workdir.cli("once")
    assert second.returncode == 0, second.stderr
    assert "1 sent, 0 failed" in second.stdout
    assert len(receiver.received) == 2
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_apprise_503_then_200_retries_after_the_default_first_wait(
        tmp_path: Path, feeds: FeedServer, receiver: WebhookReceiver) -> None:
    """An ntfy subscriber through Apprise, no delivery settings: the same schedule and the
    same delivery id as a webhook's."""
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir = DefaultsDir(tmp_path)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ntfy-desk",
                            "apprise": f"ntfy://127.0.0.1:{receiver.port}/desk"}]
    receiver.script = [(503, {})]
    first = workdir.cli("once")
    assert "0 sent, 1 failed" in first.stdout, first.stdout + first.stderr
    [row] = workdir.deliveries()
    assert (row.status, row.attempts) == ("pending", 1)
    wait = (row.next_attempt - datetime.now(timezone.utc)).total_seconds()
    assert 3.0 <= wait <= 5.6          # the documented first retry: 5 s, +/- 10 %
    workdir.wait_until_due()
    second = workdir.cli("once")
    assert "1 sent, 0 failed" in second.stdout
    bodies = [r.body.decode() for r in receiver.received]
    assert len(bodies) == 2 and all(f"Alert id {row.id}" in body for body in bodies)


def test_webhook_410_disables_the_endpoint(tmp_path: Path, feeds: FeedServer,
                                           receiver: WebhookReceiver) -> None:
    workdir = webhook_dir(tmp_path, feeds, receiver)
    receiver.script = [(410, {})]
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    [row] = workdir.deliveries()
    assert row.status == "disabled" and "410" in (row.last_error or "")


def test_smtp_451_then_250_over_starttls(tmp_path: Path, feeds: FeedServer,
                                         tls_smtp: SMTPServer,
                                         certificate: tuple[Path, Path]) -> None:
    workdir = mail_dir(tmp_path, feeds, tls_smtp, certificate)
    tls_smtp.handler.script = ["451 4.3.0 Try again later"]
    first = workdir.cli("once")
    assert first.returncode == 0, first.stderr
    [row] = workdir.deliveries()
    assert row.status == "pending" and "451" in (row.last_error or "")
    workdir.wait_until_due()
    second = workdir.cli("once")
    assert "1 sent, 0 failed" in second.stdout, second.stdout + second.stderr
    assert len(tls_smtp.messages) == 1
    assert tls_smtp.messages[0]["Message-ID"].startswith(f"<{row.id}@")


def test_smtp_550_is_dead_at_once(tmp_path: Path, feeds: FeedServer, tls_smtp: SMTPServer,
                                  certificate: tuple[Path, Path]) -> None:
    workdir = mail_dir(tmp_path, feeds, tls_smtp, certificate)
    tls_smtp.handler.script = ["550 5.1.1 No such user"]
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    [row] = workdir.deliveries()
    assert row.status == "dead" and "550" in (row.last_error or "")
    assert "550" in workdir.cli("deliveries").stdout


def test_sources_answering_500_429_410_fail_alone(tmp_path: Path, feeds: FeedServer,
                                                   receiver: WebhookReceiver) -> None:
    workdir = webhook_dir(tmp_path, feeds, receiver)
    feeds.put("/500.xml", "oops", status=500)
    feeds.put("/429.xml", "slow down", status=429, headers={"Retry-After": "120"})
    feeds.put("/410.xml", "gone", status=410)
    workdir.sources += [{"id": f"s{code}", "url": f"{feeds.base}/{code}.xml"}
                        for code in (500, 429, 410)]
    started = datetime.now(timezone.utc)
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    assert "3 failed" in result.stdout
    assert "failed source s500: HTTP 500" in result.stdout
    assert "1 sent, 0 failed" in result.stdout          # the healthy source still alerted
    rows = workdir.sources_rows()
    assert rows["s410"].disabled and not rows["s500"].disabled
    assert (rows["s429"].next_due - started).total_seconds() >= 120     # Retry-After kept
    assert 300 <= (rows["s500"].next_due - started).total_seconds() <= 700  # interval 10m
