"""Pure parsing: fetched bytes + content type -> articles. Feeds, JSON Feed and HTML pages.

feedparser reads RSS and Atom; it is handed bytes, never a URL or a path (it would fetch or
open them). JSON Feed is read here because feedparser does not. Article text is reduced to
plain text with one paragraph per line: rules match on words, and output escapes it again.
"""

from __future__ import annotations

import calendar
import codecs
import html
import json
import functools
import logging
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import lxml.html
from bs4 import BeautifulSoup
from lxml import etree

from monitor.errors import ParseError
from monitor.fastfeed import parse_fast
from monitor.models import Article

log = logging.getLogger("monitor.parse")

_TRACKING = re.compile(r"^(utm_.*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_ga|igshid)$", re.I)
_BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
           "blockquote", "tr", "table", "section", "article", "header", "footer", "pre", "figure"}
_DROP = ("script", "style", "noscript", "template", "iframe", "svg")
_NUL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


# A link already in canonical form, as most are: http(s), a lower-case host without port or
# user, no query or fragment, nothing urlsplit would strip or refuse. It is its own canonical
# form (with "/" for an empty path) without being taken apart and put back together.
_PLAIN_URL = re.compile(r"https?://[a-z0-9.-]+(/[^?#\s\x00-\x1f\x7f]*)?")


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is not None:
        return url if plain.group(1) else url + "/"
    return _canonical_parsed(url)


@functools.lru_cache(maxsize=32768)
def _canonical_parsed(url: str) -> str:
    """canonical_url the long way. Remembered: a feed lists the same links fetch after fetch
    (its known items)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not _TRACKING.match(k)]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def clean_text(text: str) -> str:
    """Remove NUL and other control characters (PostgreSQL refuses NUL; nobody reads them)."""
    return _NUL.sub("", text)


_HIDDEN_NAMES = ("script", "style", "noscript", "template", "iframe", "svg", "head")
_HIDDEN_OPEN = re.compile(r"<(%s)\b|<!--" % "|".join(_HIDDEN_NAMES), re.I)
_HIDDEN_CLOSE = {name: re.compile(r"</%s\s*>" % name, re.I) for name in _HIDDEN_NAMES}
_COMMENT_CLOSE = re.compile("-->")
# `[^<>]*`, not `[^>]*`: a tag never spans another "<", and the scan of each candidate stops
# at the next one, so a page of a million unclosed "<p" costs linear, not quadratic, time.
_BLOCK_TAG = re.compile(r"</?(?:%s)\b[^<>]*>" % "|".join(sorted(_BLOCKS)), re.I)
_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")


def _strip_hidden(fragment: str) -> str:
    """Drop comments and invisible elements, in one forward pass.

    Each opening is followed by one search for its own closing tag; an element that is never
    closed hides the rest of the fragment (as a browser would), so no text is scanned twice.
    """
    out: list[str] = []
    pos = 0
    while (opening := _HIDDEN_OPEN.search(fragment, pos)) is not None:
        out += [fragment[pos:opening.start()], " "]
        name = opening.group(1)
        closer = _COMMENT_CLOSE if name is None else _HIDDEN_CLOSE[name.lower()]
        closing = closer.search(fragment, opening.end())
        if closing is None:
            return "".join(out)
        pos = closing.end()
    out.append(fragment[pos:])
    return "".join(out)


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment (a feed's title or description), one block per line.

    Feed markup is small and simple; removing hidden elements and tags with expressions is an
    order of magnitude faster than building a tree, and the text is escaped again on output.
    Every step is linear in the size of the fragment, whatever it holds.
    """
    if "<" not in fragment and "&" not in fragment:
        return clean_text(" ".join(fragment.split()))
    text = _strip_hidden(fragment)
    text = _BLOCK_TAG.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return clean_text("\n".join(line for line in lines if line))


def sniff(body: bytes, content_type: str) -> str:
    """What the bytes are: 'json', 'feed' or 'html' (by content first, header second)."""
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"{") or "json" in content_type:
        return "json"
    if re.search(rb"<(rss|feed|rdf:rdf|channel)[\s>]", head) or head.startswith(b"<?xml"):
        return "feed"
    if head.startswith((b"<!doctype html", b"<html")) or "html" in content_type:
        return "html"
    return "feed"


