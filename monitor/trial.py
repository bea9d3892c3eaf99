"""`news-monitor test-rule`: one rule over stored articles, a file or a URL, explained.

This is how an admin tries an edit before subscribers see it: nothing is stored or sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, TextIO

from monitor.config import Settings, load_subscribers
from monitor.errors import ConfigError, MonitorError, ParseError
from monitor.fetch import Fetcher
from monitor.match import Engine
from monitor.models import Article, Match
from monitor.parse import decode_html, main_text, parse_feed, sniff
from monitor.rules import RuleDef, RuleSet, load_rules
from monitor.store import open_store


def run_trial(settings: Settings, rule_id: str, days: float, file: str | None,
              url: str | None, out: TextIO) -> int:
    engine = Engine(RuleSet((_rule(settings, rule_id, out),)))
    articles = _articles(settings, days, file, url)
    subscribers, _ = load_subscribers(settings.subscribers)
    followers = sum(1 for s in subscribers if s.follows(rule_id))
    seen = matched = 0
    for source_id, article in articles:
        seen += 1
        for found in engine.match(article, source_id):
            matched += 1
            _print_match(out, source_id, article, found)
    print(f"\nrule {rule_id}: {matched} of {seen} article(s) match; with {followers} "
          f"subscriber(s) following it, that is {matched * followers} alert(s) "
          f"(before story grouping)", file=out)
    return 0


def run_labelled(settings: Settings, rule_id: str, labels: Path, text_column: str,
                 as_json: bool, out: TextIO, semantic: bool = True) -> int:
    """`test-rule RULE --labels FILE`: the rule's figures and errors on labelled examples."""
    from monitor.evaluate import evaluate, print_evaluation, read_examples
    engine = Engine(RuleSet((_rule(settings, rule_id, out),)), semantic=semantic)
    examples, skipped = read_examples(labels, text_column)
    result = evaluate(engine, rule_id, examples, str(labels), skipped)
    if as_json:
        json.dump(result.as_dict(), out, ensure_ascii=False, indent=1)
        out.write("\n")
    else:
        print_evaluation(result, out)
    return 0


def _rule(settings: Settings, rule_id: str, out: TextIO) -> RuleDef:
    ruleset, problems, _ = load_rules(settings.rules)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    rule = ruleset.get(rule_id)
    if rule is None:
        raise ConfigError(f"no rule '{rule_id}' in {settings.rules} (rules: "
                          f"{', '.join(sorted(ruleset.ids)) or 'none'})")
    return rule


def _print_match(out: TextIO, source_id: str, article: Article, found: Match) -> None:
    print(f"MATCH {article.title} ({source_id})", file=out)
    if article.url:
        print(f"  {article.url}", file=out)
    actors = f"; actors {', '.join(found.actors)}" if found.actors else ""
    print(f"  why: {', '.join(found.terms)}{actors}; in {', '.join(found.fields)}", file=out)
    for reason in found.reasons():
        print(f"  - {reason}", file=out)
    print(f"  > {found.marked_snippet()}", file=out)


def _articles(settings: Settings, days: float, file: str | None,
              url: str | None) -> Iterable[tuple[str, Article]]:
    now = datetime.now(timezone.utc)
    if file:
        path = Path(file)
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from None
        return [(path.name, a) for a in articles_of(body, "", str(path), now)]
    if url:
        return [(url, a) for a in asyncio.run(_fetch(settings, url, now))]
    store = open_store(settings.database_url())
    return ((row.source_id, Article(row.url, row.title, row.summary, row.body, row.guid,
                                    row.published))
            for row in store.recent_articles(now - timedelta(days=days)))


async def _fetch(settings: Settings, url: str, now: datetime) -> list[Article]:
    async with Fetcher.guarded(settings.fetch, settings.allow_private_networks) as fetcher:
        result = await fetcher.get(url)
    return articles_of(result.body, result.content_type, result.url, now)


def articles_of(body: bytes, content_type: str, where: str, now: datetime) -> list[Article]:
    """A feed gives its items; an HTML page its main text; plain text is title + body."""
    kind = sniff(body, content_type)
    if kind == "html" or where.endswith((".html", ".htm")):
        text = main_text(body, content_type)
        title = _html_title(decode_html(body, content_type))
        return [Article(url=where if "://" in where else "", title=title, body=text)]
    if where.endswith(".txt") or not body.lstrip().startswith((b"<", b"{")):
        title, _, text = body.decode("utf-8", errors="replace").partition("\n")
        return [Article(url="", title=title.strip(), body=text)]
    try:
        return parse_feed(body, "auto", content_type, where, now)
    except ParseError as exc:
        raise MonitorError(f"{where}: {exc}") from None


def _html_title(body: str) -> str:
    import lxml.html
    try:
        found = lxml.html.document_fromstring(body).findtext(".//title")
    except Exception:  # a page without a usable <title> still has a body to match
        return ""
    return " ".join((found or "").split())
