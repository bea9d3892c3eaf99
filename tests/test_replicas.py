"""Several `news-monitor run` replicas on one PostgreSQL share the work; one is killed."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Iterator

import psycopg
import pytest

from conftest import Workdir, drop_pg_database, make_pg_database, rss
from servers import FeedServer, WebhookReceiver, respond, wait_for

FEEDS = 300
MATCHING = range(0, FEEDS, 10)          # 30 feeds carry a story the shipped rule alerts on
TOPICS = ["harvest", "museum", "rail", "tariff", "comet", "glacier", "opera", "chess", "salmon",
          "violin", "bridge", "orchard", "lantern", "meteor", "canal"]


def feed(number: int) -> str:
    topic = TOPICS[number % len(TOPICS)]
    items = [{"title": f"{topic.title()} report {number}",
              "link": f"https://feed{number}.example.org/{topic}/{number}",
              "body": f"<p>A report about the {topic} number {number} and its season.</p>"}]
    if number in MATCHING:
        # Distinct wording per dispatch: near-identical texts would rightly be one story.
        words = random.Random(number).sample(TOPICS * 3, 24)
        items.append({"title": f"Hamas and a truce, dispatch {number}",
                      "link": f"https://feed{number}.example.org/truce/{number}",
                      "body": f"<p>Hamas weighed the truce offer. {' '.join(words)}.</p>"})
    return rss(items)


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = make_pg_database()
    yield url
    drop_pg_database(url)


def query(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()


def test_three_replicas_one_killed(workdir: Workdir, feeds: FeedServer,
                                   receiver: WebhookReceiver, pg_url: str) -> None:
    bodies = {n: feed(n).encode() for n in range(FEEDS)}

    def slow_feed(request: BaseHTTPRequestHandler) -> None:
        time.sleep(0.05)                    # so a cycle takes long enough to be interrupted
        number = int(request.path.split("/")[-1].split(".")[0])
        respond(request, 200, bodies[number], {"Content-Type": "application/rss+xml"})

    workdir.sources = [{"id": f"f{n}", "url": feeds.route(f"/feed/{n}.xml", slow_feed),
                        "interval": "1h"} for n in range(FEEDS)]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook",
                            "rules": ["gaza-ceasefire"]}]
    workdir.config.update({"database": pg_url, "tick": "1s",
                           "fetch": {"concurrency": 8, "per_host": 8, "deadline": 10}})
    config = workdir.write()
    env = {k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"}
    # The schema first, so three processes starting at once do not race to create it.
    subprocess.run([sys.executable, "-m", "monitor", "db", "upgrade", "--config", str(config)],
                   check=True, env=env, capture_output=True)
    logs = [workdir.path / f"replica{n}.log" for n in range(3)]
    replicas = [subprocess.Popen([sys.executable, "-m", "monitor", "--log-level", "DEBUG", "run",
                                  "--config", str(config)], env=env, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT) for log in logs]
    try:
        wait_for(lambda: len(feeds.hits) >= 60, timeout=60)
        replicas[0].send_signal(signal.SIGKILL)                  # mid-cycle
        assert replicas[0].wait(timeout=10) == -signal.SIGKILL
        assert len(feeds.hits) < FEEDS
        wait_for(lambda: query(pg_url, "SELECT count(*) FROM sources "
                                       "WHERE last_success IS NOT NULL")[0][0] == FEEDS,
                 timeout=120, interval=0.5)
        wait_for(lambda: query(pg_url, "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                               )[0][0] == len(MATCHING), timeout=60, interval=0.5)
    finally:
        for replica in replicas[1:]:
            replica.send_signal(signal.SIGTERM)
        codes = [replica.wait(timeout=30) for replica in replicas[1:]]
    assert codes == [0, 0]

    # Every article stored once, every alert queued once and delivered once.
    assert query(pg_url, "SELECT count(*) FROM articles")[0][0] == FEEDS + len(MATCHING)
    assert query(pg_url, "SELECT count(*) FROM deliveries")[0][0] == len(MATCHING)
    per_article = Counter(r.json["data"]["article_url"] for r in receiver.received)
    ids = Counter(r.headers["webhook-id"] for r in receiver.received)
    assert len(per_article) == len(MATCHING) and len(ids) == len(MATCHING)
    # A post cut off by the kill may come again under the same id, never under a new one.
    assert sum(ids.values()) - len(ids) <= 1

    # The surviving replicas shared the fetching (the killed one may have been killed before
    # it claimed any: on a slow machine the other two can take the first 60 sources).
    fetched = [len(re.findall(r"source f\d+: \d+ item", log.read_text())) for log in logs]
    assert all(count > 0 for count in fetched[1:]), fetched
    # Every source was fetched by someone; the killed replica may have committed its last
    # source between the commit and that source's log line, so one line may be missing.
    assert sum(fetched) >= FEEDS - 1


def test_the_whole_pipeline_on_postgresql(workdir: Workdir, feeds: FeedServer,
                                          receiver: WebhookReceiver, pg_url: str) -> None:
    from conftest import seed_item
    feeds.put("/wire.xml", rss([seed_item()]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook", "rules": "*"}]
    workdir.config["database"] = pg_url
    upgrade = workdir.cli("db", "upgrade")
    from monitor.migrations import head
    assert upgrade.returncode == 0 and f"upgraded from empty to {head()}" in upgrade.stdout
    assert workdir.cli("once").returncode == 0
    assert workdir.cli("once").returncode == 0
    assert len(receiver.received) == 1
    status = workdir.cli("status")
    assert status.returncode == 0
    assert "sources      1: 1 ok, 0 failing" in status.stdout
    assert "1 articles, 1 matches, 1 alerts" in status.stdout
    assert "0 pending, 0 dead, 1 sent" in status.stdout