def parse_feed(body: bytes, kind: str, content_type: str, base_url: str,
               now: datetime) -> list[Article]:
    """Articles of a feed of `kind` (auto | rss | atom | json). Raises ParseError."""
    if not body.strip():
        raise ParseError("empty response (200 with no body)")
    detected = sniff(body, content_type) if kind == "auto" else (
        "json" if kind == "json" else "feed")
    if detected == "json":
        return parse_json_feed(body, base_url, now)
    if detected == "html":
        raise ParseError("got an HTML page, not a feed (a login or error page? for a news "
                         "section page use kind: html with a 'links' selector)")
    fast = parse_fast(body, content_type, base_url, now, html_to_text)
    if fast is not None:
        return fast
    return parse_xml_feed(body, content_type, base_url, now)


def parse_xml_feed(body: bytes, content_type: str, base_url: str, now: datetime) -> list[Article]:
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False,
                              resolve_relative_uris=False)
    entries = parsed.get("entries") or []
    if not entries and parsed.get("bozo") and not parsed.get("feed"):
        raise ParseError(f"not a readable feed: {parsed.get('bozo_exception')}")
    articles = [_from_entry(entry, base_url, now) for entry in entries]
    return [a for a in articles if a is not None]


def joined(base: str, link: str) -> str | None:
    """`link` made absolute against `base`; None (logged) when it is not a URL at all."""
    if not link:
        return ""
    try:
        return urljoin(base, link)
    except ValueError as exc:              # "http://[oops/2": a broken IPv6 host
        log.warning("item skipped: its link %r is not a URL (%s)", link[:200], exc)
        return None


def _from_entry(entry: Any, base_url: str, now: datetime) -> Article | None:
    link = entry.get("link") or ""
    if not link:
        link = next((each.get("href", "") for each in entry.get("links", [])
                     if each.get("href")), "")
    url = joined(base_url, link)
    if url is None:
        return None
    title = html_to_text(entry.get("title", "") or "")
    summary = html_to_text(entry.get("summary", "") or "")
    contents = [c.get("value", "") for c in entry.get("content", []) or []]
    body = html_to_text("\n".join(contents)) if contents else ""
    if body == summary:
        body = ""
    guid = (entry.get("id") or "").strip() or None
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    published = _struct_time(when, now)
    article = Article(url=url, title=title, summary=summary, body=body,
                      guid=clean_text(guid) if guid else None, published=published,
                      author=clean_text(entry.get("author", "") or ""))
    return None if article.is_empty else article


def _struct_time(value: Any, now: datetime) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    except (OverflowError, ValueError, TypeError):
        return None
    return min(stamp, now)


def parse_json_feed(body: bytes, base_url: str, now: datetime) -> list[Article]:
    """JSON Feed 1.0 / 1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ParseError("JSON without an 'items' list is not a JSON Feed")
    out = []
    for item in data["items"]:
        if isinstance(item, dict):
            article = _from_json_item(item, base_url, now)
            if article is not None:
                out.append(article)
    return out


def _from_json_item(item: dict[str, Any], base_url: str, now: datetime) -> Article | None:
    url = str(item.get("url") or item.get("external_url") or "")
    guid = str(item["id"]) if item.get("id") is not None else None
    title = html_to_text(str(item.get("title") or ""))
    body = html_to_text(str(item.get("content_html") or "")) or clean_text(
        str(item.get("content_text") or ""))
    summary = clean_text(str(item.get("summary") or ""))
    absolute = joined(base_url, url)
    if not (url or guid) or absolute is None:
        return None
    return Article(url=absolute, title=title, summary=summary,
                   body=body, guid=guid, published=_iso_time(item.get("date_published"), now))


def _iso_time(value: Any, now: datetime) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return min(stamp.astimezone(timezone.utc), now)


def parse_listing(body: bytes, base_url: str, links: str, title: str | None,
                  item: str | None, content_type: str = "") -> list[Article]:
    """A news site's section page: each element matched by `links` is one article."""
    soup = BeautifulSoup(decode_html(body, content_type), "lxml")
    blocks = soup.select(item) if item else [soup]
    out: dict[str, Article] = {}
    for block in blocks:
        for anchor in block.select(links):
            href = anchor.get("href")
            if not isinstance(href, str) or href.startswith(("#", "javascript:", "mailto:")):
                continue
            url = joined(base_url, href)
            if not url:
                continue
            label = block.select_one(title) if title and item else None
            text = " ".join((label or anchor).get_text(" ").split())
            if url not in out and text:
                out[url] = Article(url=url, title=clean_text(text), guid=url)
    return list(out.values())


