"""The code's shape where the issues asked for one: channels from a registry, the stages not
importing each other, the fetcher running on whatever HTTP client it is given."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from monitor.config import FetchSettings, SubscriberSpec, load_subscribers
from monitor.errors import FetchError
from monitor.fetch import Fetcher
from monitor.notify import CHANNEL_TYPES, ChannelFields, ChannelType


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_deliver_and_pipeline_do_not_import_each_other() -> None:
    assert "monitor.pipeline" not in imported_modules(ROOT / "monitor" / "deliver.py")
    assert "monitor.context" in imported_modules(ROOT / "monitor" / "deliver.py")


def test_every_channel_comes_from_the_registry() -> None:
    assert set(CHANNEL_TYPES) == {"email", "webhook", "console", "apprise"}
    keys = [key for kind in CHANNEL_TYPES.values() for key in kind.keys]
    assert len(keys) == len(set(keys))
    # The subscriber schema has no channel's keys: they come from the channel modules.
    assert set(SubscriberSpec.model_fields) == {"name", "rules", "digest", "cooldown",
                                                "channel", "settings"}


class PagerFields(ChannelFields):
    pager: str

    def target(self) -> str:
        return f"pager:{self.pager}"


class PagerChannel:
    sent: list[str] = []

    async def send(self, subscriber: SubscriberSpec, alerts: list, delivery_id: str) -> None:
        self.sent.append(delivery_id)


def test_a_new_channel_is_one_module_and_one_registry_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README shows: a fields model, a sender, a ChannelType, one registry entry."""
    kind = ChannelType("pager", PagerFields, ("pager",), lambda context: PagerChannel(),
                       "a pager")
    monkeypatch.setitem(CHANNEL_TYPES, "pager", kind)
    path = tmp_path / "subscribers.yaml"
    path.write_text("- name: on-call\n  pager: '5551234'\n  rules: '*'\n"
                    "- name: typo\n  pager: '1'\n  pagr: x\n")
    subscribers, problems = load_subscribers(path)
    assert [(s.name, s.channel, s.target) for s in subscribers] == \
        [("on-call", "pager", "pager:5551234")]
    assert any("subscribers.yaml:4" in str(p) and "pagr: Extra inputs are not permitted"
               in str(p) for p in problems), problems


class Streamed(httpx.AsyncByteStream):
    """A body that arrives as a stream, as from a network transport (httpx reads a plain
    `content=` body eagerly, and the fetcher reads the raw stream itself)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield self.data


def test_the_fetcher_uses_the_client_it_is_given() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, stream=Streamed(b""))
        if request.url.path == "/big":
            return httpx.Response(200, stream=Streamed(b"x" * 5000))
        return httpx.Response(200, stream=Streamed(b"<rss/>"),
                              headers={"ETag": '"v1"', "Content-Type": "text/xml"})

    async def run() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        fetcher = Fetcher(FetchSettings(max_bytes=1000), client)
        first = await fetcher.get("https://feeds.example.org/a.xml")
        assert first.body == b"<rss/>" and first.etag == '"v1"'
        again = await fetcher.get("https://feeds.example.org/a.xml", etag='"v1"')
        assert again.not_modified
        with pytest.raises(FetchError, match="exceeds the 1,000-byte cap"):
            await fetcher.get("https://feeds.example.org/big")
        await fetcher.close()                  # not its client: left open for its owner
        assert not client.is_closed
        await client.aclose()
    asyncio.run(run())
    assert len(seen) == 3
