"""Store benchmark: 10,000 sources' worth of articles (200,000) through dedupe and matching.

Each "feed" of 20 articles goes through the same save path as a fetched feed (dedupe, story
grouping, match, and with --subscriber an outbox row per match for one webhook subscriber) into
SQLite and PostgreSQL, a claim batch of feeds at a time as run_cycle saves them, with the match
workers of the default settings (one on either backend, on two cores) and the default group commit
(feeds ready at once share a commit; savepoints only when one fails). The shipped rules run
keyword-only (the semantic model's cost is matching's, measured by bench_match.py). Reports
articles/s, the CPU per new article of the main thread, the main process and the match worker,
feeds per commit, database size and peak RSS (of this process and of the match worker), with RSS
sampled as the tables grow (it must stay flat: nothing loads a whole table), and the rate of a
second pass where every item is a duplicate: feeds listing exactly the items of their last poll,
then feeds listing all but one of them (found by an index lookup). Their fetch states are written a
claim batch at a time, as in a daemon cycle.
Run: .venv/bin/python bench/bench_store.py [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from sqlalchemy import text

from monitor.config import Settings, SourceSpec, SubscriberSpec
from monitor.match import Engine
from monitor.models import Article, FetchResult
from monitor.context import Context, Rules
from monitor.pipeline import SourceOutcome, record_quiet, save
from monitor.prepare import Preparer
from monitor.rules import load_rules
from monitor.store import SourceRow, open_store

WORDS = ("officials said talks aid prisoners ceasefire resume week capital people familiar plans "
         "government minister election market prices energy court ruling protest city council "
         "budget school hospital storm flood rescue police report investigation trade deal "
         "tariffs exports farmers harvest drought water power grid strike union wages museum "
         "festival film music football league coach transfer season record Hamas truce Israel "
         "Egypt Qatar hostages mediators").split()


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def articles(feed: int, rng: random.Random) -> list[Article]:
    out = []
    for item in range(20):
        body = " ".join(rng.choice(WORDS) for _ in range(120))
        out.append(Article(url=f"https://feed{feed}.example.org/{item}",
                           title=" ".join(rng.choice(WORDS) for _ in range(8)),
                           summary=body, guid=f"feed{feed}-{item}",
                           published=datetime.now(timezone.utc)))
    return out


def run(url: str, feeds: int, subscriber: bool = False) -> dict[str, object]:
    store = open_store(url)
    ruleset, _, _ = load_rules(Path(__file__).parent.parent / "rules")
    specs = {f"s{n}": SourceSpec(id=f"s{n}", url=f"https://feed{n}.example.org/rss")
             for n in range(feeds)}
    store.sync_sources(list(specs.values()), datetime.now(timezone.utc))
    desk = SubscriberSpec.model_validate({"name": "desk",
                                          "webhook": "https://hooks.example.org/news"})
    settings = Settings(database=url)
    ctx = Context(settings=settings, store=store,
                  fetcher=None,  # type: ignore[arg-type]
                  rules=Rules(Engine(ruleset, semantic=False)), sources=specs,
                  subscribers=[desk] if subscriber else [], channels={},
                  preparer=Preparer(settings.match_worker_count()))  # as the daemon
    rng = random.Random(1)
    result = FetchResult(url="", status=200, body=b"", content_type="application/rss+xml")
    samples, elapsed, window = [], 0.0, 0.0    # time spent in save() only, not generating
    claimed = 4 * ctx.settings.fetch.concurrency        # feeds a cycle saves at once
    sample_every = max(feeds // 8, claimed)
    # CPU spent in save() too: this thread's, this process's, and the match worker's (which
    # has exited once the preparer is closed; its start, building the engine, included).
    main_cpu = proc_cpu = 0.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = -(children.ru_utime + children.ru_stime)
    with asyncio.Runner() as runner:
        for first in range(0, feeds, claimed):
            last = min(first + claimed, feeds)
            batch = [(SourceRow(id=f"s{n}", url=specs[f"s{n}"].url), articles(n, rng))
                     for n in range(first, last)]
            started, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
            runner.run(save_all(ctx, batch, result))
            spent = time.perf_counter() - started
            main_cpu += time.thread_time() - thread
            proc_cpu += time.process_time() - process
            elapsed, window = elapsed + spent, window + spent
            if last < feeds and last // sample_every > first // sample_every:
                samples.append({"articles": last * 20, "rss_mb": round(rss_kb() / 1024),
                                "articles_per_s": round(sample_every * 20 / window)})
                window = 0.0
        # A second pass over the first 2,000 feeds (40,000 items: long enough to time; 200
        # feeds took under 0.1 s and swung with any hiccup): every item is a duplicate. Source
        # rows are read from the store as a claim reads them; fetch states are written a claim
        # batch at a time, as run_cycle does. First the feeds exactly as last polled (known
        # from the source's items_hash), then each without its last item (known by an index
        # lookup).
        rng = random.Random(1)
        again = [articles(n, rng) for n in range(min(2000, feeds))]
        dup_rate = duplicate_pass(ctx, runner, again, result)
        lookup_rate = duplicate_pass(ctx, runner, [batch[:-1] for batch in again], result)
    ctx.preparer.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu += children.ru_utime + children.ru_stime
    feeds_per_commit = ctx.commits.written / max(ctx.commits.groups, 1)
    with store.session() as session:
        matched, queued = (session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                           for table in ("matches", "deliveries"))
    database_mb = round(size_mb(url), 1)
    store.engine.dispose()      # its connections' page caches must not count in the next run
    return {"articles": feeds * 20, "seconds": round(elapsed, 1), "matches": matched,
            "outbox_rows": queued, "feeds_per_commit": round(feeds_per_commit, 1),
            # CPU ms per new article: the main thread, the main process (its threads hand
            # feeds to the worker and read back results), the match worker.
            "cpu_ms_per_article": {name: round(seconds * 1000 / (feeds * 20), 3) for name, seconds
                                   in (("main_thread", main_cpu), ("main_process", proc_cpu),
                                       ("worker", worker_cpu))},
            "articles_per_s": round(feeds * 20 / elapsed),
            "duplicates_per_s": round(dup_rate),
            "duplicates_by_lookup_per_s": round(lookup_rate), "samples": samples,
            "database_mb": database_mb}


async def save_all(ctx: Context, batch: list[tuple[SourceRow, list[Article]]],
                   result: FetchResult) -> list[SourceOutcome]:
    """A claim batch's feeds saved as run_cycle saves them: all at once, each computed by the
    match worker while the one before is written."""
    return list(await asyncio.gather(*(save(ctx, row, ctx.sources[row.id], items, result)
                                       for row, items in batch)))


def duplicate_pass(ctx: Context, runner: asyncio.Runner, batches: list[list[Article]],
                   result: FetchResult) -> float:
    """Duplicates/s over feeds whose items are all stored: each feed's read, then its claim
    batch's fetch states in one transaction."""
    rows = [ctx.store.source(f"s{n}") for n in range(len(batches))]
    claimed = 4 * ctx.settings.fetch.concurrency
    started = time.perf_counter()
    for first in range(0, len(batches), claimed):
        chunk = [(row, batch) for row, batch in zip(rows[first:first + claimed],
                                                    batches[first:first + claimed], strict=True)
                 if row is not None]
        outcomes = runner.run(save_all(ctx, chunk, result))
        record_quiet(ctx, outcomes, {row.id: row for row, _ in chunk})
    return sum(map(len, batches)) / (time.perf_counter() - started)


def size_mb(url: str) -> float:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--pg", default=os.environ.get(
        "NEWS_MONITOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--subscriber", action="store_true",
                        help="one webhook subscriber follows every rule: an outbox row per match")
    args = parser.parse_args()
    results = {}
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.db", args.feeds, args.subscriber)
            print(json.dumps({"sqlite": results["sqlite"]}), flush=True)
    if args.only != "sqlite":
        name = f"nm_bench_{os.getpid()}"
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            results["postgresql"] = run(args.pg.rsplit("/", 1)[0] + "/" + name, args.feeds,
                                        args.subscriber)
            print(json.dumps({"postgresql": results["postgresql"]}), flush=True)
        finally:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # The match worker's, once it has exited (each run closes its preparer and waits for it).
    results["worker_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
