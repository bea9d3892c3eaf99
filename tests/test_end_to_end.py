"""The whole pipeline through the real `news-monitor` command, against loopback servers."""

from __future__ import annotations

import base64
import os

from conftest import ROOT, Workdir, rss, run_cli, seed_item
from monitor.notify.webhook import verify
from servers import FeedServer, SMTPServer, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

UKRAINE = {"title": "Energy ceasefire in Ukraine holds", "link": "https://news.example.org/ua/1",
           "body": "<p>A partial ceasefire in Ukraine held for a third day, officials said.</p>"}
AID = {"title": "Aid reaches northern Gaza", "link": "https://news.example.org/gaza/aid",
       "body": "<p>Trucks reached Gaza. Hamas-run authorities said hospitals lack fuel.</p>"}


def setup(workdir: Workdir, feeds: FeedServer, smtp: SMTPServer,
          receiver: WebhookReceiver) -> None:
    workdir.smtp(smtp)
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml", "interval": "10m"},
                       {"id": "other", "url": feeds.base + "/other.xml", "interval": "10m"}]
    workdir.subscribers = [
        {"name": "analyst", "email": "analyst@example.org", "rules": ["gaza-ceasefire"]},
        {"name": "desk-hook", "webhook": receiver.base + "/hook", "secret_env": "HOOK_SECRET",
         "rules": "*"},
        {"name": "markets", "email": "markets@example.org", "rules": ["gaza-hostage-mediation"]},
    ]


def test_seed_article_alerts_each_follower_once(workdir: Workdir, feeds: FeedServer,
                                                smtp: SMTPServer,
                                                receiver: WebhookReceiver) -> None:
    setup(workdir, feeds, smtp, receiver)
    feeds.put("/wire.xml", rss([seed_item(), UKRAINE]))
    feeds.put("/other.xml", rss([AID]))
    env = {"HOOK_SECRET": SECRET}

    first = workdir.cli("once", env=env)
    assert first.returncode == 0, first.stderr
    assert "3 new" in first.stdout and "2 sent, 0 failed" in first.stdout
    # Matched in the match worker: this 2-core machine, match_workers unset.
    assert "match worker(s) starting: 1, with 2 rule(s)" in first.stderr

    # Exactly one e-mail, to the follower of the rule, multipart, naming rule and article.
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["To"] == "analyst@example.org"
    assert "Ceasefire talks involving Hamas" in mail["Subject"]
    assert "Ceasefire Negotiations in Gaza Break Down" in mail["Subject"]
    assert mail.get_content_type() == "multipart/alternative"
    html = mail.get_body(("html",)).get_content()
    assert "<mark>" in html and "Hamas" in html
    # Exactly one webhook, signed, carrying the explanation.
    assert len(receiver.received) == 1
    hook = receiver.received[0]
    assert verify(SECRET, hook.headers, hook.body, int(hook.headers["webhook-timestamp"]))
    data = hook.json["data"]
    assert data["rule_id"] == "gaza-ceasefire"
    assert data["article_url"] == "https://news.example.org/gaza/ceasefire-collapse"
    assert data["source_id"] == "wire" and data["published"]
    assert "Hamas" in data["terms"] and "hamas" in data["actors"] and data["snippet"]
    assert data["delivery_id"] == hook.headers["webhook-id"]

    # A second cycle over the same feeds sends nothing.
    second = workdir.cli("once", env=env)
    assert second.returncode == 0, second.stderr
    assert "2 ok (2 unchanged)" in second.stdout and "0 new" in second.stdout
    assert len(smtp.messages) == 1 and len(receiver.received) == 1

    # A new matching item gives exactly one new alert per follower.
    fresh = {"title": "Truce talks resume", "link": "https://news.example.org/gaza/truce-2",
             "body": "<p>Negotiators said Hamas accepted a new truce proposal on Sunday.</p>"}
    feeds.put("/other.xml", rss([AID, fresh]))
    third = workdir.cli("once", env=env)
    assert "1 new, 1 already seen" in third.stdout, third.stdout
    assert len(smtp.messages) == 2 and len(receiver.received) == 2
    assert receiver.received[1].json["data"]["article_title"] == "Truce talks resume"


