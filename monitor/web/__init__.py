"""The operator's web page, on the daemon's http_port next to /healthz, /readyz and /metrics.

An aiohttp application with Jinja2 templates (autoescaped: titles and snippets come from the
open web), server-rendered SVG charts and a stylesheet of its own, and no script at all, so
the Content-Security-Policy forbids every script. Read-only unless `dashboard.token_env`
names a variable holding a token: an operator who logs in with it gets a session cookie
(HttpOnly, SameSite=Strict, signed with a key derived from the token) and POST forms carrying
a CSRF token, to retry dead deliveries and re-enable disabled sources and endpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape

from monitor.context import Context
from monitor.notify.render import marked_html, safe_link
from monitor.records import DELIVERY_STATUSES
from monitor.web import charts, queries

log = logging.getLogger("monitor.web")
STATIC = Path(__file__).parent / "static"
COOKIE = "news_monitor_session"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = ((now or datetime.now(timezone.utc)) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if future else f"{amount} ago"


class Auth:
    """The token, if any, and the session and CSRF values derived from it."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.key = hashlib.sha256(b"news-monitor dashboard\0" + token.encode()).digest() \
            if token else b""

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        session = secrets.token_urlsafe(18)
        return f"{session}.{self._sign('session', session)}"

    def session(self, request: web.Request) -> str | None:
        """The request's valid session id, or None (no token configured, no or bad cookie)."""
        if not self.enabled:
            return None
        cookie = request.cookies.get(COOKIE, "")
        session, _, signature = cookie.partition(".")
        if session and hmac.compare_digest(signature, self._sign("session", session)):
            return session
        return None

    def csrf(self, session: str) -> str:
        return self._sign("csrf", session)

    def check_token(self, given: str) -> bool:
        return self.enabled and hmac.compare_digest(given.encode(), (self.token or "").encode())


CTX = web.AppKey("ctx", Context)
AUTH = web.AppKey("auth", Auth)
ENV = web.AppKey("env", Environment)
DAEMON: web.AppKey[Any] = web.AppKey("daemon")
WARMING: web.AppKey[Any] = web.AppKey("warming")


def build_app(ctx: Context, daemon: Any = None) -> web.Application:
    """The web application over a running context (store, rules, subscribers)."""
    settings = ctx.settings
    auth = Auth(settings.dashboard.token())
    # The web pages' own templates first, then the alert templates the e-mail uses: an
    # alert's explanation is rendered by the same alert_body.html.j2 as in the e-mail.
    env = Environment(loader=ChoiceLoader([PackageLoader("monitor", "templates/web"),
                                           PackageLoader("monitor", "templates")]),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, ago=ago, safe_link=safe_link,
                       marked_html=lambda a: marked_html(a.snippet, a.marks))
    app = web.Application(middlewares=[_headers], client_max_size=64 * 1024)
    app[CTX], app[AUTH], app[ENV], app[DAEMON] = ctx, auth, env, daemon
    dashboard = settings.dashboard.enabled
    routes: list[web.AbstractRouteDef] = [web.get("/healthz", healthz), web.get("/readyz", readyz),
              web.get("/metrics", metrics)]
    if dashboard:
        routes += [web.get("/", overview), web.get("/sources", sources),
                   web.get("/sources/{id}", source), web.get("/alerts", alerts),
                   web.get("/alerts/{id}", alert), web.get("/rules", rules),
                   web.get("/login", login_form), web.post("/login", login),
                   web.post("/logout", logout),
                   web.post("/alerts/{id}/retry", retry),
                   web.post("/sources/{id}/enable", enable_source),
                   web.post("/endpoints/{subscriber}/enable", enable_endpoint),
                   web.static("/static", STATIC)]
        app.on_startup.append(_warm)
    app.add_routes(routes)
    return app


