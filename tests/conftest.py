"""Shared fixtures: loopback servers, a work directory with config files, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from servers import FeedServer, SMTPServer, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    """The team's shared folder (seed article, test corpora): beside the checkout on a
    developer's machine, at /work/shared for a clone made elsewhere, or $NEWS_MONITOR_SHARED."""
    candidates = [Path(os.environ["NEWS_MONITOR_SHARED"])] if "NEWS_MONITOR_SHARED" in \
        os.environ else []
    candidates += [ROOT.parent / "shared", Path("/work/shared")]
    return next((c for c in candidates if (c / "corpora").is_dir()), candidates[0])


SHARED = _shared()
SEED = SHARED / "seeds" / "000_1765ddb5385cd2a2.txt"
if not SEED.exists():
    SEED = ROOT / "seeds" / "articles" / "000_1765ddb5385cd2a2.txt"
CORPORA = SHARED / "corpora"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    yield server
    server.close()


def rss(items: list[dict[str, Any]], title: str = "Test feed") -> str:
    """A small RSS 2.0 document; each item: title, link, guid, body, published (datetime)."""
    now = datetime.now(timezone.utc)
    parts = []
    for item in items:
        when = item.get("published", now - timedelta(minutes=5))
        parts.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            f"<guid>{escape(item.get('guid', item['link']))}</guid>"
            f"<pubDate>{format_datetime(when)}</pubDate>"
            f"<description>{escape(item.get('body', ''))}</description></item>")
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>{escape(title)}</title><link>http://example.org/</link>"
            f"<description>t</description>{''.join(parts)}</channel></rss>")


def seed_item(link: str = "https://news.example.org/gaza/ceasefire-collapse") -> dict[str, Any]:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    html = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n") if p.strip())
    return {"title": title, "link": link, "body": html}


class Workdir:
    """A directory holding monitor.yaml, sources.yaml, subscribers.yaml and a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config_file = path / "monitor.yaml"
        self.config: dict[str, Any] = {
            "database": f"sqlite:///{path / 'monitor.db'}",
            "sources": "sources.yaml",
            "rules": str(ROOT / "rules"),
            "subscribers": "subscribers.yaml",
            "allow_private_networks": True,
            "delivery": {"retry": ["0s", "0s", "0s"], "timeout": 10},
            "fetch": {"deadline": 5, "read_timeout": 3, "connect_timeout": 2},
        }
        self.sources: list[dict[str, Any]] = []
        self.subscribers: list[dict[str, Any]] = []

    def write(self) -> Path:
        self.config_file.write_text(yaml.safe_dump(self.config))
        (self.path / "sources.yaml").write_text(yaml.safe_dump({"sources": self.sources}))
        (self.path / "subscribers.yaml").write_text(
            yaml.safe_dump({"subscribers": self.subscribers}))
        return self.config_file

    def smtp(self, server: SMTPServer) -> None:
        self.config["smtp"] = {"host": "127.0.0.1", "port": server.port, "tls": "none",
                               "from": "alerts@news-monitor.test", "timeout": 5}

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real `news-monitor` command with this directory's config."""
        self.write()
        return run_cli(*args, "--config", str(self.config_file), cwd=self.path, env=env,
                       timeout=timeout)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NEWS_MONITOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    return Workdir(tmp_path)


PG_ADMIN = os.environ.get("NEWS_MONITOR_TEST_PG",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def make_pg_database() -> str:
    """A fresh, empty PostgreSQL database on this machine's server; its URL."""
    import uuid

    import psycopg
    name = f"nm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs on a real SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)
