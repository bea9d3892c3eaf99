"""Alert latency: from a new item appearing on a source to the alert reaching a webhook.

The real daemon (`news-monitor run`) polls 1,000 loopback feeds on a 1-minute interval with a
rule that matches a word found only in the new items. After the first full round of polls, a
new matching item is published on a random feed every few seconds; a loopback webhook
receiver notes when each alert arrives. Target: p95 latency <= interval + 5 s (65 s): an item
waits at most one interval for its source's next poll, and the rest of the path (fetch, parse,
store, match, outbox, send) must take seconds, not minutes.

Run: .venv/bin/python bench/bench_latency.py [--sources 1000] [--events 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

INTERVAL = 60.0


class Feeds:
    """1,000 feeds of 20 items each; `publish` adds a matching item to one of them."""

    def __init__(self, count: int) -> None:
        self.items: list[list[tuple[str, str, datetime]]] = [
            [(f"Routine story {i}-{n}", f"https://news.example.org/{i}/{n}",
              datetime.now(timezone.utc)) for n in range(20)] for i in range(count)]
        self.published: dict[str, float] = {}
        self.requests = 0
        self.lock = threading.Lock()

    def publish(self, feed: int, number: int) -> None:
        url = f"https://news.example.org/{feed}/zebraquake-{number}"
        with self.lock:
            self.items[feed].insert(0, (f"Zebraquake report {number}", url,
                                        datetime.now(timezone.utc)))
            self.published[url] = time.time()

    def document(self, feed: int) -> bytes:
        with self.lock:
            entries = "".join(
                f"<item><title>{escape(t)}</title><link>{escape(u)}</link><guid>{escape(u)}"
                f"</guid><pubDate>{format_datetime(p)}</pubDate></item>"
                for t, u, p in self.items[feed][:20])
        return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>f{feed}</title>"
                f"<link>http://example.org/</link><description>d</description>{entries}"
                f"</channel></rss>").encode()


def serve(feeds: Feeds, arrivals: dict[str, float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            feeds.requests += 1
            body = feeds.document(int(self.path.strip("/").split(".")[0]))
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            url = json.loads(body)["data"]["article_url"]
            arrivals.setdefault(url, time.time())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--spacing", type=float, default=4.0, help="seconds between new items")
    args = parser.parse_args()
    feeds, arrivals = Feeds(args.sources), {}
    server = serve(feeds, arrivals)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    work = Path(tempfile.mkdtemp())
    (work / "rules").mkdir()
    (work / "rules" / "bench.yaml").write_text(
        "rules:\n  - id: zebraquake\n    title: Zebraquakes\n    all:\n"
        "      - keywords: [zebraquake]\n")
    (work / "sources.yaml").write_text(yaml.safe_dump({"sources": [
        {"id": f"f{i}", "url": f"{base}/{i}.xml", "interval": "1m"}
        for i in range(args.sources)]}))
    (work / "subscribers.yaml").write_text(yaml.safe_dump({"subscribers": [
        {"name": "desk", "webhook": f"{base}/hook"}]}))
    (work / "monitor.yaml").write_text(yaml.safe_dump({
        "database": f"sqlite:///{work / 'monitor.db'}", "sources": "sources.yaml",
        "rules": "rules", "subscribers": "subscribers.yaml", "allow_private_networks": True}))
    log = (work / "daemon.log").open("w")
    env = {k: v for k, v in os.environ.items() if k != "NEWS_MONITOR_CONFIG"}
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config",
                               str(work / "monitor.yaml")], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    try:
        started = time.time()
        while feeds.requests < args.sources:                 # the first round of polls
            if time.time() - started > 300 or daemon.poll() is not None:
                raise SystemExit(f"first round incomplete: {feeds.requests} polls")
            time.sleep(0.5)
        print(json.dumps({"first_round_s": round(time.time() - started, 1)}))
        rng = random.Random(3)
        for number in range(args.events):
            feeds.publish(rng.randrange(args.sources), number)
            time.sleep(args.spacing)
        deadline = time.time() + INTERVAL + 60
        while len(arrivals) < args.events and time.time() < deadline:
            time.sleep(0.5)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
        server.shutdown()
    latencies = sorted(arrivals[u] - t for u, t in feeds.published.items() if u in arrivals)
    missing = args.events - len(latencies)
    p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)] if latencies else float("inf")
    print(json.dumps({"sources": args.sources, "interval_s": INTERVAL, "events": args.events,
                      "delivered": len(latencies), "median_s": round(statistics.median(
                          latencies), 1) if latencies else None, "p95_s": round(p95, 1),
                      "max_s": round(latencies[-1], 1) if latencies else None}))
    ok = missing == 0 and p95 <= INTERVAL + 5
    print(f"target p95 <= interval + 5 s ({INTERVAL + 5:.0f} s), every alert delivered: "
          f"{'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