async def _warm(app: web.Application) -> None:
    """Count the week's hours for the overview chart once, in the background, so the first
    visitor does not wait for it (later visits only count the current hour)."""
    ctx = app[CTX]

    def count() -> None:
        try:
            queries.overview(ctx.store, datetime.now(timezone.utc), set(ctx.sources))
        except Exception:  # the page itself reports a database problem; warming is optional
            log.debug("dashboard warm-up failed", exc_info=True)
    app[WARMING] = asyncio.get_running_loop().run_in_executor(None, count)


SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store"}


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer, pages, redirects and errors alike, carries the security headers."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _page(request: web.Request, template: str, **values: Any) -> web.Response:
    app = request.app
    auth: Auth = app[AUTH]
    session = auth.session(request)
    html = app[ENV].get_template(template).render(
        request=request, path=request.path, can_act=session is not None,
        login_possible=auth.enabled, csrf=auth.csrf(session) if session else "",
        now=datetime.now(timezone.utc), **values)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def _read(request: web.Request, query: Callable[..., Any], *args: Any, **kwargs: Any
                ) -> Any:
    """A store query, off the event loop (the daemon's fetches and sends keep running)."""
    return await asyncio.to_thread(query, request.app[CTX].store, *args, **kwargs)


def _int(value: str | None, default: int = 1) -> int:
    try:
        return max(int(value or default), 1)
    except ValueError:
        return default


def _link(request: web.Request, **changes: Any) -> str:
    """This page's URL with some query values changed (sorting, filtering, paging)."""
    values = {**request.query, **{k: str(v) for k, v in changes.items()}}
    return request.path + "?" + urlencode({k: v for k, v in values.items() if v != ""})


# --- the operator endpoint --------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ctx, daemon = request.app[CTX], request.app[DAEMON]
    checks = {"database": await asyncio.to_thread(ctx.store.ping),
              "rules": bool(ctx.rules.engine.ruleset.rules),
              "scheduler": bool(daemon is not None and daemon.scheduler.running)}
    body = "".join(f"{k}: {'ok' if v else 'FAIL'}\n" for k, v in checks.items())
    return web.Response(text=body, status=200 if all(checks.values()) else 503)


async def metrics(request: web.Request) -> web.Response:
    from monitor.metrics import render_metrics
    body, kind = await asyncio.to_thread(render_metrics, request.app[CTX])
    response = web.Response(body=body)
    response.headers["Content-Type"] = kind
    return response


# --- pages ------------------------------------------------------------------------------------

