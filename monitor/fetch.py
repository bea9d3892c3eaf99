"""HTTP in and out: bytes + headers, bounded in time and size, nothing parsed here.

One busy httpx.AsyncClient on its own connection pool collapses under many concurrent requests
(httpx issue #3215) and spends about 2 ms of CPU per request here; feeds and pages are
therefore fetched on one long-lived aiohttp session (connections reused), and senders get an
httpx client on such a session. A global and a per-host semaphore keep 1,000 sources on 50
hosts from hammering any one of them. Neither client has an overall deadline or a cap on
decoded size; both are added here (a trickling server and a gzip bomb stop at the bound).
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

from typing import Any, AsyncIterator, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from monitor.config import FetchSettings
from monitor.errors import BlockedAddressError, FetchError
from monitor.models import FetchResult
from monitor.netpolicy import GuardedResolver, check_literal

RETRY_AFTER_CAP = 6 * 3600.0
_REDIRECTS = {301, 302, 303, 307, 308}


class _GuardedTransport(AiohttpTransport):
    """httpx on aiohttp (far less CPU per request than httpcore), behind the network policy."""

    def __init__(self, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        check_literal(request.url.host, self.allow_private)
        return await super().handle_async_request(request)


def make_session(settings: FetchSettings, allow_private: bool,
                 connections: int | None = None) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection goes through the network policy's resolver.

    Call it inside the running event loop: the session is created here, once (a lazily
    created one would be created by each of the first concurrent requests).
    """
    limit = connections or settings.concurrency
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=settings.per_host,
                                     ssl=ssl.create_default_context(),
                                     resolver=GuardedResolver(allow_private),
                                     keepalive_timeout=30, ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)


def make_client(settings: FetchSettings, allow_private: bool,
                connections: int | None = None) -> httpx.AsyncClient:
    """An httpx AsyncClient on such a session (webhooks and other senders use it)."""
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout,
                            pool=settings.deadline)
    session = make_session(settings, allow_private, connections)
    return httpx.AsyncClient(transport=_GuardedTransport(allow_private, client=session),
                             timeout=timeout, follow_redirects=False,
                             headers={"User-Agent": settings.user_agent})


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds (it may be seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - now).total_seconds(), RETRY_AFTER_CAP))


