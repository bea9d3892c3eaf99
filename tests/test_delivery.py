"""Alerts that arrive exactly once, survive crashes, and are worth reading."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conftest import CORPORA, Workdir, rss, seed_item
from monitor.config import FetchSettings, SubscriberSpec, load_settings
from monitor.errors import DeliveryError
from monitor.fetch import make_client
from monitor.netpolicy import is_public
from monitor.notify.render import Templates
from monitor.notify.webhook import WebhookChannel, sign, verify
from monitor.pipeline import run_cycle
from monitor.runtime import load_all, running
from servers import FeedServer, SMTPServer, WebhookReceiver, wait_for


def hook_setup(workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver,
               items: list[dict[str, Any]] | None = None) -> None:
    feeds.put("/wire.xml", rss(items or [seed_item()]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook", "rules": "*"}]


def statuses(workdir: Workdir) -> list[tuple[str, str, int]]:
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        return db.execute("SELECT id, status, attempts FROM deliveries "
                          "ORDER BY created_at").fetchall()


# --- signatures -------------------------------------------------------------------------------

def test_standard_webhooks_known_answer_vector() -> None:
    vectors = json.loads((CORPORA / "delivery" / "standard-webhooks" / "vectors.json").read_text())
    for case in vectors["sign"]:
        assert sign(case["secret"], case["msg_id"], case["timestamp"],
                    case["payload"].encode()) == case["expected_signature"]


def test_verify_rejects_tampering_and_stale_timestamps() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"a":1}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000",
               "webhook-signature": sign(secret, "msg_1", 1700000000, body)}
    assert verify(secret, headers, body, 1700000010)
    assert not verify(secret, headers, b'{"a":2}', 1700000010)
    assert not verify(secret, headers, body, 1700000000 + 3600)


# --- retries and endpoint answers -------------------------------------------------------------

def test_webhook_500_500_200_same_id_every_try(workdir: Workdir, feeds: FeedServer,
                                               receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    receiver.script = [(500, {}), (500, {})]
    for _ in range(3):
        assert workdir.cli("once").returncode == 0
    assert [r.json["type"] for r in receiver.received] == ["alert.matched"] * 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    [(_, status, attempts)] = statuses(workdir)
    assert (status, attempts) == ("sent", 3)
    listing = workdir.cli("deliveries")
    assert "1 sent" in listing.stdout


def mail_setup(workdir: Workdir, feeds: FeedServer, smtp: SMTPServer) -> None:
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir.smtp(smtp)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ana", "email": "ana@example.org", "rules": "*"}]


def test_smtp_451_then_250(workdir: Workdir, feeds: FeedServer, smtp: SMTPServer) -> None:
    mail_setup(workdir, feeds, smtp)
    smtp.handler.script = ["451 4.3.0 Try again later"]
    first = workdir.cli("once")
    assert "0 sent, 1 failed" in first.stdout and smtp.messages == []
    pending = workdir.cli("deliveries")
    assert "pending" in pending.stdout and "451" in pending.stdout
    second = workdir.cli("once")
    assert "1 sent, 0 failed" in second.stdout
    assert len(smtp.messages) == 1
    [(delivery_id, status, attempts)] = statuses(workdir)
    assert status == "sent" and attempts == 2
    assert smtp.messages[0]["Message-ID"].startswith(f"<{delivery_id}@")


def test_smtp_550_is_permanent(workdir: Workdir, feeds: FeedServer, smtp: SMTPServer) -> None:
    mail_setup(workdir, feeds, smtp)
    smtp.handler.script = ["550 5.1.1 No such user"]
    workdir.cli("once")
    [(_, status, _)] = statuses(workdir)
    assert status == "dead"
    assert "550" in workdir.cli("deliveries").stdout


def test_webhook_410_disables_the_endpoint(workdir: Workdir, feeds: FeedServer,
                                           receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    receiver.script = [(410, {})]
    workdir.cli("once")
    feeds.put("/wire.xml", rss([seed_item(), {"title": "Hamas and a new truce",
                                              "link": "https://news.example.org/b",
                                              "body": "<p>Hamas accepted a truce.</p>"}]))
    workdir.cli("once")
    assert len(receiver.received) == 1
    assert [s for _, s, _ in statuses(workdir)] == ["disabled", "disabled"]
    assert "disabled" in workdir.cli("deliveries").stdout


def test_dead_deliveries_can_be_retried(workdir: Workdir, feeds: FeedServer,
                                        receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    workdir.config["delivery"]["retry"] = ["0s"]
    receiver.script = [(500, {}), (502, {})]
    workdir.cli("once")
    workdir.cli("once")
    [(delivery_id, status, _)] = statuses(workdir)
    assert status == "dead"
    listing = workdir.cli("deliveries")
    assert delivery_id in listing.stdout and "502" in listing.stdout
    retried = workdir.cli("deliveries", "retry", "--all-dead")
    assert retried.returncode == 0 and "1 delivery" in retried.stdout
    workdir.cli("once")
    assert statuses(workdir)[0][1] == "sent"
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery_id}


def test_retry_after_is_honoured(workdir: Workdir, feeds: FeedServer,
                                 receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    receiver.script = [(503, {"Retry-After": "120"})]
    workdir.cli("once")
    workdir.cli("once")      # not due yet: the server asked for two minutes
    assert len(receiver.received) == 1
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        created, due = db.execute("SELECT created_at, next_attempt FROM deliveries").fetchone()
    wait = datetime.fromisoformat(due) - datetime.fromisoformat(created)
    assert wait >= timedelta(seconds=100)


# --- the network policy -----------------------------------------------------------------------

@pytest.mark.parametrize("address,public", [
    ("93.184.216.34", True), ("2606:2800:220:1::1", True), ("127.0.0.1", False),
    ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.5.4", False), ("169.254.169.254", False),
    ("100.64.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False), ("fe80::1", False),
    ("fd00:ec2::254", False), ("0.0.0.0", False), ("224.0.0.1", False), ("::ffff:8.8.8.8", True),
])
def test_public_address_table(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_webhook_to_loopback_is_refused(receiver: WebhookReceiver) -> None:
    async def attempt() -> None:
        http = make_client(FetchSettings(), allow_private=False)
        channel = WebhookChannel(http, Templates(), 5)
        spec = SubscriberSpec.model_validate({"name": "x",
                                              "webhook": f"http://localhost:{receiver.port}/hook"})
        try:
            await channel.send(spec, [], "msg_1")
        finally:
            await http.aclose()
    with pytest.raises(DeliveryError, match="resolves to 127.0.0.1") as error:
        asyncio.run(attempt())
    assert error.value.permanent
    assert receiver.received == []


# --- crashes ----------------------------------------------------------------------------------

def start_once(workdir: Workdir) -> subprocess.Popen[str]:
    workdir.write()
    env = {k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"}
    return subprocess.Popen([sys.executable, "-m", "monitor", "once", "--config",
                             str(workdir.config_file)], cwd=workdir.path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_after_send_before_mark(workdir: Workdir, feeds: FeedServer,
                                       receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    process: list[subprocess.Popen[str]] = []
    handle = receiver.handle
    acted_on: set[str] = set()

    def kill_on_first(request: Any) -> None:
        first = not receiver.received
        handle(request)          # the body is received (and acted on) before the answer
        acted_on.add(receiver.received[-1].headers["webhook-id"])
        if first:
            os.kill(process[0].pid, signal.SIGKILL)

    receiver.handle = kill_on_first  # type: ignore[method-assign]
    process.append(start_once(workdir))
    assert process[0].wait(timeout=30) == -signal.SIGKILL
    assert statuses(workdir)[0][1] == "pending"      # accepted, but never marked sent
    assert workdir.cli("once").returncode == 0         # the restart sends it again
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 2 and len(set(ids)) == 1       # same id at most twice
    assert len(acted_on) == 1                          # a receiver keyed on it acts once
    assert statuses(workdir)[0][1] == "sent"


def test_killed_before_send_delivers_exactly_once(workdir: Workdir, feeds: FeedServer,
                                                  receiver: WebhookReceiver) -> None:
    hook_setup(workdir, feeds, receiver)
    release = __import__("threading").Event()

    def slow(request: Any) -> None:           # a second source holds the cycle before sending
        release.wait(20)
        from servers import respond
        respond(request, 200, rss([]).encode(), {"Content-Type": "application/rss+xml"})

    workdir.sources.append({"id": "slow", "url": feeds.route("/slow.xml", slow)})
    process = start_once(workdir)
    wait_for(lambda: (workdir.path / "monitor.db").exists() and _pending(workdir), timeout=20)
    process.kill()
    process.wait(timeout=10)
    release.set()
    assert receiver.received == []
    assert workdir.cli("once").returncode == 0
    assert len(receiver.received) == 1 and statuses(workdir)[0][1] == "sent"
    assert workdir.cli("once").returncode == 0
    assert len(receiver.received) == 1


def _pending(workdir: Workdir) -> bool:
    try:
        return any(s == "pending" for _, s, _ in statuses(workdir))
    except sqlite3.OperationalError:
        return False


# --- worth reading ----------------------------------------------------------------------------

WIRE = ("Negotiators in Cairo said on Monday that Hamas had agreed in principle to a new "
        "ceasefire proposal put forward by Egypt and Qatar, raising hopes of a pause in the "
        "fighting. The proposal would begin with a six-week truce during which hostages and "
        "prisoners would be exchanged, officials familiar with the talks said. Israel has not "
        "yet responded publicly to the plan, which mediators described as final.")


def test_one_story_from_five_feeds_is_one_alert_listing_five_outlets(
        workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver) -> None:
    outlets = ["daily", "herald", "courier", "tribune", "gazette"]
    for index, name in enumerate(outlets):
        text = WIRE if index % 2 else WIRE + " Reporting by staff."
        feeds.put(f"/{name}.xml", rss([{"title": f"Hamas agrees to truce plan ({name})",
                                        "link": f"https://{name}.example.org/story/1",
                                        "body": f"<p>{text}</p>"}]))
    workdir.sources = [{"id": n, "url": f"{feeds.base}/{n}.xml"} for n in outlets]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook",
                            "rules": ["gaza-ceasefire"]}]
    result = workdir.cli("once")
    assert "5 new" in result.stdout
    matched = [r.json["data"] for r in receiver.received]
    assert len(matched) == 1
    alert = matched[0]
    carried = {alert["source_id"]} | {o["source"] for o in alert["also_reported_by"]}
    assert carried == set(outlets)

    late = {"title": "Hamas agrees to truce plan (late)", "link": "https://late.example.org/1",
            "body": f"<p>{WIRE}</p>"}
    feeds.put("/late.xml", rss([late]))
    workdir.sources.append({"id": "late", "url": feeds.base + "/late.xml"})
    workdir.cli("once")
    assert len(receiver.received) == 1          # attached to the story, not alerted again


def clocked_cycle(workdir: Workdir, clock: list[datetime]) -> Any:
    """One in-process cycle on this work directory's files, at the time clock[0] says."""
    workdir.write()
    settings, _ = load_settings(workdir.config_file)
    loaded = load_all(settings)

    def cycle() -> Any:
        async def run() -> Any:
            async with running(settings, loaded) as ctx:
                ctx.now = lambda: clock[0]
                return await run_cycle(ctx, only_due=False)
        return asyncio.run(run())
    return cycle


