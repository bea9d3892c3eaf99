"""The operator's HTTP endpoint (127.0.0.1 by default): /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

log = logging.getLogger("monitor.ops")


@asynccontextmanager
async def serve_ops(host: str, port: int | None, ctx: Any, daemon: Any) -> AsyncIterator[None]:
    if port is None:
        yield
        return
    from monitor.metrics import render_metrics

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            status, body, kind = answer(path, ctx, daemon, render_metrics)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            # A request line longer than the stream's 64 KiB limit: refuse it, no traceback.
            writer.write(b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("operator endpoint on http://%s:%d (/healthz /readyz /metrics)", host, port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


def answer(path: str, ctx: Any, daemon: Any, render_metrics: Any) -> tuple[str, bytes, str]:
    path = path.split("?")[0]
    if path == "/healthz":
        return "200 OK", b"ok\n", "text/plain"
    if path == "/readyz":
        checks = {"database": ctx.store.ping(), "rules": bool(ctx.rules.engine.ruleset.rules),
                  "scheduler": bool(daemon.scheduler.running)}
        body = "".join(f"{k}: {'ok' if v else 'FAIL'}\n" for k, v in checks.items()).encode()
        return ("200 OK" if all(checks.values()) else "503 Service Unavailable"), body, "text/plain"
    if path == "/metrics":
        body, kind = render_metrics(ctx)
        return "200 OK", body, kind
    return "404 Not Found", b"not found\n", "text/plain"
