"""The outbox sender: claim due deliveries, send them through their channel, mark the outcome.

A row is marked sent only after the channel's server accepted it; a crash in between means it
is sent again on restart with the same id (receivers drop it by webhook-id / Message-ID).
Digest subscribers get one message for all alerts due together; a cooldown batches the alerts
of one rule. Each send has its own deadline; one slow or broken endpoint never blocks others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
from jinja2 import TemplateError

from monitor.config import DigestSpec, SubscriberSpec
from monitor.errors import DeliveryError
from monitor.models import Alert, Article, Matched
from monitor.notify.render import alert_from
from monitor.records import DeliveryUpdate
from monitor.redact import masked_text
from monitor.retry import delivery_delay
from monitor.store import DeliveryRow

if TYPE_CHECKING:
    from monitor.context import Context

log = logging.getLogger("monitor.deliver")
SEND_CONCURRENCY = 20


def make_alert(delivery_id: str, found: Matched, article: Article, source_id: str,
               subscriber: str, now: datetime) -> Alert:
    """The alert for a match, from the explanation stored with it (prepare.explanation)."""
    why = json.loads(found.explanation)
    return Alert(delivery_id=delivery_id, rule_id=found.rule_id, rule_title=found.rule_title,
                 article_url=article.url, article_title=article.title, source_id=source_id,
                 published=article.published, summary=article.summary[:1000],
                 terms=why["terms"], actors=why["actors"], fields=why["fields"],
                 snippet=why["snippet"], marks=[(start, end) for start, end in why["marks"]],
                 reasons=why["reasons"], score=why["score"], subscriber=subscriber,
                 created_at=now)


def source_alert(delivery_id: str, key: str, title: str, text: str, source_id: str, url: str,
                 subscriber: str, now: datetime) -> Alert:
    """An alert about a source itself (failing, recovered), for the admin subscriber."""
    return Alert(delivery_id=delivery_id, rule_id=key, rule_title=title, article_url=url,
                 article_title=text, source_id=source_id, published=now, summary=text,
                 terms=[], actors=[], fields=[], snippet=text, subscriber=subscriber,
                 created_at=now)


def next_digest(digest: DigestSpec, now: datetime) -> datetime:
    """The next digest time after `now`, computed in the subscriber's time zone."""
    local = now.astimezone(ZoneInfo(digest.timezone))
    if digest.every == "hourly":
        return (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
                ).astimezone(now.tzinfo)
    hour, minute = (int(part) for part in digest.at.split(":"))
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= local:
        at = (at + timedelta(days=1)).replace(hour=hour, minute=minute)
    return at.astimezone(now.tzinfo)


def first_attempt(ctx: Context, session: Any, subscriber: SubscriberSpec, rule_id: str,
                  now: datetime, queued_just_now: datetime | None = None) -> datetime:
    """When a new delivery becomes due: now, the next digest, or after the rule's cooldown.

    `queued_just_now`: when the same feed already queued one for this subscriber and rule
    (not yet written, and the latest there is)."""
    if subscriber.digest:
        return next_digest(subscriber.digest, now)
    if subscriber.cooldown:
        last = queued_just_now or ctx.store.last_delivery_time(session, subscriber.name,
                                                               rule_id)
        if last is not None and (now - last).total_seconds() < subscriber.cooldown:
            return last + timedelta(seconds=subscriber.cooldown)
    return now


def batches(rows: list[DeliveryRow], subscribers: dict[str, SubscriberSpec]
            ) -> list[list[DeliveryRow]]:
    """Rows sent together: a digest subscriber's rows; a cooldown's rows of one rule."""
    grouped: defaultdict[tuple[str, str], list[DeliveryRow]] = defaultdict(list)
    singles = []
    for row in rows:
        spec = subscribers.get(row.subscriber)
        if spec is not None and spec.digest:
            grouped[(row.subscriber, "*")].append(row)
        elif spec is not None and spec.cooldown:
            grouped[(row.subscriber, row.rule_id)].append(row)
        else:
            singles.append([row])
    return singles + list(grouped.values())


async def send_due(ctx: Context) -> tuple[int, int]:
    """Send every due delivery; return (sent, failed) counts."""
    subscribers = {s.name: s for s in ctx.subscribers}
    disabled = ctx.store.disabled_endpoints()
    sent = failed = 0
    limit = asyncio.Semaphore(SEND_CONCURRENCY)
    tried: list[str] = []           # a failure due again at once waits for the next pass
    while True:
        rows = ctx.store.claim_deliveries(ctx.now(), ctx.owner, ctx.settings.delivery.batch,
                                          tried)
        if not rows:
            return sent, failed
        tried += [row.id for row in rows]
        results = await asyncio.gather(*(
            _send_batch(ctx, batch, subscribers, disabled, limit)
            for batch in batches(rows, subscribers)))
        sent += sum(ok for ok, _ in results)
        failed += sum(bad for _, bad in results)


