"""Hostile and broken sources, each against a real loopback server: a clear error for that
source, no other source waiting on it, the cycle completing, nothing crashing."""

from __future__ import annotations

import gzip
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Iterator

import pytest

from conftest import Workdir, rss, seed_item
from servers import FeedServer, WebhookReceiver, respond

MALFORMED = (b"<?xml version='1.0'?><rss version='2.0'><channel><title>Broken</title>"
             b"<item><title>Hamas & the truce</title><link>https://b.example.org/1</link>"
             b"<description>Hamas agreed to a truce <b>today</description></item>"
             b"<item><title>Second item</title><link>https://b.example.org/2</link></item>")
LATIN1 = ("<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item>"
          "<title>Montréal: trêve à Gaza</title><link>https://c.example.org/1</link>"
          "</item></channel></rss>").encode("iso-8859-1")
LAUGHS = (b"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY a 'ha'>"
          + b"".join(b"<!ENTITY %c '%s'>" % (98 + i, (b"&" + bytes([97 + i]) + b";") * 10)
                     for i in range(9))
          + b"]><rss version='2.0'><channel><title>&j;</title><item><title>Laughs</title>"
            b"<link>https://d.example.org/1</link><description>&j;</description></item>"
            b"</channel></rss>")
LOGIN = (b"<!doctype html><html><head><title>Sign in</title></head><body><form>"
         b"<input name=user><input type=password name=pw></form></body></html>")


def xxe(port: int) -> bytes:
    return (f"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY file SYSTEM 'file:///etc/passwd'>"
            f"<!ENTITY remote SYSTEM 'http://127.0.0.1:{port}/xxe-was-fetched'>]>"
            f"<rss version='2.0'><channel><title>x</title><item><title>XXE &file; &remote;"
            f"</title><link>https://e.example.org/1</link><description>&file;</description>"
            f"</item></channel></rss>").encode()


def trickle(request: BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "application/rss+xml")
    request.end_headers()
    try:
        for _ in range(60):
            request.wfile.write(b"<")
            request.wfile.flush()
            time.sleep(1)
    except OSError:
        pass


def huge(request: BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "application/rss+xml")
    request.send_header("Content-Length", str(2 * 1024 ** 3))
    request.end_headers()
    chunk = b" " * 65536
    try:
        for _ in range(2 * 1024 ** 3 // 65536):
            request.wfile.write(chunk)
    except OSError:
        pass


def endless_chunks(request: BaseHTTPRequestHandler) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "application/rss+xml")
    request.send_header("Transfer-Encoding", "chunked")
    request.end_headers()
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    try:
        for _ in range(40_000):
            request.wfile.write(chunk)
    except OSError:
        pass


BOMB = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)


def bomb(request: BaseHTTPRequestHandler) -> None:
    respond(request, 200, BOMB, {"Content-Type": "application/rss+xml",
                                 "Content-Encoding": "gzip"})


def redirect(target: str):  # type: ignore[no-untyped-def]
    def handler(request: BaseHTTPRequestHandler) -> None:
        respond(request, 302, b"", {"Location": target})
    return handler


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_hostile_sources(workdir: Workdir, feeds: FeedServer, receiver: WebhookReceiver,
                         silent_server: int) -> None:
    feeds.put("/good.xml", rss([seed_item()]))
    feeds.put("/malformed.xml", MALFORMED)
    feeds.put("/latin1.xml", LATIN1, content_type="application/rss+xml; charset=utf-8")
    feeds.put("/latin1-nocharset.xml", LATIN1.replace(b"<?xml version='1.0'?>",
              b"<?xml version='1.0' encoding='iso-8859-1'?>"), content_type="application/xml")
    feeds.put("/laughs.xml", LAUGHS)
    feeds.put("/xxe.xml", xxe(feeds.port))
    feeds.put("/login.xml", LOGIN, content_type="text/html")
    feeds.put("/empty.xml", b"")
    feeds.route("/trickle.xml", trickle)
    feeds.route("/loop-a", redirect("/loop-b"))
    feeds.route("/loop-b", redirect("/loop-a"))
    feeds.route("/huge.xml", huge)
    feeds.route("/endless.xml", endless_chunks)
    feeds.route("/bomb.xml", bomb)
    names = ["good", "malformed", "latin1", "latin1-nocharset", "laughs", "xxe", "login",
             "empty", "trickle", "huge", "endless", "bomb"]
    workdir.sources = [{"id": n, "url": f"{feeds.base}/{n}.xml"} for n in names]
    workdir.sources += [{"id": "loop", "url": f"{feeds.base}/loop-a"},
                        {"id": "silent", "url": f"http://127.0.0.1:{silent_server}/feed.xml"}]
    workdir.subscribers = [{"name": "hook", "webhook": receiver.base + "/hook", "rules": "*"}]
    workdir.config["fetch"] = {"deadline": 4, "read_timeout": 3, "connect_timeout": 2,
                               "max_bytes": 2_000_000, "per_host": 20}
    started = time.monotonic()
    result = workdir.cli("once", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 20                     # slow sources ran side by side, bounded by 4 s
    assert any(r.json["data"]["source_id"] == "good" for r in receiver.received)

    errors = {line.split(":", 1)[0].split()[-1]: line for line in result.stdout.splitlines()
              if line.strip().startswith("failed source")}
    assert "empty response" in errors["empty"]
    assert "HTML page, not a feed" in errors["login"]
    assert "deadline" in errors["trickle"]
    assert "redirect loop" in errors["loop"]
    assert "byte cap" in errors["huge"] and "exceeds" in errors["huge"]
    assert "byte cap" in errors["endless"]
    assert "byte cap (decoded)" in errors["bomb"]
    assert "timed out" in errors["silent"] or "deadline" in errors["silent"]
    for salvaged in ("good", "malformed", "latin1", "latin1-nocharset", "laughs", "xxe"):
        assert salvaged not in errors, errors.get(salvaged)

    assert not any("xxe-was-fetched" in path for path, _ in feeds.hits)
    with sqlite3.connect(workdir.path / "monitor.db") as db:
        texts = db.execute("SELECT title || summary || body FROM articles").fetchall()
    assert len(texts) >= 6 and not any("root:" in text for (text,) in texts)
    table = workdir.cli("sources").stdout
    for name in ("empty", "login", "trickle", "loop", "huge", "bomb", "silent"):
        row = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert "failing" in row
    malformed_items = next(line for line in table.splitlines() if line.startswith("malformed "))
    assert " 2 " in malformed_items           # both entries salvaged from the broken XML