# Labels pages declare, read the way browsers read them (WHATWG Encoding): a page that says
# ISO-8859-1 or GB2312 is really written in the larger code page that extends it.
_SUPERSETS = {"iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252",
              "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
              "iso-8859-9": "cp1254", "gb2312": "gb18030", "gbk": "gb18030",
              "x-gbk": "gb18030", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
              "x-sjis": "cp932", "windows-31j": "cp932", "euc-kr": "cp949", "tis-620": "cp874",
              "x-mac-roman": "mac_roman"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([\w:.-]{1,40})""", re.I)


def _codec(label: str) -> str | None:
    """A Python codec for a declared charset label, or None when there is no such charset."""
    name = _SUPERSETS.get(label.strip().strip("\"'").lower(), label.strip().strip("\"'"))
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def page_encoding(body: bytes, content_type: str = "") -> str:
    """How to decode an HTML page: byte-order mark, HTTP charset, <meta> charset, detection.

    The BOM comes first, as in browsers: a file saved with one is that encoding whatever a
    misconfigured server says.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    declared = re.search(r"charset\s*=\s*([^;\s]+)", content_type, re.I)
    if declared and (codec := _codec(declared.group(1))):
        return codec
    meta = _META_CHARSET.search(body[:4096])
    if meta and (codec := _codec(meta.group(1).decode("ascii", "replace"))):
        # A page declaring UTF-16 in ASCII <meta> cannot be UTF-16; browsers read UTF-8.
        return "utf-8" if codec.startswith("utf-16") else codec
    return _detected(body)


def _detected(body: bytes) -> str:
    try:
        body[:200_000].decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes
    best = from_bytes(body[:200_000]).best()
    return (best.encoding if best is not None else None) or "utf-8"


def decode_html(body: bytes, content_type: str = "") -> str:
    return body.decode(page_encoding(body, content_type), errors="replace")


def main_text(body: bytes, content_type: str = "") -> str:
    """The main text of an article page, navigation, scripts and ads left out.

    trafilatura does this best on real news pages (see README); when it finds nothing, the
    paragraphs of the densest content block are the fallback. The page is decoded first by
    its declared or detected charset (many Arabic sites still serve windows-1256).
    """
    import trafilatura   # imported here: it is slow to import and only full_text needs it
    page = decode_html(body, content_type)
    try:
        text = trafilatura.extract(page, include_comments=False, include_tables=False,
                                   favor_precision=False)
    except Exception:  # a page that breaks the extractor still has paragraphs to fall back on
        text = None
    return clean_text(text) if text else densest_block(page)


def densest_block(page: str | bytes) -> str:
    """Paragraphs of the block holding the most paragraph text."""
    if isinstance(page, bytes):
        page = decode_html(page)
    try:
        root = lxml.html.document_fromstring(page)
    except (etree.ParserError, ValueError):
        return ""
    for bad in list(root.iter(*_DROP, "nav", "aside", "form", "footer", "header")):
        bad.drop_tree()
    scores: dict[Any, int] = {}
    for paragraph in root.iter("p"):
        text = paragraph.text_content().strip()
        if len(text) >= 40 and paragraph.getparent() is not None:
            parent = paragraph.getparent()
            scores[parent] = scores.get(parent, 0) + len(text)
    if not scores:
        return ""
    best = max(scores, key=lambda element: scores[element])
    paragraphs = [" ".join(p.text_content().split()) for p in best.iter("p")]
    return clean_text("\n".join(p for p in paragraphs if p))