def test_digest_subscriber_gets_one_message_for_three_matches(
        workdir: Workdir, feeds: FeedServer, smtp: SMTPServer) -> None:
    items = [{"title": f"Hamas and the truce, part {n}", "link": f"https://n.example.org/{n}",
              "body": f"<p>Story {n}: Hamas discussed the truce {'again ' * n}today.</p>"}
             for n in range(1, 4)]
    feeds.put("/wire.xml", rss(items))
    workdir.smtp(smtp)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "weekly", "email": "d@example.org", "rules": "*",
                            "digest": {"every": "daily", "at": "08:00",
                                       "timezone": "Europe/Paris"}}]
    clock = [datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)]
    cycle = clocked_cycle(workdir, clock)

    first = cycle()
    assert first.total("queued") == 3 and first.sent == 0 and smtp.messages == []
    clock[0] = datetime(2026, 11, 26, 7, 0, 30, tzinfo=timezone.utc)   # 08:00:30 in Paris
    second = cycle()
    assert second.sent == 3
    assert len(smtp.messages) == 1
    text = smtp.messages[0].get_body(("plain",)).get_content()
    assert all(f"part {n}" in text for n in range(1, 4))
    assert "3 alerts" in smtp.messages[0]["Subject"]


def test_email_is_escaped_and_headers_cannot_be_injected(workdir: Workdir, feeds: FeedServer,
                                                         smtp: SMTPServer) -> None:
    evil = {"title": "Hamas truce\r\nBcc: victim@example.org <script>alert(1)</script> 5 < 6",
            "link": "javascript:alert(1)", "guid": "evil-1",
            "body": "<p>Hamas agreed to a truce &lt;img src=x onerror=alert(1)&gt;</p>"}
    feeds.put("/wire.xml", rss([evil]))
    workdir.smtp(smtp)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ana", "email": "ana@example.org", "rules": "*"}]
    workdir.cli("once")
    [mail] = smtp.messages
    assert mail["Bcc"] is None and "\n" not in mail["Subject"]
    assert smtp.handler.envelopes[0].rcpt_tos == ["ana@example.org"]
    html = mail.get_body(("html",)).get_content()
    assert "<script>" not in html and "alert(1)" not in html and "5 &lt; 6" in html
    assert "<img" not in html and "javascript:" not in html


