"""`news-monitor demo`: the main job on its embedded defaults, with no network and no config.

The sample articles in seeds/articles/ are served as an RSS feed on a loopback port; one cycle
runs with the shipped rules into a temporary SQLite file; alerts go to a console subscriber.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from monitor.config import Settings, SourceSpec, SubscriberSpec, shipped_dir
from monitor.pipeline import run_cycle
from monitor.runtime import Loaded, load_all, running


def sample_feed(directory: Path, base_url: str, now: datetime) -> bytes:
    """An RSS 2.0 document with one item per sample article (first line is the title)."""
    items = []
    for index, path in enumerate(sorted(directory.glob("*.txt"))):
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n") if p.strip())
        when = format_datetime(now - timedelta(minutes=10 * index))
        items.append(f"<item><title>{escape(title)}</title>"
                     f"<link>{base_url}/articles/{path.stem}</link>"
                     f"<guid>{base_url}/articles/{path.stem}</guid><pubDate>{when}</pubDate>"
                     f"<description>{escape(paragraphs)}</description></item>")
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            "<title>news-monitor sample articles</title>"
            f"<link>{base_url}/</link><description>Sample articles</description>"
            + "".join(items) + "</channel></rss>").encode()


class _FeedHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def run_demo(out: TextIO) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _FeedHandler.body = sample_feed(shipped_dir() / "seeds" / "articles", base,
                                    datetime.now(timezone.utc))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database=f"sqlite:///{tmp}/demo.db",
                                allow_private_networks=True)
            loaded = load_all(settings)
            you = SubscriberSpec.model_validate({"name": "you", "console": True})
            loaded = Loaded([SourceSpec(id="samples", url=f"{base}/feed.xml")], [you],
                            loaded.ruleset, loaded.rule_files, loaded.problems)
            samples = len(list((shipped_dir() / "seeds" / "articles").glob("*.txt")))
            print(f"news-monitor demo: serving {samples} sample articles at {base}/feed.xml; "
                  f"{len(loaded.ruleset.rules)} shipped rules; database {tmp}/demo.db\n",
                  file=out)
            report = asyncio.run(_cycle(settings, loaded, out))
    finally:
        server.shutdown()
    print(f"\n{report.total('new')} articles read, {report.total('matches')} matched, "
          f"{report.sent} alert(s) sent to the console subscriber.", file=out)
    return 0 if report.sent else 1


async def _cycle(settings: Settings, loaded: Loaded, out: TextIO) -> Any:
    async with running(settings, loaded, out) as ctx:
        return await run_cycle(ctx, only_due=False)
