"""What the pipeline and the outbox write to the store: typed records, not loose dicts.

Each record names its columns once; the store turns it into one INSERT or UPDATE. A field of
an update record left at KEEP is not written (the column keeps its value); None writes NULL.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, get_args

BANDS = 8      # the articles table's band0..band7 (story.HASHES / story.ROWS)

# What happened to a delivery: waiting (or retrying), accepted by the channel's server, given
# up after the retry schedule or a permanent error, switched off by its endpoint (410 Gone),
# or cancelled because its subscriber was removed from the subscribers file.
DeliveryStatus = Literal["pending", "sent", "dead", "disabled", "cancelled"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = get_args(DeliveryStatus)


class _Keep:
    """The column keeps its value."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


def _written(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)
            if getattr(record, f.name) is not KEEP}


@dataclass(frozen=True)
class NewArticle:
    source_id: str
    guid: str | None
    canonical_url: str | None
    url: str
    title: str
    summary: str
    body: str
    published: datetime | None
    fetched_at: datetime
    minhash: str | None = None
    bands: tuple[int, ...] = ()          # the MinHash bands (story grouping), band0..bandN
    story_id: int | None = None          # None: the article starts its own story

    def values(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "bands"}
        # Every band column named, None without a fingerprint: rows inserted together must
        # all carry the same keys.
        out.update({f"band{i}": self.bands[i] if self.bands else None for i in range(BANDS)})
        return out


@dataclass(frozen=True)
class NewDelivery:
    id: str                              # stable: webhook-id and Message-ID on every try
    rule_id: str
    story_id: int
    article_id: int | None               # None: an alert about a source, for the admin
    subscriber: str
    channel: str
    target: str
    next_attempt: datetime
    created_at: datetime
    payload: str                         # the alert as JSON (notify.render.alert_dict)
    status: DeliveryStatus = "pending"
    attempts: int = 0

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


NEW_ARTICLE_COLUMNS = tuple([f.name for f in fields(NewArticle) if f.name != "bands"]
                            + [f"band{i}" for i in range(BANDS)])


@dataclass(frozen=True)
class DeliveryUpdate:
    """The outcome of one send attempt (or of cancelling)."""

    status: DeliveryStatus | Any = KEEP
    attempts: int | Any = KEEP
    last_error: str | None | Any = KEEP
    next_attempt: datetime | None | Any = KEEP
    sent_at: datetime | None | Any = KEEP

    def values(self) -> dict[str, Any]:
        return _written(self)


@dataclass(frozen=True)
class FetchState:
    """A source's row after a fetch: what the next conditional GET and the backoff need."""

    last_attempt: datetime
    consecutive_failures: int
    last_error: str | None
    http_status: int | None
    last_success: datetime | None | Any = KEEP
    items_seen: int | Any = KEEP
    articles_total: int | Any = KEEP
    etag: str | None | Any = KEEP
    last_modified: str | None | Any = KEEP
    content_hash: str | None | Any = KEEP
    items_hash: str | None | Any = KEEP
    next_due: datetime | None | Any = KEEP
    disabled: bool | Any = KEEP
    failure_alerted: bool | Any = KEEP
    failure_episodes: int | Any = KEEP

    def values(self) -> dict[str, Any]:
        return _written(self)