async def _send_batch(ctx: Context, rows: list[DeliveryRow],
                      subscribers: dict[str, SubscriberSpec], disabled: dict[str, str],
                      limit: asyncio.Semaphore) -> tuple[int, int]:
    head = rows[0]
    spec = subscribers.get(head.subscriber)
    if spec is None:
        _finish(ctx, rows, DeliveryUpdate(status="dead", last_error=f"subscriber "
                                           f"'{head.subscriber}' is no longer configured"),
                attempted=False)
        return 0, len(rows)
    if disabled.get(spec.name) == spec.target:
        _finish(ctx, rows, DeliveryUpdate(status="disabled",
                                           last_error="endpoint disabled after 410 Gone"),
                attempted=False)
        return 0, len(rows)
    alerts = [_with_outlets(ctx, row) for row in rows]
    channel = ctx.channels[spec.channel]
    try:
        async with limit:
            await asyncio.wait_for(channel.send(spec, alerts, head.id),
                                   ctx.settings.delivery.timeout + 5)
    except (DeliveryError, asyncio.TimeoutError) as exc:
        ctx.metrics.deliveries.labels(spec.channel, "failed").inc(len(rows))
        _failed(ctx, rows, spec, exc)
        return 0, len(rows)
    except Exception as exc:  # a channel bug or bad setting must not leave the row leased
        log.exception("delivery %s to %s: unexpected error", head.id, spec.name)
        ctx.metrics.deliveries.labels(spec.channel, "failed").inc(len(rows))
        _failed(ctx, rows, spec, unexpected_failure(exc))
        return 0, len(rows)
    ctx.metrics.deliveries.labels(spec.channel, "sent").inc(len(rows))
    _finish(ctx, rows, DeliveryUpdate(status="sent", sent_at=ctx.now(),
                                      attempts=head.attempts + 1, last_error=None))
    log.info("delivery %s: sent to %s (%s)", head.id, spec.name, spec.channel)
    return len(rows), 0


# Failures that come from the delivery's own data or settings (a secret that is not base64, a
# URL httpx cannot parse, a template error): the same input fails the same way every time.
_DETERMINISTIC = (ValueError, TypeError, LookupError, AttributeError, TemplateError,
                  httpx.InvalidURL)


def unexpected_failure(exc: Exception) -> DeliveryError:
    """A recorded failure for an exception a channel did not turn into a DeliveryError."""
    return DeliveryError(f"{type(exc).__name__}: {exc}",
                         permanent=isinstance(exc, _DETERMINISTIC))


def _with_outlets(ctx: Context, row: DeliveryRow) -> Alert:
    """The stored alert, plus every outlet that has carried its story so far."""
    alert = alert_from(json.loads(row.payload))
    if row.article_id is None:
        return alert
    outlets = ctx.store.story_outlets(row.story_id)
    alert.also_reported_by = [{"source": source, "url": url, "title": title}
                              for source, url, title in outlets if url != alert.article_url]
    return alert


def _finish(ctx: Context, rows: list[DeliveryRow], outcome: DeliveryUpdate,
            attempted: bool = True) -> None:
    """The outcome on every row of a batch; an attempt also goes into each row's history."""
    now = ctx.now() if attempted else None
    for row in rows:
        ctx.store.finish_delivery(row.id, outcome, now)


def _failed(ctx: Context, rows: list[DeliveryRow], spec: SubscriberSpec,
            exc: BaseException) -> None:
    head = rows[0]
    attempts = head.attempts + 1
    message = masked_text(str(exc) or type(exc).__name__)
    if isinstance(exc, DeliveryError) and exc.gone:
        ctx.store.disable_endpoint(spec.name, spec.target, message, ctx.now())
        _finish(ctx, rows, DeliveryUpdate(status="disabled", attempts=attempts,
                                          last_error=message))
        log.error("delivery %s to %s: %s", head.id, spec.name, message)
        return
    permanent = isinstance(exc, DeliveryError) and exc.permanent
    retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
    delay = None if permanent else delivery_delay(attempts, ctx.settings.delivery.retry,
                                                  retry_after, random.Random())
    if delay is None:
        _finish(ctx, rows, DeliveryUpdate(status="dead", attempts=attempts, last_error=message))
        log.error("delivery %s to %s: dead after %d attempt(s): %s", head.id, spec.name,
                  attempts, message)
        return
    _finish(ctx, rows, DeliveryUpdate(attempts=attempts, last_error=message,
                                      next_attempt=ctx.now() + timedelta(seconds=delay)))
    log.warning("delivery %s to %s: %s (attempt %d; retry in %.0f s)", head.id, spec.name,
                message, attempts, delay)