def test_articles_without_both_terms_alert_nobody(workdir: Workdir, feeds: FeedServer,
                                                  smtp: SMTPServer,
                                                  receiver: WebhookReceiver) -> None:
    setup(workdir, feeds, smtp, receiver)
    feeds.put("/wire.xml", rss([UKRAINE]))
    feeds.put("/other.xml", rss([AID]))
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout and "matches:  0" in result.stdout
    assert smtp.messages == [] and receiver.received == []


def test_a_source_that_is_down_does_not_stop_the_others(workdir: Workdir, feeds: FeedServer,
                                                        smtp: SMTPServer,
                                                        receiver: WebhookReceiver) -> None:
    setup(workdir, feeds, smtp, receiver)
    feeds.put("/other.xml", rss([seed_item()]))
    feeds.put("/wire.xml", "down for maintenance", status=503, content_type="text/plain")
    workdir.sources.append({"id": "closed-port", "url": "http://127.0.0.1:9/feed.xml"})
    result = workdir.cli("once")
    assert result.returncode == 0, result.stderr
    assert "1 ok (0 unchanged), 2 failed" in result.stdout
    assert "failed source wire: HTTP 503" in result.stdout
    assert "failed source closed-port:" in result.stdout
    assert len(smtp.messages) == 1 and len(receiver.received) == 1

    table = workdir.cli("sources")
    assert table.returncode == 0
    assert "wire" in table.stdout and "failing" in table.stdout and "503" in table.stdout


def test_a_bad_rule_file_makes_check_name_file_and_line(workdir: Workdir, tmp_path: os.PathLike
                                                       ) -> None:
    rules = workdir.path / "rules"
    rules.mkdir()
    (rules / "actors.yaml").write_text((ROOT / "rules" / "actors.yaml").read_text())
    (rules / "broken.yaml").write_text(
        "rules:\n"
        "  - id: typo-rule\n"
        "    title: A rule with a typo\n"
        "    al:\n"
        "      - keywords: [truce]\n"
        "  - id: ghost\n"
        "    title: Unknown actor\n"
        "    all:\n"
        "      - actors: [hamass]\n")
    workdir.config["rules"] = "rules"
    result = workdir.cli("check")
    assert result.returncode == 1
    assert f"{rules / 'broken.yaml'}:4: rules.0: unknown key 'al' (a typo?)" in result.stdout
    assert f"{rules / 'broken.yaml'}:6: rule 'ghost': unknown actor 'hamass'" in result.stdout


def test_check_on_the_shipped_config_says_all_is_well(tmp_path: os.PathLike) -> None:
    result = run_cli("check", cwd=tmp_path)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 7 source(s), 2 rule(s)")


def test_demo_prints_the_seed_alert(tmp_path: os.PathLike) -> None:
    result = run_cli("demo", cwd=tmp_path)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    assert "ALERT" in result.stdout and "[gaza-ceasefire]" in result.stdout
    assert "Ceasefire Negotiations in Gaza Break Down" in result.stdout
    assert "1 alert(s) sent" in result.stdout


def test_unreadable_config_exits_2_with_one_line(tmp_path: os.PathLike) -> None:
    missing = run_cli("once", "--config", "nope.yaml", cwd=tmp_path)  # type: ignore[arg-type]
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "nope.yaml" in missing.stderr
    bad_args = run_cli("once", "--bogus", cwd=tmp_path)  # type: ignore[arg-type]
    assert bad_args.returncode == 2 and "Traceback" not in bad_args.stderr


def test_templates_can_be_overridden_and_logs_can_be_json(workdir: Workdir, feeds: FeedServer,
                                                          smtp: SMTPServer) -> None:
    import json as jsonlib
    templates = workdir.path / "templates"
    templates.mkdir()
    (templates / "subject.txt.j2").write_text(
        "ALERT {{ alert.rule_id }}: {{ alert.article_title }}")
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir.smtp(smtp)
    workdir.config["templates"] = "templates"
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "ana", "email": "ana@example.org", "rules": "*"}]
    workdir.write()
    result = run_cli("--log-format", "json", "once", "--config", str(workdir.config_file),
                     cwd=workdir.path)
    assert result.returncode == 0, result.stderr
    assert smtp.messages[0]["Subject"].startswith("ALERT gaza-ceasefire: Ceasefire Negotiations")
    lines = [jsonlib.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any("msg_" in entry["message"] and entry["level"] == "info" for entry in lines)