async def overview(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    now = datetime.now(timezone.utc)
    data = await _read(request, queries.overview, now, set(ctx.sources))
    chart = charts.bars([("new articles", data.articles_per_hour),
                         ("alerts", data.alerts_per_hour)], data.hours,
                        title="New articles and alerts per hour, last 7 days")
    return _page(request, "overview.html.j2", data=data, chart=chart,
                 rules=len(ctx.rules.engine.ruleset.rules), subscribers=len(ctx.subscribers),
                 reload_problems=ctx.rules.problems)


async def sources(request: web.Request) -> web.Response:
    q = request.query
    sort = q.get("sort", "id") if q.get("sort", "id") in queries.SOURCE_SORTS else "id"
    data = await _read(request, queries.sources, q.get("state", ""), q.get("q", "")[:200],
                       sort, q.get("desc") == "1", _int(q.get("page")))
    configured = set(request.app[CTX].sources)
    return _page(request, "sources.html.j2", data=data, sort=sort, q=q,
                 link=lambda **c: _link(request, **c), state_of=queries.source_state,
                 configured=configured, page_size=queries.PAGE)


async def source(request: web.Request) -> web.Response:
    detail = await _read(request, queries.source_detail, request.match_info["id"])
    if detail is None:
        raise web.HTTPNotFound(text="no such source")
    return _page(request, "source.html.j2", d=detail, state=queries.source_state(detail.row),
                 configured=detail.row.id in request.app[CTX].sources)


async def alerts(request: web.Request) -> web.Response:
    q = request.query
    status = q.get("status", "") if q.get("status", "") in DELIVERY_STATUSES else ""
    data = await _read(request, queries.alerts, q.get("rule", "")[:200],
                       q.get("subscriber", "")[:200], status, _int(q.get("page")))
    return _page(request, "alerts.html.j2", data=data, q=q, statuses=DELIVERY_STATUSES,
                 link=lambda **c: _link(request, **c), page_size=queries.PAGE)


async def alert(request: web.Request) -> web.Response:
    detail = await _read(request, queries.alert_detail, request.match_info["id"])
    if detail is None:
        raise web.HTTPNotFound(text="no such alert")
    return _page(request, "alert.html.j2", d=detail, a=detail.alert)


async def rules(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    now = datetime.now(timezone.utc)
    activity = await _read(request, queries.rule_activity, now)
    ruleset = ctx.rules.engine.ruleset
    rows = [(rule, activity.per_day.get(rule.id, [0] * len(activity.days)),
             activity.last_hit.get(rule.id)) for rule in ruleset.rules]
    return _page(request, "rules.html.j2", rows=rows, activity=activity, spark=charts.spark,
                 loaded_at=ctx.rules.loaded_at, version=ctx.rules.version,
                 problems=ctx.rules.problems,
                 base=lambda path: Path(path).name if path else "")


# --- logging in and actions -------------------------------------------------------------------

async def login_form(request: web.Request) -> web.Response:
    if not request.app[AUTH].enabled:
        raise web.HTTPNotFound(text="the dashboard is read-only (no dashboard.token_env)")
    return _page(request, "login.html.j2", failed=False)


async def login(request: web.Request) -> web.StreamResponse:
    auth: Auth = request.app[AUTH]
    if not auth.enabled:
        raise web.HTTPForbidden(text="the dashboard is read-only (no dashboard.token_env)")
    form = await request.post()
    if not auth.check_token(str(form.get("token", ""))):
        log.warning("dashboard: a login with a wrong token from %s", request.remote)
        response = _page(request, "login.html.j2", failed=True)
        response.set_status(403)
        return response
    redirect = web.HTTPSeeOther("/")
    redirect.set_cookie(COOKIE, auth.new_session(), httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
    raise redirect


async def _authorised(request: web.Request) -> Any:
    """The form of a POST by a logged-in operator with a valid CSRF token, or 403."""
    auth: Auth = request.app[AUTH]
    session = auth.session(request)
    if session is None:
        raise web.HTTPForbidden(text="log in with the dashboard token first")
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), auth.csrf(session)):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    return form


async def logout(request: web.Request) -> web.StreamResponse:
    await _authorised(request)
    redirect = web.HTTPSeeOther("/")
    redirect.del_cookie(COOKIE, path="/")
    raise redirect


async def retry(request: web.Request) -> web.StreamResponse:
    await _authorised(request)
    delivery_id = request.match_info["id"]
    now = datetime.now(timezone.utc)
    count = await asyncio.to_thread(request.app[CTX].store.retry_deliveries, now,
                                    delivery_id)
    log.info("dashboard: delivery %s queued again (%d)", delivery_id, count)
    raise web.HTTPSeeOther(f"/alerts/{delivery_id}")


async def enable_source(request: web.Request) -> web.StreamResponse:
    await _authorised(request)
    source_id = request.match_info["id"]
    await asyncio.to_thread(request.app[CTX].store.enable_source, source_id,
                            datetime.now(timezone.utc))
    log.info("dashboard: source %s enabled again", source_id)
    raise web.HTTPSeeOther(f"/sources/{source_id}")


async def enable_endpoint(request: web.Request) -> web.StreamResponse:
    await _authorised(request)
    subscriber = request.match_info["subscriber"]
    count = await asyncio.to_thread(request.app[CTX].store.enable_endpoint, subscriber,
                                    datetime.now(timezone.utc))
    log.info("dashboard: endpoint of %s enabled again, %d delivery(ies) queued", subscriber,
             count)
    raise web.HTTPSeeOther(f"/alerts?subscriber={subscriber}")
