"""The operator's HTTP endpoint (127.0.0.1 by default): /healthz, /readyz, /metrics and the
web dashboard (monitor.web), one aiohttp application on `http_port`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web

log = logging.getLogger("monitor.ops")

# Request lines and headers longer than this are refused by aiohttp's parser (no traceback).
MAX_LINE = 8190


class _MalformedRequests(logging.Filter):
    """A malformed request (an overlong line, bad syntax) is the client's problem: one
    warning line, not an error with aiohttp's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import BadHttpMessage
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            record.msg, record.args = "refused a malformed request: %s", (error.message,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


@asynccontextmanager
async def serve_ops(host: str, port: int | None, ctx: Any, daemon: Any) -> AsyncIterator[None]:
    if port is None:
        yield
        return
    from monitor.web import build_app
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests())
    runner = web.AppRunner(build_app(ctx, daemon), access_log=None, max_line_size=MAX_LINE,
                           max_field_size=MAX_LINE, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    pages = " and the dashboard at /" if ctx.settings.dashboard.enabled else ""
    log.info("operator endpoint on http://%s:%d (/healthz /readyz /metrics%s)", host, port,
             pages)
    try:
        yield
    finally:
        await runner.cleanup()
