"""A fast loopback feed server for the fetch benchmark (run in its own process).

Serves /feed/N.xml (20 items each) on 127.0.0.1 .. 127.0.0.H, one port, with a fixed latency
per response. Even-numbered feeds carry an ETag and answer 304 to a matching If-None-Match;
odd ones resend the same body.
"""

from __future__ import annotations

import asyncio
import random
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone


WORDS = ("officials said talks aid prisoners ceasefire resume week capital people familiar "
         "plans government minister election market prices energy court ruling protest city "
         "council budget school hospital storm flood rescue police report investigation trade "
         "deal tariffs exports farmers harvest drought water power grid strike union wages "
         "museum festival film music football league coach transfer season record").split()


def item_text(feed: int, item: int, words: int) -> str:
    """Distinct text per item (each story is its own story), deterministic per feed."""
    rng = random.Random(feed * 1000 + item)
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def feed_body(number: int) -> bytes:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    items = "".join(
        f"<item><title>{item_text(number, i, 8)}</title>"
        f"<link>https://feed{number}.example.org/story/{i}</link>"
        f"<guid>https://feed{number}.example.org/story/{i}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=i))}</pubDate>"
        f"<description>{item_text(number, i + 100, 60)}</description></item>"
        for i in range(20))
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Feed {number}</title><link>https://feed{number}.example.org/</link>"
            f"<description>d</description>{items}</channel></rss>").encode()


class FeedProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: whole answers are prepared once and written after
    the latency with call_later (no task per request: the server must not be the bottleneck)."""

    latency = 0.05
    answers: dict[str, tuple[bytes, bytes, bytes]] = {}   # path -> (200, 304, etag)
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1].decode()
            full, not_modified, etag = self.answers.get(path, (self.missing, b"", b""))
            asked = head.lower()
            if etag and b"if-none-match: " + etag.lower() in asked:
                answer = not_modified
            else:
                answer = full
            self.loop.call_later(self.latency, self._write, answer)

    def _write(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)


def prepare(number: int) -> tuple[bytes, bytes, bytes]:
    body = feed_body(number)
    etag = f'"v1-{number}"'.encode() if number % 2 == 0 else b""
    tag_header = b"ETag: " + etag + b"\r\n" if etag else b""
    full = (b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n" + tag_header +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    not_modified = b"HTTP/1.1 304 Not Modified\r\n" + tag_header + b"Content-Length: 0\r\n\r\n"
    return full, not_modified, etag


async def serve(port: int, hosts: int, feeds: int, latency: float) -> None:
    FeedProtocol.latency = latency
    FeedProtocol.answers = {f"/feed/{n}.xml": prepare(n) for n in range(feeds)}
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(FeedProtocol, f"127.0.0.{h}", port, backlog=1024)
               for h in range(1, hosts + 1)]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