def test_admin_hears_once_when_a_source_fails_and_once_when_it_recovers(
        workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver) -> None:
    feeds.put("/wire.xml", "busy", status=500, content_type="text/plain")
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ops", "webhook": receiver.base + "/ops", "rules": []}]
    workdir.config.update({"admin": "ops", "failure_alert_after": 2})
    for _ in range(4):
        workdir.cli("once")
    assert [r.json["data"]["rule_id"] for r in receiver.received] == ["source-failure:wire"]
    feeds.put("/wire.xml", rss([]))
    workdir.cli("once")
    workdir.cli("once")
    assert [r.json["data"]["rule_id"] for r in receiver.received] == [
        "source-failure:wire", "source-recovered:wire"]


def test_cooldown_batches_a_fast_moving_story(workdir: Workdir, feeds: FeedServer,
                                              smtp: SMTPServer) -> None:
    def item(n: int) -> dict[str, Any]:
        return {"title": f"Hamas truce update {n}", "link": f"https://u.example.org/{n}",
                "body": f"<p>Update {n}: Hamas and the truce, {'new detail ' * n}today.</p>"}
    workdir.smtp(smtp)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "desk", "email": "desk@example.org",
                            "rules": ["gaza-ceasefire"], "cooldown": "30m"}]
    clock = [datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)]
    cycle = clocked_cycle(workdir, clock)

    feeds.put("/wire.xml", rss([item(1)]))
    assert cycle().sent == 1
    for upto in (2, 3):
        clock[0] += timedelta(minutes=1)
        feeds.put("/wire.xml", rss([item(n) for n in range(1, upto + 1)]))
        assert cycle().sent == 0          # within the cooldown: held back
    clock[0] = datetime(2026, 11, 25, 12, 31, tzinfo=timezone.utc)
    assert cycle().sent == 2
    assert len(smtp.messages) == 2                     # the two held alerts went as one message
    assert "2 alerts" in smtp.messages[1]["Subject"]
