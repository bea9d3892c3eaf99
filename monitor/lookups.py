"""Identity lookups in batches: the feeds being saved at one moment ask which of their items
are stored already in one statement, not one each.

A claim batch's feeds are saved side by side (run_cycle), and each first asks which of its
items are stored: by GUID in its source, by canonical URL anywhere. One feed at a time, each
question was a pooled connection, a statement through SQLAlchemy and a round trip for ~20
keys, more than the database took to answer it. Asked at the event loop's next turn with
every other feed asking by then (up to `limit` items), it is one statement for all of them.

Each feed gets exactly its own answer: which of its GUIDs are stored for its source, which of
its canonical URLs are stored anywhere. The batching is group commit's (groupcommit.NextTurn).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Sequence

from monitor.groupcommit import NextTurn, fail_all, settle
from monitor.store import Store

Identity = tuple[str | None, str | None]

# Items one statement may ask about: a claim batch of 200 feeds of 20 items in one, and a
# bound on one statement's size (and on how long it holds the event loop) whatever comes.
LOOKUP_ITEMS = 8000


@dataclass
class _Ask:
    source_id: str
    identities: Sequence[Identity]
    size: int
    future: asyncio.Future[tuple[set[str], set[str]]]

    def answer(self, pairs: set[tuple[str, str]], urls: set[str]) -> tuple[set[str], set[str]]:
        """Its own share of a `known_many` answer, as new sets (the caller adds to them)."""
        return ({guid for guid, _ in self.identities if guid and (self.source_id, guid) in pairs},
                {url for _, url in self.identities if url and url in urls})


@dataclass
class IdentityLookups:
    """Answers `known(source, identities)` for many feeds with one statement; build one per
    store and pass it in."""

    store: Store
    limit: int = LOOKUP_ITEMS
    statements: int = 0                     # statements run, and the feeds they answered
    answered: int = 0
    _queue: NextTurn[_Ask] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._queue = NextTurn(self._answer, self.limit)

    async def known(self, source_id: str, identities: Sequence[Identity]
                    ) -> tuple[set[str], set[str]]:
        """(The feed's GUIDs stored for `source_id`, its canonical URLs stored anywhere), as
        new sets. An error of the statement is raised here, to every feed it was asked for."""
        if not any(guid or url for guid, url in identities):
            return set(), set()
        ask = _Ask(source_id, identities, len(identities),
                   asyncio.get_running_loop().create_future())
        self._queue.add([ask])
        return await ask.future

    def _answer(self, batch: list[_Ask]) -> None:
        try:
            with self.store.reading() as connection:
                pairs, urls = self.store.known_many(
                    connection, [(ask.source_id, ask.identities) for ask in batch])
        except Exception as exc:  # noqa: BLE001 (the statement failed: every feed it asked for)
            fail_all(batch, exc)
            return
        self.statements += 1
        self.answered += len(batch)
        for ask in batch:
            settle(ask.future, result=ask.answer(pairs, urls))
