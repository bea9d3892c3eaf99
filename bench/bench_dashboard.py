"""Dashboard benchmark: every page with 10,000 sources and 200,000 articles in the store.

Fills a store (SQLite by default, or --pg URL) with 10,000 sources, 200,000 articles spread
over the last 7 days, 20,000 matches and deliveries (sent, pending, dead), a week of fetch
history and delivery attempts, then asks each page 20 times through the real aiohttp
application and reports the median and 95th-percentile answer time. Target: every page
< 200 ms. With --screenshot DIR, Chromium (Playwright, the system's browser) saves the
overview of this store as DIR/dashboard-overview.png (the README's picture).

Run: .venv/bin/python bench/bench_dashboard.py [--pg URL] [--screenshot docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from monitor.config import Settings, SourceSpec, SubscriberSpec
from monitor.context import Context, Rules
from monitor.match import Engine
from monitor.rules import load_rules
from monitor.store import (ArticleRow, AttemptRow, DeliveryRow, FetchLogRow, MatchRow,
                           SourceRow, open_store)
from monitor.web import build_app

ROOT = Path(__file__).resolve().parents[1]
SOURCES, ARTICLES, ALERTS = 10_000, 200_000, 20_000
WORDS = ("officials said talks aid ceasefire truce Hamas Israel Egypt Qatar hostages market "
         "election court storm flood trade deal energy").split()


def fill(store: Any, now: datetime, rng: random.Random) -> None:
    week = 7 * 86400
    specs = [SourceSpec(id=f"src{i:05d}", url=f"https://feeds.example.org/{i}.xml")
             for i in range(SOURCES)]
    store.sync_sources(specs, now)
    with store.engine.begin() as connection:
        connection.execute(SourceRow.__table__.update().values(  # type: ignore[attr-defined]
            last_success=now, last_attempt=now, http_status=200, items_seen=20))
        failing = [f"src{i:05d}" for i in rng.sample(range(SOURCES), 150)]
        connection.execute(SourceRow.__table__.update().where(  # type: ignore[attr-defined]
            SourceRow.id.in_(failing)).values(consecutive_failures=3,  # type: ignore
                                              last_error="HTTP 503 Service Unavailable"))
        rows = []
        for n in range(ARTICLES):
            at = now - timedelta(seconds=rng.random() * week)
            rows.append(dict(source_id=f"src{n % SOURCES:05d}", guid=f"g{n}",
                             canonical_url=f"https://news.example.org/{n}",
                             url=f"https://news.example.org/{n}",
                             title=" ".join(rng.choices(WORDS, k=8)), summary="", body="",
                             published=at, fetched_at=at, story_id=None))
            if len(rows) == 10_000:
                connection.execute(ArticleRow.__table__.insert(), rows)  # type: ignore
                rows = []
        payload = json.dumps({"delivery_id": "x", "rule_id": "gaza-ceasefire",
                              "rule_title": "Ceasefire talks involving Hamas",
                              "article_url": "https://news.example.org/1",
                              "article_title": "Hamas and Israel agree a truce",
                              "source_id": "src00001", "published": None, "summary": "",
                              "terms": ["Hamas", "truce"], "actors": ["hamas"],
                              "fields": ["title"], "snippet": "Hamas and Israel agree a truce",
                              "marks": [[0, 5], [25, 30]], "reasons": [], "score": None,
                              "also_reported_by": [], "subscriber": "desk",
                              "created_at": None})
        matches, deliveries, attempts = [], [], []
        for n, article in enumerate(rng.sample(range(1, ARTICLES + 1), ALERTS)):
            at = now - timedelta(seconds=rng.random() * week)
            status = rng.choices(["sent", "pending", "dead"], [90, 7, 3])[0]
            matches.append(dict(article_id=article, rule_id="gaza-ceasefire",
                                explanation="{}", created_at=at))
            deliveries.append(dict(id=f"msg_{n:024d}", rule_id="gaza-ceasefire",
                                   story_id=article, article_id=article,
                                   subscriber=rng.choice(["desk", "analyst", "phone"]),
                                   channel="webhook", target="https://hooks.example.org/x",
                                   status=status, attempts=1, next_attempt=at, created_at=at,
                                   sent_at=at if status == "sent" else None, payload=payload))
            attempts.append(dict(delivery_id=f"msg_{n:024d}", at=at, status=status,
                                 error=None if status == "sent" else "HTTP 500"))
        connection.execute(MatchRow.__table__.insert(), matches)  # type: ignore
        connection.execute(DeliveryRow.__table__.insert(), deliveries)  # type: ignore
        connection.execute(AttemptRow.__table__.insert(), attempts)  # type: ignore
        fetches = [dict(source_id=f"src{n % SOURCES:05d}",
                        at=now - timedelta(seconds=rng.random() * week), ok=True,
                        not_modified=False, http_status=200, items=20, new=1, error=None)
                   for n in range(100_000)]
        connection.execute(FetchLogRow.__table__.insert(), fetches)  # type: ignore


PAGES = ["/", "/sources", "/sources?state=failing&sort=failures&desc=1",
         "/sources?sort=last_success&page=50", "/sources/src00042", "/alerts",
         "/alerts?status=dead&subscriber=desk", "/alerts?page=100",
         "/alerts/msg_000000000000000000000042", "/rules"]


async def measure(ctx: Context, rounds: int, screenshot: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with TestClient(TestServer(build_app(ctx))) as client:
        started = time.perf_counter()
        await (await client.get("/")).read()          # while the start-up warm-up runs
        print(json.dumps({"page": "/ (first request after start)",
                          "ms": round((time.perf_counter() - started) * 1000, 1)}))
        from monitor.web import WARMING
        await client.app[WARMING]
        for path in PAGES:
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = await client.get(path)
                await response.read()
                times.append((time.perf_counter() - started) * 1000)
                assert response.status == 200, (path, response.status)
            times.sort()
            results[path] = {"median_ms": round(statistics.median(times), 1),
                             "p95_ms": round(times[int(len(times) * 0.95) - 1], 1)}
            print(json.dumps({"page": path, **results[path]}))
        if screenshot is not None:
            await shoot(str(client.make_url("/")), screenshot)
    return results


async def shoot(url: str, directory: Path) -> None:
    from playwright.async_api import async_playwright
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=browser_path,
                                                   args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.goto(url)
        directory.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(directory / "dashboard-overview.png"))
        await browser.close()
    print(f"screenshot: {directory / 'dashboard-overview.png'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="a PostgreSQL database URL to use (emptied first)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    url = args.pg or f"sqlite:///{folder / 'dashboard.db'}"
    store = open_store(url)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    fill(store, now, random.Random(5))
    print(json.dumps({"store": url.split(":")[0], "sources": SOURCES, "articles": ARTICLES,
                      "alerts": ALERTS, "fill_s": round(time.perf_counter() - started, 1)}))
    ruleset, _, _ = load_rules(ROOT / "rules")
    settings = Settings.model_validate({"database": url})
    subscribers = [SubscriberSpec.model_validate({"name": n, "webhook": "https://h.example/"})
                   for n in ("desk", "analyst", "phone")]
    ctx = Context(settings=settings, store=store, fetcher=None,  # type: ignore[arg-type]
                  rules=Rules(Engine(ruleset, semantic=False)),
                  sources={f"src{i:05d}": SourceSpec(id=f"src{i:05d}", url="https://x.org/")
                           for i in range(SOURCES)},
                  subscribers=subscribers, channels={})
    results = asyncio.run(measure(ctx, args.rounds, args.screenshot))
    worst = max(r["p95_ms"] for r in results.values())
    print(f"target every page < 200 ms: {'met' if worst < 200 else 'MISSED'} "
          f"(slowest p95 {worst} ms)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
