"""The run context: everything a cycle and the outbox sender need, built once and passed in.

Its own module so that the stages (pipeline.py, deliver.py) depend on it and not on each other.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from monitor.config import Settings, SourceSpec, SubscriberSpec
from monitor.errors import Problem
from monitor.fetch import Fetcher
from monitor.groupcommit import GroupCommit
from monitor.lookups import IdentityLookups
from monitor.match import Engine
from monitor.metrics import Metrics
from monitor.notify import Channel
from monitor.prepare import Preparer
from monitor.store import Store


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def owner_name() -> str:
    """Who holds a lease: host and pid, so a crashed process's leases can be freed early."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Rules:
    """The rule engine in service; hot reload replaces `engine` in one assignment."""

    engine: Engine
    version: int = 1
    loaded_at: datetime = field(default_factory=utcnow)
    problems: list[Problem] = field(default_factory=list)   # of the last (re)load


@dataclass
class Context:
    """Everything a cycle needs, built by the command line and passed in."""

    settings: Settings
    store: Store
    fetcher: Fetcher
    rules: Rules
    sources: dict[str, SourceSpec]
    subscribers: list[SubscriberSpec]
    channels: dict[str, Channel]
    owner: str = field(default_factory=lambda: owner_name())
    now: Callable[[], datetime] = utcnow
    metrics: Metrics = field(default_factory=Metrics)
    pruned_at: datetime | None = None          # when fetch/attempt history was last pruned
    # Where new articles are fingerprinted and matched: the daemon's commands give it the
    # configured match workers (`running`); built directly, a context computes them itself.
    preparer: Preparer = field(default_factory=Preparer)
    # Where each feed's transaction is written: feeds ready at once share a commit.
    commits: GroupCommit = field(init=False)
    # Where each feed asks which of its items are stored: feeds asking at once share a query.
    lookups: IdentityLookups = field(init=False)

    def __post_init__(self) -> None:
        self.commits = GroupCommit(self.store)
        self.lookups = IdentityLookups(self.store)
