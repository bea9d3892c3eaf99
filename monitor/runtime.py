"""Builds the running parts from the settings files: store, fetcher, rules, channels, context."""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, TextIO

from monitor.config import Settings, SourceSpec, SubscriberSpec, load_sources, load_subscribers
from monitor.errors import Problem
from monitor.fetch import Fetcher, make_client
from monitor.match import Engine
from monitor.prepare import Preparer
from monitor.notify import ChannelContext, channels
from monitor.notify.render import Templates
from monitor.context import Context, Rules, utcnow
from monitor.rules import RuleFile, RuleSet, load_rules
from monitor.store import Store, open_store

log = logging.getLogger("monitor")


@dataclass
class Loaded:
    """Everything read from files, with every problem found on the way."""

    sources: list[SourceSpec]
    subscribers: list[SubscriberSpec]
    ruleset: RuleSet
    rule_files: dict[str, RuleFile]
    problems: list[Problem] = field(default_factory=list)
    rule_problems: list[Problem] = field(default_factory=list)


def load_all(settings: Settings) -> Loaded:
    sources, source_problems = load_sources(settings.sources)
    subscribers, subscriber_problems = load_subscribers(settings.subscribers)
    ruleset, rule_problems, files = load_rules(settings.rules)
    problems = source_problems + rule_problems + subscriber_problems
    problems += cross_check(settings, subscribers, ruleset)
    return Loaded(sources, subscribers, ruleset, files, problems, rule_problems)


def cross_check(settings: Settings, subscribers: list[SubscriberSpec],
                ruleset: RuleSet) -> list[Problem]:
    """Problems that span files: a subscriber following a rule that does not exist, ..."""
    problems = []
    where = str(settings.subscribers)
    for subscriber in subscribers:
        if subscriber.rules != "*":
            for rule_id in subscriber.rules:
                if rule_id not in ruleset.ids:
                    problems.append(Problem(where, 0, f"subscriber '{subscriber.name}' follows "
                                                      f"unknown rule '{rule_id}'"))
    if settings.admin and settings.admin not in {s.name for s in subscribers}:
        problems.append(Problem("config", 0, f"admin '{settings.admin}' is not a subscriber"))
    return problems


def log_problems(problems: list[Problem]) -> None:
    for problem in problems:
        log.error("%s", problem)


@asynccontextmanager
async def running(settings: Settings, loaded: Loaded, out: TextIO = sys.stdout,
                  store: Store | None = None) -> AsyncIterator[Context]:
    """The context a cycle runs in; network clients are closed on the way out."""
    store = store or open_store(settings.database_url())
    fetcher = Fetcher.guarded(settings.fetch, settings.allow_private_networks)
    http = make_client(settings.fetch, settings.allow_private_networks)
    channel_context = ChannelContext(settings.smtp, http, Templates(settings.templates), out,
                                     settings.delivery.timeout, settings.allow_private_networks)
    context = Context(settings=settings, store=store, fetcher=fetcher,
                      rules=Rules(Engine(loaded.ruleset), problems=loaded.rule_problems),
                      sources={s.id: s for s in loaded.sources},
                      subscribers=loaded.subscribers, channels=channels(channel_context),
                      preparer=Preparer(settings.match_worker_count()))
    store.sync_sources(loaded.sources, utcnow())
    try:
        yield context
    finally:
        context.preparer.close()
        await fetcher.close()
        await http.aclose()


def rules_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the rule files: what a reload watches."""
    out = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(out)