@dataclass
class Fetcher:
    """Fetches URLs politely: global and per-host limits, hard bounds, conditional GETs.

    In the product, `Fetcher.guarded(...)` sends straight through its own aiohttp session
    (every connection under the network policy): httpx's request and response objects on
    top of aiohttp cost as much CPU again as aiohttp itself, and at a hundred concurrent
    requests that CPU is the limit. Given an httpx client instead (an httpx.MockTransport
    one where a test needs no server, or any caller's own), it sends through that client.
    Either way the same limits, bounds, redirects and errors apply.
    """

    settings: FetchSettings
    client: httpx.AsyncClient | None = None
    owns_client: bool = False
    session: aiohttp.ClientSession | None = None
    allow_private: bool = False
    _hosts: defaultdict[str, asyncio.Semaphore] = field(init=False)
    _all: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        if (self.client is None) == (self.session is None):
            raise ValueError("a Fetcher sends through an httpx client or an aiohttp session")
        self._hosts = defaultdict(lambda: asyncio.Semaphore(self.settings.per_host))
        self._all = asyncio.Semaphore(self.settings.concurrency)
        self._timeout = aiohttp.ClientTimeout(sock_connect=self.settings.connect_timeout,
                                              sock_read=self.settings.read_timeout,
                                              connect=self.settings.deadline)

    @classmethod
    def guarded(cls, settings: FetchSettings, allow_private: bool) -> Fetcher:
        """A fetcher with its own session under the network policy (call inside the loop)."""
        return cls(settings, session=make_session(settings, allow_private), owns_client=True,
                   allow_private=allow_private)

    async def close(self) -> None:
        if not self.owns_client:
            return
        if self.client is not None:
            await self.client.aclose()
        if self.session is not None:
            await self.session.close()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, url: str, etag: str | None = None,
                  last_modified: str | None = None) -> FetchResult:
        """GET with conditional headers, following at most max_redirects redirects."""
        headers = {"Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
                             "application/xml;q=0.9, text/html;q=0.8, */*;q=0.5",
                   "Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(self.settings.deadline):
                return await self._follow(url, headers)
        except (httpx.InvalidURL, ValueError) as exc:   # "http://0177.0.0.1/", "http://[oops"
            raise FetchError(f"unusable URL {url[:200]!r}: {exc}") from None
        except TimeoutError:
            raise FetchError(f"no complete answer within {self.settings.deadline:g} s "
                             f"(overall deadline)") from None

    async def _follow(self, url: str, headers: dict[str, str]) -> FetchResult:
        seen: list[str] = []
        for _ in range(self.settings.max_redirects + 1):
            _check_scheme(url)
            seen.append(url)
            result, location = await self._one(url, headers)
            if location is None:
                assert result is not None
                return result
            url = urljoin(url, location)
            if url in seen:
                raise FetchError(f"redirect loop at {url}")
        raise FetchError(f"more than {self.settings.max_redirects} redirects")

    async def _one(self, url: str, headers: dict[str, str]
                   ) -> tuple[FetchResult | None, str | None]:
        host = urlsplit(url).hostname or ""
        async with self._all, self._hosts[host]:
            try:
                if self.session is not None:
                    return await self._direct(self.session, url, host, headers)
                return await self._through_httpx(url, headers)
            except BlockedAddressError:
                raise
            except httpx.TimeoutException as exc:
                raise FetchError(f"timed out ({type(exc).__name__})") from None
            except httpx.DecodingError as exc:
                raise FetchError(f"cannot decode the response body: {exc}") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def _direct(self, session: aiohttp.ClientSession, url: str, host: str,
                      headers: dict[str, str]) -> tuple[FetchResult | None, str | None]:
        """One GET on the aiohttp session. Its errors are named as httpx names them (the
        mapping httpx-aiohttp uses), so both paths report a failure in the same words."""
        check_literal(host, self.allow_private)
        with map_aiohttp_exceptions():
            async with session.get(url, headers={"User-Agent": self.settings.user_agent,
                                                 **headers},
                                   allow_redirects=False, timeout=self._timeout) as response:
                return await self._answer(str(response.url), response.status,
                                          response.reason or "", response.headers,
                                          response.content.iter_chunked(64 * 1024))

    async def _through_httpx(self, url: str, headers: dict[str, str]
                             ) -> tuple[FetchResult | None, str | None]:
        assert self.client is not None
        async with self.client.stream("GET", url, headers=headers) as response:
            return await self._answer(str(response.url), response.status_code,
                                      response.reason_phrase, response.headers,
                                      response.aiter_raw())

    async def _answer(self, url: str, status: int, reason: str, headers: Mapping[str, str],
                      raw: AsyncIterator[bytes]) -> tuple[FetchResult | None, str | None]:
        """(the result, None), or (None, where a redirect points): either client's answer."""
        if status in _REDIRECTS and "location" in headers:
            return None, headers["location"]
        _raise_for_status(status, reason, headers)
        body = await self._read_capped(headers, raw)
        return FetchResult(url=url, status=status, body=body,
                           content_type=headers.get("content-type", ""),
                           etag=headers.get("etag"), last_modified=headers.get("last-modified"),
                           not_modified=status == 304), None

    async def _read_capped(self, headers: Mapping[str, str], raw: AsyncIterator[bytes]
                           ) -> bytes:
        """The body, decoded here in bounded steps: a client would inflate each received
        chunk whole (through every layer of a stacked coding) before anything could count it."""
        limit = self.settings.max_bytes
        declared = headers.get("content-length", "")
        decoder = BoundedDecoder(headers.get("content-encoding", ""), limit)
        if declared.isdigit() and int(declared) > limit and not decoder.encoded:
            raise FetchError(f"response of {int(declared):,} bytes exceeds the {limit:,}-byte cap")
        async for chunk in raw:
            decoder.feed(chunk)
        return decoder.finish()



class BoundedDecoder:
    """One content coding (gzip, deflate or identity) inflated at most `limit` bytes at a time.

    Stacked codings ("gzip, gzip") are refused: no real server needs them, and each layer
    multiplies what a few kilobytes can expand to.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")
                   if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1:
            raise FetchError(f"refused: stacked content codings ({content_encoding}); one "
                             f"coding at most is accepted")
        coding = codings[0] if codings else ""
        if coding not in _CODINGS:
            raise FetchError(f"unsupported content coding '{coding}'")
        self.encoded = bool(coding)
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._inflate = zlib.decompressobj(_CODINGS[coding]) if coding else None
        self._raw_deflate = coding == "deflate"

    def feed(self, data: bytes) -> None:
        if self._inflate is None:
            self._keep(data)
            return
        try:
            while data:
                out = self._inflate.decompress(data, 64 * 1024)
                self._keep(out)
                data = self._inflate.unconsumed_tail
                if self._inflate.eof:
                    break
        except zlib.error as exc:
            if self._raw_deflate and self.size == 0:
                # "deflate" is zlib-wrapped by the standard and raw in some servers: retry raw.
                self._inflate, self._raw_deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
                self.feed(data)
                return
            raise FetchError(f"cannot decode the response body: {exc}") from None

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise FetchError(f"response exceeds the {self.limit:,}-byte cap (decoded)")
        if data:
            self.chunks.append(data)

    def finish(self) -> bytes:
        if self._inflate is not None:
            self._keep(self._inflate.flush(64 * 1024))
        return b"".join(self.chunks)


# zlib window settings: 16 + MAX_WBITS reads a gzip header; MAX_WBITS a zlib stream.
_CODINGS = {"": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
            "deflate": zlib.MAX_WBITS}


def _check_scheme(url: str) -> None:
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {url!r}")


def _raise_for_status(status: int, reason: str, headers: Mapping[str, str]) -> None:
    if status == 304 or 200 <= status < 300:
        return
    if status == 410:
        raise FetchError("410 Gone: the source says it is gone for good", status, gone=True)
    if status in (429, 503):
        wait = retry_after_seconds(headers.get("retry-after"), datetime.now(timezone.utc))
        raise FetchError(f"HTTP {status} {reason}" +
                         (f", Retry-After {wait:g} s" if wait is not None else ""),
                         status, retry_after=wait)
    raise FetchError(f"HTTP {status} {reason}", status)
