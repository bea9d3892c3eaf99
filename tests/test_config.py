"""Config, sources and subscribers files: defaults, durations, located problems."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import (Settings, load_settings, load_sources, load_subscribers,
                            parse_duration, usable_cores)
from monitor.errors import ConfigError


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("2h", 7200),
                                          ("1d", 86400), (" 1.5m ", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value,message", [(5, "has no unit; write '5m'"),
                                           ("5", "not a number with a unit"),
                                           ("soon", "not a number with a unit")])
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


def test_defaults_are_the_embedded_ones() -> None:
    settings = Settings()
    assert settings.database == "sqlite:///monitor.db"
    assert settings.sources.name == "sources.yaml" and settings.rules.name == "rules"
    assert settings.subscribers is None and settings.allow_private_networks is False


def test_match_workers_default_to_one_with_two_cores_on_either_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.config.usable_cores", lambda: 2)
    assert Settings().match_workers is None and Settings().match_worker_count() == 1
    assert Settings(database="postgresql://db/monitor").match_worker_count() == 1
    monkeypatch.setattr("monitor.config.usable_cores", lambda: 1)
    assert Settings().match_worker_count() == 0
    config = tmp_path / "monitor.yaml"
    config.write_text("database: postgresql://db/monitor\nmatch_workers: 2\n", encoding="utf-8")
    assert load_settings(config)[0].match_worker_count() == 2
    config.write_text("match_workers: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="match_workers"):
        load_settings(config)


def test_usable_cores_follow_the_process_affinity() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                             "from monitor.config import Settings; "
                             "print(Settings().match_worker_count())"],
                            capture_output=True, text=True, check=True)
    assert pinned.stdout.strip() == "0"           # one core: the worker would share it


def test_sources_problems_are_located_and_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n"
                    "  - id: good\n    url: https://a.example.org/rss\n"
                    "  - id: bad-interval\n    url: https://b.example.org/rss\n    interval: 5\n"
                    "  - id: good\n    url: https://c.example.org/rss\n"
                    "  - id: ftp\n    url: ftp://d.example.org/\n"
                    "  - id: typo\n    url: https://e.example.org/\n    intreval: 5m\n")
    sources, problems = load_sources(path)
    assert [s.id for s in sources] == ["good"]
    text = "\n".join(str(p) for p in problems)
    assert f"{path}:6: sources.1.interval: duration '5' has no unit; write '5m'" in text
    assert f"{path}:7: duplicate source id 'good' (first at line 2)" in text
    assert f"{path}:10:" in text and "must start with http" in text
    assert f"{path}:13: sources.4: unknown key 'intreval' (a typo?)" in text


def test_subscribers_need_one_channel_and_their_secret(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    path = tmp_path / "subscribers.yaml"
    path.write_text("- name: both\n  email: a@example.org\n  webhook: https://h.example.org/\n"
                    "- name: hook\n  webhook: https://h.example.org/\n"
                    "  secret_env: MISSING_SECRET\n"
                    "- name: mail\n  email: not-an-address\n")
    subscribers, problems = load_subscribers(path)
    text = "\n".join(str(p) for p in problems)
    assert [s.name for s in subscribers] == ["hook"]
    assert "needs exactly one channel (email, webhook, console, apprise, url_env); has email, " \
        "webhook" in text
    assert "environment variable MISSING_SECRET is not set" in text
    assert "'not-an-address' is not an e-mail address" in text


def test_unreadable_or_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "monitor.yaml"
    bad.write_text("database: [unclosed\n")
    with pytest.raises(ConfigError):
        load_settings(bad)
    bad.write_text("tick: 5\nsmtp:\n  tls: maybe\n")
    with pytest.raises(ConfigError) as error:
        load_settings(bad)
    messages = [str(p) for p in error.value.problems]
    assert any(":1:" in m and "no unit" in m for m in messages)
    assert any(":3:" in m and "smtp.tls" in m for m in messages)
