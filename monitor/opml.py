"""`news-monitor sources import FILE.opml`: feeds from a feed reader's export, added to sources."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from lxml import etree

from monitor.config import load_sources
from monitor.errors import ConfigError


def opml_feeds(body: bytes) -> list[tuple[str, str]]:
    """(title, xmlUrl) of every feed outline, nested folders included."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise ConfigError(f"not an OPML file: {exc}") from None
    out = []
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl") or outline.get("xmlurl")
        if url and re.match(r"^https?://", url, re.I):
            out.append((outline.get("title") or outline.get("text") or url, url))
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "feed"


def import_opml(path: Path, sources_file: Path) -> int:
    """Append the OPML's feeds that are not yet sources; return how many were added."""
    try:
        feeds = opml_feeds(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    existing, _ = load_sources(sources_file) if sources_file.exists() else ([], [])
    urls = {s.url for s in existing}
    ids = {s.id for s in existing}
    entries = []
    for title, url in feeds:
        if url in urls:
            continue
        ident, n = slug(title), 2
        while ident in ids:
            ident, n = f"{slug(title)}-{n}", n + 1
        ids.add(ident)
        urls.add(url)
        entries.append({"id": ident, "url": url, "interval": "15m"})
    if entries:
        text = sources_file.read_text(encoding="utf-8") if sources_file.exists() else "sources:\n"
        text = re.sub(r"^sources:\s*\[\]\s*$", "sources:", text, flags=re.M)
        if not text.endswith("\n"):
            text += "\n"
        block = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
        first = re.search(r"^( *)- ", text, re.M)      # follow the file's own indentation
        indent = first.group(1) if first else (
            "  " if re.search(r"^sources:\s*$", text, re.M) else "")
        text += "".join(indent + line + "\n" for line in block.splitlines())
        sources_file.write_text(text, encoding="utf-8")
    return len(entries)
