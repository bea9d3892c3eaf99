"""The Apprise channel: Slack, Telegram and ntfy subscribers through Apprise's own code.

Slack and Telegram are reached through VendorProxy (their real host names, TLS checked against
a certificate made for the test); ntfy is self-hosted, so its server is a loopback receiver.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Workdir, rss, seed_item
from monitor.config import SubscriberSpec
from monitor.errors import DeliveryError
from monitor.models import Alert
from monitor.notify.apprise_channel import AppriseChannel, compose, cut, plugin_for, shape_of
from servers import FeedServer, VendorProxy, WebhookReceiver

SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#news"
TELEGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890/"


@pytest.fixture
def vendors(tmp_path: Path) -> Iterator[VendorProxy]:
    proxy = VendorProxy(tmp_path)
    yield proxy
    proxy.close()


def setup(workdir: Workdir, feeds: FeedServer, ntfy: WebhookReceiver) -> None:
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [
        {"name": "slack-desk", "url_env": "SLACK_URL", "rules": ["gaza-ceasefire"]},
        {"name": "telegram-desk", "url_env": "TELEGRAM_URL", "rules": ["gaza-ceasefire"]},
        {"name": "ntfy-desk", "apprise": f"ntfy://127.0.0.1:{ntfy.port}/gaza-desk",
         "rules": ["gaza-ceasefire"]},
    ]


def env(vendors: VendorProxy) -> dict[str, str]:
    return {**vendors.env, "SLACK_URL": SLACK, "TELEGRAM_URL": TELEGRAM}


def alert_ids(text: str) -> set[str]:
    return set(re.findall(r"Alert id (msg_\w+)", text))


def test_slack_telegram_and_ntfy_subscribers_get_the_seed_alert(
        workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver,
        vendors: VendorProxy) -> None:
    setup(workdir, feeds, receiver)
    result = workdir.cli("once", env=env(vendors))
    assert result.returncode == 0, result.stderr
    assert "3 sent, 0 failed" in result.stdout, result.stdout + result.stderr

    by_host = {r.host: r for r in vendors.received}
    slack = by_host["hooks.slack.com"]
    assert slack.path == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    posted = slack.json
    text = str(posted)
    assert "Ceasefire Negotiations in Gaza Break Down" in text
    assert "implied by" in text                                   # the explanation
    assert "news.example.org/gaza/ceasefire-collapse" in text     # the article link
    assert len(alert_ids(text)) == 1

    telegram = by_host["api.telegram.org"]
    assert telegram.path == "/botAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage" or \
        telegram.path.endswith("/sendMessage")
    message = telegram.json
    assert str(message["chat_id"]) == "-1001234567890"
    assert "Ceasefire Negotiations in Gaza Break Down" in message["text"]
    assert len(message["text"]) <= 4096

    [pushed] = receiver.received
    ntfy_text = pushed.body.decode()
    assert "Ceasefire Negotiations in Gaza Break Down" in ntfy_text
    assert "**" not in ntfy_text                     # ntfy takes plain text: no markdown marks
    assert len(alert_ids(ntfy_text)) == 1


def test_a_failed_slack_send_is_retried_with_the_same_delivery_id(
        workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver,
        vendors: VendorProxy) -> None:
    setup(workdir, feeds, receiver)
    workdir.subscribers = workdir.subscribers[:1]
    vendors.script = [500]
    first = workdir.cli("once", env=env(vendors))
    assert "0 sent, 1 failed" in first.stdout, first.stdout + first.stderr
    listing = workdir.cli("deliveries", env=env(vendors))
    assert "pending" in listing.stdout and "Apprise (Slack)" in listing.stdout
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in listing.stdout + first.stdout + first.stderr
    second = workdir.cli("once", env=env(vendors))
    assert "1 sent, 0 failed" in second.stdout
    ids = [alert_ids(str(r.json)) for r in vendors.received]
    assert len(ids) == 2 and ids[0] == ids[1] and len(ids[0]) == 1
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        [(status, attempts, target)] = db.execute(
            "SELECT status, attempts, target FROM deliveries").fetchall()
    assert (status, attempts, target) == ("sent", 2, "apprise:$SLACK_URL")


def test_apprise_url_problems_are_found_by_check(workdir: Workdir,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_URL", raising=False)
    workdir.subscribers = [
        {"name": "unset", "url_env": "NOT_SET_URL"},
        {"name": "unknown", "apprise": "nosuchservice://x/y"},
        {"name": "both", "apprise": "ntfy://h/t", "url_env": "X"},
        {"name": "fine", "apprise": "ntfy://ntfy.example.org/desk"},
    ]
    result = workdir.cli("check")
    assert result.returncode == 1
    assert "subscriber 'unset': environment variable NOT_SET_URL is not set" in result.stdout
    assert "subscriber 'unknown': Apprise does not recognise the URL (nosuchservice://" \
        in result.stdout
    assert "give exactly one of apprise (the URL) or url_env" in result.stdout
    assert "'fine'" not in result.stdout


def test_a_self_hosted_target_on_a_private_address_is_refused() -> None:
    spec = SubscriberSpec.model_validate({"name": "n", "apprise": "json://127.0.0.1:9/hook"})
    channel = AppriseChannel(allow_private=False, timeout=5)
    with pytest.raises(DeliveryError, match="resolves to 127.0.0.1") as error:
        asyncio.run(channel.send(spec, [alert()], "msg_1"))
    assert error.value.permanent


# --- shaping one message for one service ------------------------------------------------------

def alert(snippet: str = "Hamas said the *truce* [draft] holds.", title: str = "Truce holds",
          marks: tuple[tuple[int, int], ...] = ((0, 5),)) -> Alert:
    return Alert(delivery_id="msg_1", rule_id="r", rule_title="Ceasefire", article_url=
                 "https://news.example.org/a", article_title=title, source_id="wire",
                 published=datetime(2026, 11, 30, 8, tzinfo=timezone.utc), summary="",
                 terms=["Hamas", "truce"], actors=["hamas"], fields=["body"], snippet=snippet,
                 marks=list(marks), reasons=["hamas — implied by 'Gaza'"],
                 also_reported_by=[{"source": "agency", "title": "T", "url": "https://a.example/1"}])


def test_markdown_where_the_service_takes_it_text_elsewhere() -> None:
    slack = shape_of(plugin_for(SLACK))
    ntfy = shape_of(plugin_for("ntfy://ntfy.example.org/desk"))
    assert slack.markdown and not ntfy.markdown
    title, body = compose([alert()], "msg_1", slack)
    assert title == "Ceasefire: Truce holds"
    assert "**Hamas**" in body and r"\*truce\*" in body and r"\[draft\]" in body
    assert "[Truce holds](https://news.example.org/a)" in body
    assert "Also reported by: [agency](https://a.example/1)" in body
    assert body.endswith("Alert id msg_1")
    _, plain = compose([alert()], "msg_1", ntfy)
    assert "**" not in plain and "\\" not in plain
    assert "https://news.example.org/a" in plain and "- hamas — implied by 'Gaza'" in plain


def test_each_service_limit_is_respected_cutting_on_words() -> None:
    long = " ".join(["ceasefire talks resumed"] * 400)          # 9,600 characters
    telegram = shape_of(plugin_for(TELEGRAM))
    assert telegram.body_max == 4096
    title, body = compose([alert(long, marks=())], "msg_9", telegram)
    assert len(body) <= 4096 and body.endswith("Alert id msg_9")
    snippet_line = next(line for line in body.splitlines() if line.startswith(">"))
    assert snippet_line.endswith("…") and snippet_line[:-1].split()[-1] in (
        "ceasefire", "talks", "resumed")
    # A digest too long for the service keeps whole alerts and says how many were left out.
    many = [alert(long, title=f"Story {i}", marks=()) for i in range(80)]
    _, digest = compose(many, "msg_10", telegram)
    assert len(digest) <= 4096 and re.search(r"… and \d+ more alert\(s\)", digest)
    # A service without a title gets it as the first line of the body.
    mattermost = shape_of(plugin_for("mmost://chat.example.org/abcdefghijklmnop"))
    assert mattermost.title_max == 0
    no_title, opened = compose([alert()], "msg_1", mattermost)
    assert no_title == "" and opened.startswith("Ceasefire: Truce holds")


def test_cut_keeps_whole_words() -> None:
    assert cut("one two three", 100) == "one two three"
    assert cut("one two three four", 12) == "one two…"
