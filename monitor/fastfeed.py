"""A fast path for clean RSS 2.0 and Atom 1.0 feeds, with feedparser as the fallback.

feedparser is thorough and slow (about 1 ms per item with its defaults). Most feeds are clean
RSS 2.0 or Atom 1.0; lxml reads those an order of magnitude faster. Anything unusual (a
DOCTYPE, RSS 1.0/0.9x with namespaces we do not map, a charset conflict, a parse error) makes
`parse_fast` return None, and the caller hands the bytes to feedparser. lxml is configured to
load no DTD, resolve no entity and touch no network.
"""

from __future__ import annotations

import email.utils
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

from feedparser.datetimes import _parse_date
from lxml import etree

from monitor.models import Article

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC_DATE = "{http://purl.org/dc/elements/1.1/}date"
DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"

# Children the fast path understands. Any other child sends the whole feed to feedparser,
# which knows the many variants (xhtml:body, dc:description, ...) an item can hide text in.
_RSS_KNOWN = {"title", "link", "guid", "description", "pubDate", "author", "category",
              "comments", "enclosure", "source", CONTENT, DC_CREATOR, DC_DATE,
              "{http://purl.org/dc/elements/1.1/}subject"}
_ATOM_KNOWN = {f"{ATOM}{name}" for name in ("title", "link", "id", "updated", "published",
                                            "summary", "content", "author", "contributor",
                                            "category", "rights")}
# Namespaces whose elements feedparser never turns into a title, link or text.
_HARMLESS = ("{http://search.yahoo.com/mrss/}", "{http://purl.org/rss/1.0/modules/slash/}",
             "{http://wellformedweb.org/CommentAPI/}", "{http://www.w3.org/2005/Atom}link")


class _Unusual(Exception):
    """The feed uses something the fast path does not map; feedparser will read it."""


# Media RSS elements that feedparser does use as a fallback title or text.
_MEDIA_TEXT = {"{http://search.yahoo.com/mrss/}title", "{http://search.yahoo.com/mrss/}description",
               "{http://search.yahoo.com/mrss/}text", "{http://search.yahoo.com/mrss/}group"}


def _check(tag: Any, known: set[str]) -> None:
    if isinstance(tag, str) and tag not in known and (
            not tag.startswith(_HARMLESS) or tag in _MEDIA_TEXT):
        raise _Unusual(tag)


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, recover=False, remove_comments=True, remove_pis=True)


def parse_fast(body: bytes, content_type: str, base_url: str, now: datetime,
               text_of: Any) -> list[Article] | None:
    """Articles of a clean RSS 2.0 / Atom 1.0 feed, or None to ask feedparser instead."""
    head = body[:1024]
    if b"<!DOCTYPE" in head or b"<!doctype" in head or b"<!ENTITY" in body:
        return None
    if "charset=" in content_type and not _charset_agrees(content_type, head):
        return None
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    try:
        if root.tag == "rss" and b"xml:base" not in body and \
                root.get("version", "2.0") in ("2.0", "2.0.1", "0.91", "0.92"):
            channel = root.find("channel")
            if channel is None:
                return None
            items = [_rss_item(item, base_url, now, text_of)
                     for item in channel.iterchildren("item")]
        elif root.tag == f"{ATOM}feed":
            items = [_atom_entry(entry, base_url, now, text_of)
                     for entry in root.iterchildren(f"{ATOM}entry")]
        else:
            return None
    except _Unusual:
        return None
    return [item for item in items if item is not None]


def _charset_agrees(content_type: str, head: bytes) -> bool:
    declared = content_type.split("charset=", 1)[1].split(";")[0].strip().strip('"').lower()
    marker = head.lower()
    if b"encoding=" in marker:
        return declared.encode() in marker
    return declared in ("utf-8", "utf8")


def _absolute(link: str, base: str) -> str:
    if not link:
        return ""
    try:
        if "[" in link:               # the one shape urlsplit refuses: a broken IPv6 host
            urlsplit(link)
        return link if link.startswith(("http://", "https://")) else urljoin(base, link)
    except ValueError:
        raise _Unusual(f"malformed URL {link!r}") from None


