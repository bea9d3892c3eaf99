"""The operator's web page: the aiohttp test client on both stores, then a real browser.

The browser tests drive the system's Chromium through Playwright (`executable_path`: no
browser download), against a daemon that is running on a store filled by a real `once` cycle
over loopback feeds. Screenshots of every page go to the test's output directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import Workdir, rss, seed_item
from monitor.config import Settings, SubscriberSpec
from monitor.context import Context, Rules
from monitor.match import Engine
from monitor.models import Article
from monitor.pipeline import article_record
from monitor.records import DeliveryUpdate, NewDelivery
from monitor.rules import load_rules
from monitor.store import open_store
from monitor.web import CSP, build_app
from servers import FeedServer, WebhookReceiver, free_port, wait_for
from test_daemon import Daemon

from conftest import ROOT

XSS = "<img src=x onerror=alert(1)>"
NOW = datetime.now(timezone.utc)


# --- the framework's test client, on SQLite and PostgreSQL -------------------------------------

def context(database_url: str, token_env: str | None = None) -> Context:
    settings = Settings.model_validate({"database": database_url,
                                        "dashboard": {"token_env": token_env}})
    store = open_store(database_url)
    ruleset, _, _ = load_rules(ROOT / "rules")
    from monitor.config import SourceSpec
    specs = [SourceSpec(id="wire", url="https://news.example.org/feed.xml"),
             SourceSpec(id="broken", url="https://down.example.org/feed.xml")]
    store.sync_sources(specs, NOW)
    subscribers = [SubscriberSpec.model_validate({"name": "desk", "webhook":
                                                  "https://hooks.example.org/x"})]
    ctx = Context(settings=settings, store=store, fetcher=None,  # type: ignore[arg-type]
                  rules=Rules(Engine(ruleset, semantic=False)), sources={s.id: s for s in specs},
                  subscribers=subscribers, channels={})
    fill(ctx)
    return ctx


def fill(ctx: Context) -> None:
    """One matched article with a dead delivery, one failing source, their history."""
    store = ctx.store
    article = Article(url="https://news.example.org/a", title=f"Truce talks {XSS}",
                      body="Hamas accepted the truce proposal.", published=NOW)
    found = ctx.rules.engine.match(article)[0]
    from monitor import deliver
    from monitor.prepare import matched
    from monitor.notify.render import alert_dict
    with store.session() as session:
        record = article_record("wire", article, NOW, None)
        article_id = store.insert_articles(session, [record])[(record.guid, record.canonical_url)]
        store.insert_matches(session, [{"article_id": article_id, "rule_id": found.rule_id,
                                        "explanation": "{}", "created_at": NOW}])
        alert = deliver.make_alert("msg_dead", matched(found), article, "wire", "desk", NOW)
        import json
        store.queue_delivery(session, NewDelivery(
            id="msg_dead", rule_id=found.rule_id, story_id=article_id, article_id=article_id,
            subscriber="desk", channel="webhook", target="https://hooks.example.org/x",
            next_attempt=NOW, created_at=NOW, payload=json.dumps(alert_dict(alert))))
        store.log_fetch(session, "wire", NOW, True, 200, 1, 1)
        store.log_fetch(session, "broken", NOW, False, 503, error="HTTP 503 Service Unavailable")
    store.finish_delivery("msg_dead", DeliveryUpdate(status="dead", attempts=3,
                                                     last_error="HTTP 500"), NOW)
    with store.session() as session:
        from monitor.records import FetchState
        store.record_fetch(session, "broken", FetchState(
            last_attempt=NOW, consecutive_failures=4, last_error="HTTP 503 Service Unavailable",
            http_status=503))
        store.record_fetch(session, "wire", FetchState(
            last_attempt=NOW, last_success=NOW, consecutive_failures=0, last_error=None,
            http_status=200, items_seen=1, articles_total=1))


def serve(ctx: Context, test: Any) -> None:
    async def run() -> None:
        async with TestClient(TestServer(build_app(ctx))) as client:
            await test(client)
    asyncio.run(run())


@pytest.mark.store
def test_every_page_answers_and_escapes(database_url: str) -> None:
    ctx = context(database_url)

    async def test(client: TestClient) -> None:
        for path in ("/", "/sources", "/sources/wire", "/sources/broken", "/alerts",
                     "/alerts/msg_dead", "/rules", "/sources?state=failing&sort=failures&desc=1",
                     "/alerts?status=dead&rule=gaza-ceasefire", "/healthz", "/static/style.css"):
            response = await client.get(path)
            assert response.status == 200, path
            assert response.headers["Content-Security-Policy"] == CSP
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            body = await response.text()
            assert XSS not in body, path                       # never raw
            assert "<script" not in body
        overview = await (await client.get("/")).text()
        assert re.search(r'<span class="big">1</span> failing', overview)
        assert re.search(r'<span class="big">1</span> dead', overview)
        alert = await (await client.get("/alerts/msg_dead")).text()
        assert "Truce talks &lt;img src=x onerror=alert(1)&gt;" in alert
        assert "<mark>Hamas</mark>" in alert and "<mark>truce</mark>" in alert
        assert "HTTP 500" in alert                             # the attempt and its error
        broken = await (await client.get("/sources/broken")).text()
        assert "HTTP 503 Service Unavailable" in broken and "failed" in broken
        rules = await (await client.get("/rules")).text()
        assert "gaza-ceasefire" in rules and "gaza.yaml:" in rules and "<svg" in rules
        assert (await client.get("/sources/nope")).status == 404
        # Read-only: no actions, and a forged POST is refused.
        assert "Retry this delivery" not in alert and "Log in" not in alert
        assert (await client.post("/alerts/msg_dead/retry", data={"csrf": "x"})).status == 403
        assert (await client.post("/login", data={"token": "guess"})).status == 403
    serve(ctx, test)
    assert ctx.store.deliveries(["dead"])[0].id == "msg_dead"


@pytest.mark.store
def test_actions_need_the_token_and_a_csrf_token(database_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASH_TOKEN", "correct horse battery staple")
    ctx = context(database_url, token_env="DASH_TOKEN")

    async def test(client: TestClient) -> None:
        page = await (await client.get("/alerts/msg_dead")).text()
        assert "Retry this delivery" not in page and 'href="/login"' in page
        assert (await client.post("/login", data={"token": "wrong"})).status == 403
        login = await client.post("/login", data={"token": "correct horse battery staple"},
                                  allow_redirects=False)
        assert login.status == 303
        cookie = login.cookies["news_monitor_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        page = await (await client.get("/alerts/msg_dead")).text()
        assert "Retry this delivery" in page
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore
        assert (await client.post("/alerts/msg_dead/retry", data={"csrf": "0" * 64})
                ).status == 403
        done = await client.post("/alerts/msg_dead/retry", data={"csrf": csrf})
        assert done.status == 200 and "pending" in await done.text()
        enable = await client.post("/sources/broken/enable", data={"csrf": csrf})
        assert enable.status == 200
    serve(ctx, test)
    assert ctx.store.deliveries(["pending"])[0].id == "msg_dead"
    broken = ctx.store.source("broken")
    assert broken is not None and broken.consecutive_failures == 0


# --- a real browser against a running daemon ---------------------------------------------------

def chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser",
                 "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


BROWSER = chromium()
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine (apt-get install chromium; .ci/run "
                            "installs it)")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    """A daemon with the dashboard on, over a store a real `once` cycle filled."""
    base = tmp_path_factory.mktemp("dashboard")
    feeds, hook, broken_hook = FeedServer(), WebhookReceiver(), WebhookReceiver()
    broken_hook.script = [(500, {})] * 50
    workdir = Workdir(base)
    feeds.put("/wire.xml", rss([seed_item(), {
        # Entity-escaped in the feed's title: the parsed title is the text "<img ...>".
        "title": f"Hamas and Israel agree a Gaza truce {XSS.replace('<', '&lt;')}",
        "link": "https://news.example.org/gaza/xss",
        "body": f"<p>Hamas said the truce {XSS.replace('<', '&lt;')} would hold.</p>"}]))
    workdir.sources = [{"id": "wire", "url": feeds.base + "/wire.xml"},
                       {"id": "gone-feed", "url": feeds.base + "/missing.xml"}]
    workdir.subscribers = [{"name": "desk", "webhook": hook.base + "/hook"},
                           {"name": "flaky", "webhook": broken_hook.base + "/hook"}]
    workdir.config["delivery"] = {"retry": ["0s"], "timeout": 5}
    for _ in range(2):                      # the second cycle makes flaky's deliveries dead
        result = workdir.cli("once")
        assert result.returncode == 0, result.stderr
    port = free_port()
    workdir.config.update({"http_port": port, "tick": "1h", "dashboard":
                           {"token_env": "DASH_TOKEN"}})
    os.environ["DASH_TOKEN"] = "dashboard-test-token"
    daemon = Daemon(workdir)
    try:
        wait_for(lambda: "operator endpoint" in daemon.text(), timeout=30)
        yield f"http://127.0.0.1:{port}", base, daemon
    finally:
        daemon.stop()
        os.environ.pop("DASH_TOKEN", None)
        for server in (feeds, hook, broken_hook):
            server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        yield launched
        launched.close()


def shots_dir(base: Path) -> Path:
    """The test's output directory (and NEWS_MONITOR_SCREENSHOTS, for the README's picture)."""
    directory = base / "screenshots"
    directory.mkdir(exist_ok=True)
    return directory


def save(page: Any, base: Path, name: str) -> None:
    path = shots_dir(base) / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if extra := os.environ.get("NEWS_MONITOR_SCREENSHOTS"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


@needs_browser
def test_every_page_in_a_browser_with_screenshots(running: tuple[str, Path, Any],
                                                  browser: Any) -> None:
    url, base, daemon = running
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    for name, path in (("overview", "/"), ("sources", "/sources"), ("source", "/sources/wire"),
                       ("alerts", "/alerts"), ("rules", "/rules"), ("login", "/login")):
        response = page.goto(url + path)
        assert response.status == 200, path
        assert page.locator("header nav").is_visible()
        save(page, base, name)
    page.goto(url + "/")
    assert page.locator(".card", has_text="failing").locator(".big").inner_text() == "1"
    assert page.locator("svg.chart rect").count() > 0          # the hourly chart has bars

    # Click through to an alert's explanation.
    page.goto(url + "/alerts?subscriber=desk")
    page.locator("article.alert a.id").first.click()
    page.wait_for_url(re.compile(r".*/alerts/msg_\w+$"))
    assert page.locator("h2", has_text="Explanation").is_visible()
    assert page.locator("article.alert mark").count() >= 2
    save(page, base, "alert")

    # The hostile title is text, not an element; nothing ran.
    page.goto(url + "/alerts")
    assert page.get_by_text(XSS, exact=False).count() >= 1
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == [] and errors == []
    assert "Traceback" not in daemon.text()


@needs_browser
def test_retry_is_absent_without_the_token_and_works_with_it(running: tuple[str, Path, Any],
                                                             browser: Any) -> None:
    url, base, _ = running
    page = browser.new_page()
    page.goto(url + "/alerts?status=dead")
    dead = page.locator("article.alert a.id").first
    delivery = dead.inner_text()
    dead.click()
    assert page.locator("button", has_text="Retry this delivery").count() == 0
    page.goto(url + "/login")
    page.fill("input[name=token]", "not the token")
    page.click("button[type=submit]")
    assert page.get_by_text("That is not the token").is_visible()
    page.fill("input[name=token]", "dashboard-test-token")
    page.click("button[type=submit]")
    page.goto(f"{url}/alerts/{delivery}")
    page.click("button:has-text('Retry this delivery')")
    page.wait_for_url(f"{url}/alerts/{delivery}")
    assert page.locator("h1 .state").inner_text() == "pending"
    save(page, base, "retried")
