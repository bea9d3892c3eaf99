"""HTTP in and out: bytes + headers, bounded in time and size, nothing parsed here.

One busy httpx.AsyncClient on its own connection pool collapses under many concurrent requests
(httpx issue #3215) and spends about 2 ms of CPU per request here; the client therefore runs
on an aiohttp transport (one long-lived client, connections reused). A global and a per-host
semaphore keep 1,000 sources on 50 hosts from hammering any one of them. httpx has no overall
deadline and no cap on decoded
size; both are added here (a trickling server and a gzip bomb stop at the bound).
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

from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

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


def make_client(settings: FetchSettings, allow_private: bool,
                connections: int | None = None) -> httpx.AsyncClient:
    """An AsyncClient whose every connection goes through the network policy.

    Call it inside the running event loop: the aiohttp session is created here, once (a
    lazily created one would be created by each of the first concurrent requests).
    """
    limit = connections or settings.concurrency
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=settings.per_host,
                                     ssl=ssl.create_default_context(),
                                     resolver=GuardedResolver(allow_private),
                                     keepalive_timeout=30, ttl_dns_cache=60)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                    trust_env=False)

    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout,
                            pool=settings.deadline)
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

    The HTTP client comes from the caller: `make_client` (every connection through the
    network policy) in the product, an httpx.MockTransport client where a test needs no
    server. `Fetcher.guarded(...)` makes one that owns a policy client and closes it.
    """

    settings: FetchSettings
    client: httpx.AsyncClient
    owns_client: bool = False
    _hosts: defaultdict[str, asyncio.Semaphore] = field(init=False)
    _all: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._hosts = defaultdict(lambda: asyncio.Semaphore(self.settings.per_host))
        self._all = asyncio.Semaphore(self.settings.concurrency)

    @classmethod
    def guarded(cls, settings: FetchSettings, allow_private: bool) -> Fetcher:
        """A fetcher with its own client under the network policy (call inside the loop)."""
        return cls(settings, make_client(settings, allow_private), owns_client=True)

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()

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
                async with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        return None, response.headers["location"]
                    _raise_for_status(response)
                    body = await self._read_capped(response)
            except BlockedAddressError:
                raise
            except httpx.TimeoutException as exc:
                raise FetchError(f"timed out ({type(exc).__name__})") from None
            except httpx.DecodingError as exc:
                raise FetchError(f"cannot decode the response body: {exc}") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from None
        return FetchResult(url=str(response.url), status=response.status_code, body=body,
                           content_type=response.headers.get("content-type", ""),
                           etag=response.headers.get("etag"),
                           last_modified=response.headers.get("last-modified"),
                           not_modified=response.status_code == 304), None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The body, decoded here in bounded steps: httpx would inflate each received chunk
        whole (through every layer of a stacked coding) before anything could count it."""
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length", "")
        decoder = BoundedDecoder(response.headers.get("content-encoding", ""), limit)
        if declared.isdigit() and int(declared) > limit and not decoder.encoded:
            raise FetchError(f"response of {int(declared):,} bytes exceeds the {limit:,}-byte cap")
        async for chunk in response.aiter_raw():
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


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 304 or 200 <= status < 300:
        return
    if status == 410:
        raise FetchError("410 Gone: the source says it is gone for good", status, gone=True)
    if status in (429, 503):
        wait = retry_after_seconds(response.headers.get("retry-after"),
                                   datetime.now(timezone.utc))
        raise FetchError(f"HTTP {status} {response.reason_phrase}" +
                         (f", Retry-After {wait:g} s" if wait is not None else ""),
                         status, retry_after=wait)
    raise FetchError(f"HTTP {status} {response.reason_phrase}", status)