def _rss_item(item: Any, base_url: str, now: datetime, text_of: Any) -> Article | None:
    # One pass over the children: lxml's find() walks a path expression per call.
    fields: dict[str, str] = {}
    permalink = True
    for child in item:
        tag = child.tag
        _check(tag, _RSS_KNOWN)
        if len(child):
            raise _Unusual(f"markup inside <{tag}>")   # feedparser lifts nested elements
        if isinstance(tag, str) and tag not in fields:
            fields[tag] = child.text or ""
            if tag == "guid":
                permalink = child.get("isPermaLink", "true") != "false"
    if not any(fields.get(k) for k in ("link", "guid", "title", "description", CONTENT)):
        return None                 # an item with only an author, say, is not news
    link = fields.get("link", "").strip()
    guid = fields.get("guid", "").strip() or None
    if not link and guid and permalink and guid.startswith(("http://", "https://")):
        link = guid
    if not link and ("enclosure" in fields or "comments" in fields):
        raise _Unusual("no link")      # feedparser falls back on other elements' URLs
    summary, body = _summary_and_body(fields.get("description"), fields.get(CONTENT, ""),
                                      text_of)
    return _article(url=_absolute(link, base_url), title=text_of(fields.get("title", "")),
                    summary=summary, body=body, guid=guid,
                    published=_date(fields.get("pubDate") or fields.get(DC_DATE), now),
                    author=(fields.get("author") or fields.get(DC_CREATOR) or "").strip())


def _summary_and_body(summary: str | None, body: str, text_of: Any) -> tuple[str, str]:
    """feedparser's convention, kept on both paths so a rule's `fields` mean the same thing:
    an item with full content and no summary element has that content as its summary."""
    text = text_of(body)
    if summary is None:
        return text, ""
    summary = text_of(summary)
    return summary, "" if text == summary else text


def _article(**values: Any) -> Article | None:
    if any(_C1.search(v) for v in values.values() if isinstance(v, str)):
        raise _Unusual("windows-1252 characters")   # feedparser maps them to their letters
    article = Article(**values)
    return None if article.is_empty else article


_C1 = re.compile("[\x80-\x9f]")


def _atom_entry(entry: Any, base_url: str, now: datetime, text_of: Any) -> Article | None:
    for child in entry:
        _check(child.tag, _ATOM_KNOWN)
        if len(child) and child.tag not in _ATOM_KNOWN:
            raise _Unusual(f"markup inside <{child.tag}>")   # media:content's description...
    if not any((child.text or len(child) or child.get("href") or child.get("src"))
               for child in entry.iterchildren(f"{ATOM}link", f"{ATOM}id", f"{ATOM}title",
                                               f"{ATOM}summary", f"{ATOM}content")):
        return None
    links = list(entry.iterchildren(f"{ATOM}link"))
    alternates = [link.get("href") for link in links
                  if link.get("rel", "alternate") == "alternate"]
    if not alternates or not alternates[0] or len(links) != len(alternates):
        raise _Unusual("no plain alternate link")   # feedparser's link choice is subtle
    summary_element = entry.find(f"{ATOM}summary")
    summary, body = _summary_and_body(
        None if summary_element is None else _atom_text(summary_element),
        _atom_text(entry.find(f"{ATOM}content")), text_of)
    author = entry.find(f"{ATOM}author")
    return _article(url=_absolute(_resolved(links[0]), base_url),
                   title=text_of(_atom_text(entry.find(f"{ATOM}title"))), summary=summary,
                   body=body, guid=_atom_id(entry),
                   published=_date(entry.findtext(f"{ATOM}published") or
                                   entry.findtext(f"{ATOM}updated"), now),
                   author=(author.findtext(f"{ATOM}name") or "").strip()
                   if author is not None else "")


XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"


def _xml_base(element: Any) -> str:
    """The xml:base in force at `element`: each ancestor's resolved against its parent's."""
    chain = [node.get(XML_BASE) for node in reversed(list(element.iterancestors()))]
    chain.append(element.get(XML_BASE))
    base = ""
    for value in chain:
        if value:
            base = urljoin(base, value.strip())
    return base


def _against_base(element: Any, value: str, what: str) -> str:
    """`value` (a link or an id) resolved against the xml:base in force at `element`, as
    feedparser resolves it, so an item keeps its identity whichever path reads the feed."""
    base = _xml_base(element)
    try:
        return urljoin(base, value) if base else value
    except ValueError:
        raise _Unusual(f"malformed {what}") from None


def _resolved(link: Any) -> str:
    return _against_base(link, (link.get("href") or "").strip(), "link")


def _atom_id(entry: Any) -> str | None:
    element = entry.find(f"{ATOM}id")
    value = (element.text or "").strip() if element is not None else ""
    return _against_base(element, value, "id") if value else None


def _atom_text(element: Any) -> str:
    """Atom text constructs: text and html are strings; xhtml is markup inside a div."""
    if element is None:
        return ""
    if element.get("type", "text") not in ("text", "html", "xhtml") or element.get("mode") \
            or element.get("src"):
        raise _Unusual("unusual text construct")
    if element.get("type") == "xhtml":
        return "".join(etree.tostring(child, encoding="unicode") for child in element)
    return element.text or ""


def _date(value: str | None, now: datetime) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        parsed = _parse_date(value.strip())
        if not parsed:
            return None
        import calendar
        stamp = datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return min(stamp.astimezone(timezone.utc), now)
