"""The one place where the stages meet: fetch -> parse -> store + match + outbox -> deliver.

`refresh_source` reads top to bottom for one source; `run_cycle` does it for every due
source, concurrently, then sends what the outbox holds. A failing source is recorded and
backed off; it never stops the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import operator
import random
import secrets
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar

from monitor import deliver, story
from monitor.config import SourceSpec, SubscriberSpec
from monitor.context import Context, process_alive
from monitor.errors import FetchError, ParseError
from monitor.models import Article, FetchResult, Matched
from monitor.notify.render import alert_dict
from monitor.records import FetchState, NewArticle, NewDelivery
from monitor.parse import canonical_url, clean_text, main_text, parse_feed, parse_listing
from monitor.prepare import Prepared
from monitor.retry import source_delay
from monitor.store import HISTORY_DAYS, SourceRow, fetch_entry

log = logging.getLogger("monitor.pipeline")
_T = TypeVar("_T")


@dataclass
class SourceOutcome:
    source_id: str
    ok: bool
    new: int = 0
    duplicates: int = 0
    matches: int = 0
    queued: int = 0
    not_modified: bool = False
    error: str | None = None
    state: FetchState | None = None          # fetch state still to be written
    # The rule of each match stored, counted in the metrics once the write has committed (a
    # group commit may run a feed's write twice: groupcommit.py).
    matched_rules: list[str] = field(default_factory=list, repr=False)


@dataclass
class CycleReport:
    sources: list[SourceOutcome] = field(default_factory=list)
    sent: int = 0
    failed: int = 0

    @property
    def ok(self) -> list[SourceOutcome]:
        return [s for s in self.sources if s.ok]

    @property
    def failed_sources(self) -> list[SourceOutcome]:
        return [s for s in self.sources if not s.ok]

    def total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.sources)


def _prune_history(ctx: Context) -> None:
    """Fetch and attempt history beyond HISTORY_DAYS goes, once an hour at most."""
    now = ctx.now()
    if ctx.pruned_at is not None and now - ctx.pruned_at < timedelta(hours=1):
        return
    ctx.store.prune_history(now - timedelta(days=HISTORY_DAYS))
    ctx.pruned_at = now


async def run_cycle(ctx: Context, only_due: bool = True) -> CycleReport:
    """Refresh every due source, then send what the outbox holds.

    Sources are claimed a batch at a time (four times as many as are fetched at once: enough
    to keep every fetch slot busy while a batch's slowest source finishes), so replicas sharing
    one database split the due sources between them instead of one taking them all.
    """
    _prune_history(ctx)
    freed = ctx.store.release_dead_leases(socket.gethostname(), process_alive, ctx.now())
    if freed:
        log.warning("freed %d lease(s) left by a process that stopped without releasing them",
                    freed)
    report = CycleReport()
    done: list[str] = []
    while True:
        rows = ctx.store.claim_due_sources(_enabled(ctx), ctx.now(), ctx.owner,
                                           everything=not only_due, exclude=done,
                                           limit=4 * ctx.settings.fetch.concurrency)
        if not rows:
            break
        done += [row.id for row in rows]
        outcomes = await asyncio.gather(*(refresh_source(ctx, row) for row in rows))
        record_quiet(ctx, outcomes, {row.id: row for row in rows})
        report.sources += outcomes
    report.sent, report.failed = await deliver.send_due(ctx)
    return report


def _enabled(ctx: Context) -> list[str]:
    return [spec.id for spec in ctx.sources.values() if spec.enabled]


async def refresh_source(ctx: Context, row: SourceRow) -> SourceOutcome:
    """Fetch one source, store its new articles with their matches and deliveries, in one go."""
    outcome = await _refresh(ctx, row)
    kind = "failed" if not outcome.ok else "unchanged" if outcome.not_modified else "ok"
    ctx.metrics.fetches.labels(kind).inc()
    ctx.metrics.articles.labels("new").inc(outcome.new)
    ctx.metrics.articles.labels("duplicate").inc(outcome.duplicates)
    if not outcome.ok:
        ctx.metrics.source_failures.labels(row.id).inc()
    return outcome


async def _refresh(ctx: Context, row: SourceRow) -> SourceOutcome:
    spec = ctx.sources[row.id]
    started = time.monotonic()
    try:
        try:
            result = await ctx.fetcher.get(spec.url, row.etag, row.last_modified)
        finally:
            ctx.metrics.fetch_seconds.observe(time.monotonic() - started)
        if result.not_modified or body_hash(result.body) == row.content_hash:
            # Many servers ignore conditional GET and resend the same bytes: same cost as 304.
            # Its new fetch state is written with the others' at the end of the cycle.
            state = replace(_success_state(ctx, row, result, row.items_seen, 0),
                            content_hash=row.content_hash)
            return SourceOutcome(row.id, True, not_modified=True, state=state)
        articles = await off_loop(ctx, f"parsing {row.id}", parse_source, spec, result,
                                  ctx.now())
        if spec.full_text:
            articles = await _with_full_text(ctx, row.id, articles)
        return await save(ctx, row, spec, articles, result)
    except (FetchError, ParseError) as exc:
        return _record_failure(ctx, row, exc)
    except Exception as exc:  # a bug or an unforeseen input must not stop the other sources
        log.exception("source %s: unexpected error", row.id)
        return _record_failure(ctx, row, exc)


async def off_loop(ctx: Context, what: str, work: Callable[..., _T], *args: Any) -> _T:
    """CPU-heavy work (parsing, main-text extraction) in a worker thread, under a deadline,
    so a hostile page never stalls the event loop (/healthz, other sources, job deadlines)."""
    deadline = ctx.settings.fetch.parse_deadline
    try:
        return await asyncio.wait_for(asyncio.to_thread(work, *args), deadline)
    except asyncio.TimeoutError:
        raise ParseError(f"{what} took longer than {deadline:g} s; given up") from None


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def parse_source(spec: SourceSpec, result: FetchResult, now: datetime) -> list[Article]:
    if spec.kind == "html":
        assert spec.links
        return parse_listing(result.body, result.url, spec.links, spec.title, spec.item,
                             result.content_type)
    return parse_feed(result.body, spec.kind, result.content_type, result.url, now)


async def _with_full_text(ctx: Context, source_id: str, articles: list[Article]
                          ) -> list[Article]:
    """Fetch each new article's own page and use its main text as the body.

    Pages of articles already stored are not fetched again (their text is already matched).
    """
    identities = [_identity(article) for article in articles]
    guids, urls = await ctx.lookups.known(source_id, identities)
    fresh = {id(a) for a, identity in zip(articles, identities, strict=True)
             if a.url and not _known(identity, guids, urls)}

    async def one(article: Article) -> Article:
        if id(article) not in fresh:
            return article
        try:
            page = await ctx.fetcher.get(article.url)
            text = await off_loop(ctx, f"main text of {article.url}", main_text, page.body,
                                  page.content_type)
        except (FetchError, ParseError) as exc:
            log.warning("full text of %s: %s", article.url, exc)
            return article
        if not text:
            return article
        return Article(article.url, article.title, article.summary, text, article.guid,
                       article.published, article.author)
    return list(await asyncio.gather(*(one(a) for a in articles)))


async def save(ctx: Context, row: SourceRow, spec: SourceSpec, articles: list[Article],
               result: FetchResult) -> SourceOutcome:
    """A fetched feed with new items is written in a group commit (groupcommit.py: the
    feed's rows commit together or not at all), in a few statements per feed rather than
    per article: their stories, the articles, their matches, the outbox rows and the fetch
    state.

    Which items are new is read first, outside the write transaction, and not at all when
    the feed lists exactly the items of the last poll (all stored by then: the source's
    `items_hash`). A feed with nothing new (the common case: a changed body repeating the
    last poll's items) writes nothing here: its fetch state is written with the other quiet
    sources' (`record_quiet`), as for a 304. The new items' fingerprints and matches are
    computed before the transaction, in the match worker when there is one (prepare.py),
    while other feeds are written. An item another writer stores between the read and the
    insert is left to it by the unique indexes."""
    now = ctx.now()
    identities = [_identity(article) for article in articles]
    digest = items_digest(identities)
    repeated = digest == row.items_hash   # the same items as the last poll: all stored
    guids: set[str] = set()
    urls: set[str] = set()
    if not repeated:
        guids, urls = await ctx.lookups.known(row.id, identities)
    new = [] if repeated else _new_items(articles, identities, guids, urls)
    if not new:
        log.debug("source %s: %d item(s), none new [%s]", row.id, len(articles), ctx.owner)
        state = _success_state(ctx, row, result, len(articles), 0)
        return SourceOutcome(row.id, True, duplicates=len(articles),
                             state=replace(state, items_hash=digest))
    ready = await ctx.preparer.prepare(ctx.rules.engine, row.id,
                                       [article for article, _ in new],
                                       ctx.settings.fetch.parse_deadline)
    fresh = [_Stored(article, identity, prepared)
             for (article, identity), prepared in zip(new, ready, strict=True)]

    def write(session: Any) -> SourceOutcome:
        outcome = SourceOutcome(row.id, True)
        stored = _store_new(ctx, session, row.id, fresh, now)
        outcome.new, outcome.duplicates = len(stored), len(articles) - len(stored)
        _match_and_queue(ctx, session, row.id, stored, now, outcome)
        state = _success_state(ctx, row, result, len(articles), outcome.new)
        ctx.store.record_fetch(session, row.id, replace(state, items_hash=digest))
        ctx.store.log_fetch(session, row.id, now, True, result.status, len(articles),
                            outcome.new)
        _tell_admin_recovered(ctx, session, row)
        return outcome

    outcome = await ctx.commits.write(write, len(fresh))
    ctx.store.stored_articles(outcome.new)
    for rule_id in outcome.matched_rules:
        ctx.metrics.matches.labels(rule_id).inc()
    log.debug("source %s: %d item(s), %d new, %d match(es) [%s]", row.id, len(articles),
              outcome.new, outcome.matches, ctx.owner)
    return outcome


@dataclass
class _Stored:
    """A new article of the feed: its identity, its fingerprint and matches (`prepared`), and
    once stored its id and its story (`joined`: found an earlier near-duplicate's story)."""

    article: Article
    identity: tuple[str | None, str | None]
    prepared: Prepared
    joined: int | None = None
    article_id: int = 0
    story_id: int = 0

    @property
    def fingerprint(self) -> list[int] | None:
        return self.prepared.fingerprint

    @property
    def bands(self) -> list[int] | None:
        return self.prepared.bands


def _new_items(articles: list[Article], identities: list[tuple[str | None, str | None]],
               guids: set[str], urls: set[str]
               ) -> list[tuple[Article, tuple[str | None, str | None]]]:
    """The feed's items not among the known `guids` and `urls`, with their identities, in
    feed order. An item repeated within the feed counts once."""
    fresh: list[tuple[Article, tuple[str | None, str | None]]] = []
    for article, identity in zip(articles, identities, strict=True):
        if _known(identity, guids, urls):
            continue
        guid, url = identity
        guids.update([guid] if guid else [])
        urls.update([url] if url else [])
        fresh.append((article, identity))
    return fresh


def _store_new(ctx: Context, session: Any, source_id: str, fresh: list[_Stored],
               now: datetime) -> list[_Stored]:
    """Store the feed's new articles (one lookup of their stories, one insert) and answer
    those stored, in feed order."""
    candidates = ctx.store.similar_many(session, [item.bands for item in fresh],
                                        now - timedelta(days=2))
    for item, found in zip(fresh, candidates, strict=True):
        item.joined = _earliest_story(found, item.fingerprint) if item.fingerprint else None
    ids = ctx.store.insert_articles(session, [
        article_record(source_id, item.article, now, item.fingerprint, item.joined,
                       item.identity, item.bands) for item in fresh])
    stored = [item for item in fresh if item.identity in ids]
    for item in stored:
        item.article_id = ids[item.identity]
        item.story_id = item.joined or item.article_id
    _join_stories_within(ctx, session, stored)
    return stored


def items_digest(identities: list[tuple[str | None, str | None]]) -> str:
    """The feed's item identities, order aside (each part length-prefixed: unambiguous)."""
    parts = sorted(f"{len(guid or '')}:{guid or ''}{len(url or '')}:{url or ''}"
                   for guid, url in identities)
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def _known(identity: tuple[str | None, str | None], guids: set[str], urls: set[str]) -> bool:
    """Whether an item is stored already, by its GUID (in this source) or canonical URL."""
    guid, url = identity
    return bool(guid and guid in guids) or bool(url and url in urls)


def _earliest_story(candidates: list[tuple[int, str, int | None]], fingerprint: list[int]
                    ) -> int | None:
    """The story of the earliest near-duplicate among the candidates, if there is one."""
    for other_id, other_sig, other_story in candidates:
        if other_sig and story.similarity(story.decode(other_sig), fingerprint) >= \
                story.SAME_STORY:
            return other_story or other_id
    return None


def _join_stories_within(ctx: Context, session: Any, stored: list[_Stored]) -> None:
    """A new article with no earlier near-duplicate in the store may have one earlier in the
    same feed (stored a moment before it, as one article at a time would find it)."""
    for index, current in enumerate(stored):
        if current.joined is not None or current.fingerprint is None or current.bands is None:
            continue
        for earlier in stored[:index]:
            if earlier.fingerprint is None or earlier.bands is None or \
                    not any(map(operator.eq, current.bands, earlier.bands)):
                continue                # no band in common: the store would not offer it
            if story.similarity(earlier.fingerprint, current.fingerprint) >= story.SAME_STORY:
                current.story_id = current.joined = earlier.story_id
                ctx.store.set_story(session, current.article_id, earlier.story_id)
                break


def _match_and_queue(ctx: Context, session: Any, source_id: str, stored: list[_Stored],
                     now: datetime, outcome: SourceOutcome) -> None:
    """The stored articles' matches in one insert, their outbox rows in another."""
    matches: list[dict[str, Any]] = []
    alerts: list[tuple[Matched, _Stored]] = []
    for item in stored:
        for found in item.prepared.matches:
            outcome.matches += 1
            outcome.matched_rules.append(found.rule_id)
            matches.append({"article_id": item.article_id, "rule_id": found.rule_id,
                            "explanation": found.explanation, "created_at": now})
            if _fresh(item.article, now, ctx.settings.alert_max_age):
                alerts.append((found, item))
    ctx.store.insert_matches(session, matches)
    deliveries = _deliveries(ctx, session, source_id, alerts, now)
    ctx.store.queue_deliveries(session, deliveries)
    outcome.queued += len(deliveries)


def _identity(article: Article) -> tuple[str | None, str | None]:
    """The (guid, canonical URL) an article is stored under, NUL-free for PostgreSQL."""
    canonical = canonical_url(article.url) if article.url else None
    guid = article.guid
    if not guid and not canonical:
        # Neither a GUID nor a link: the text is the only identity the item has.
        guid = "sha1:" + hashlib.sha1(f"{article.title}\n{article.summary}".encode()).hexdigest()
    return (index_key(clean_text(guid)) if guid else None,
            index_key(clean_text(canonical)) if canonical else None)


# PostgreSQL refuses a btree index entry over ~2,700 bytes, and that failure would take the
# feed's whole transaction with it; keys longer than this are stored as a prefix plus a hash.
KEY_BYTES = 2000


def index_key(value: str) -> str:
    """`value` itself when it fits an index entry, else a prefix and a hash of the whole."""
    if len(value) <= KEY_BYTES // 4 or len(value.encode()) <= KEY_BYTES:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    return value[:200] + "#sha256:" + digest


def article_record(source_id: str, article: Article, now: datetime,
                   fingerprint: list[int] | None, story_id: int | None = None,
                   identity: tuple[str | None, str | None] | None = None,
                   bands: list[int] | None = None) -> NewArticle:
    guid, canonical = identity or _identity(article)
    # Parsers already drop control characters; this is the last line before PostgreSQL,
    # which refuses NUL outright, whatever path an article took.
    return NewArticle(
        source_id=source_id, guid=guid, canonical_url=canonical, url=clean_text(article.url),
        title=clean_text(article.title), summary=clean_text(article.summary),
        body=clean_text(article.body),
        published=min(article.published, now) if article.published else None, fetched_at=now,
        minhash=story.encode(fingerprint) if fingerprint else None,
        bands=tuple(bands or story.bands(fingerprint)) if fingerprint else (),
        story_id=story_id)


def _fresh(article: Article, now: datetime, max_age: float) -> bool:
    return article.published is None or (now - article.published).total_seconds() <= max_age


def _deliveries(ctx: Context, session: Any, source_id: str,
                alerts: list[tuple[Matched, _Stored]], now: datetime) -> list[NewDelivery]:
    """Outbox rows for every subscriber following each matched rule, at most one per rule,
    story and subscriber: those already queued (before, or earlier in this feed) are left
    out, and a cooldown counts the rows queued earlier in this feed."""
    alerts = [(found, item) for found, item in alerts
              if any(subscriber.follows(found.rule_id) for subscriber in ctx.subscribers)]
    if not alerts:                      # no subscriber follows these rules: nothing to look up
        return []
    taken = ctx.store.queued_keys(session, [item.story_id for _, item in alerts])
    last_queued: dict[tuple[str, str], datetime] = {}
    out = []
    for found, item in alerts:
        for subscriber in ctx.subscribers:
            key = (found.rule_id, item.story_id, subscriber.name)
            if not subscriber.follows(found.rule_id) or key in taken:
                continue
            taken.add(key)
            delivery_id = "msg_" + secrets.token_hex(12)
            alert = deliver.make_alert(delivery_id, found, item.article, source_id,
                                       subscriber.name, now)
            due = deliver.first_attempt(ctx, session, subscriber, found.rule_id, now,
                                        last_queued.get((subscriber.name, found.rule_id)))
            last_queued[(subscriber.name, found.rule_id)] = now
            out.append(NewDelivery(
                id=delivery_id, rule_id=found.rule_id, story_id=item.story_id,
                article_id=item.article_id, subscriber=subscriber.name,
                channel=subscriber.channel, target=subscriber.target, next_attempt=due,
                created_at=now, payload=json.dumps(alert_dict(alert), ensure_ascii=False)))
    return out


def _success_state(ctx: Context, row: SourceRow, result: FetchResult, items: int,
                   new: int) -> FetchState:
    now = ctx.now()
    return FetchState(
        last_attempt=now, last_success=now, consecutive_failures=0, last_error=None,
        http_status=result.status, items_seen=items, articles_total=row.articles_total + new,
        etag=result.etag if result.etag else (row.etag if result.not_modified else None),
        last_modified=result.last_modified if result.last_modified else (
            row.last_modified if result.not_modified else None),
        content_hash=row.content_hash if result.not_modified else body_hash(result.body),
        next_due=now + timedelta(seconds=ctx.sources[row.id].interval), failure_alerted=False)


def record_quiet(ctx: Context, outcomes: list[SourceOutcome],
                 rows: dict[str, SourceRow]) -> None:
    """The fetch state of every source that brought nothing new (unchanged, or only items
    already stored), in one transaction: nothing else of theirs changed."""
    pending = [(o, o.state) for o in outcomes if o.state is not None]
    if not pending:
        return
    with ctx.store.session() as session:
        ctx.store.record_fetches(session, [(o.source_id, state) for o, state in pending])
        ctx.store.log_fetches(session, [
            fetch_entry(o.source_id, state.last_attempt, True, state.http_status,
                        0 if o.not_modified else state.items_seen,
                        not_modified=o.not_modified)
            for o, state in pending])
        for o, _ in pending:
            _tell_admin_recovered(ctx, session, rows[o.source_id])


def _tell_admin_failing(ctx: Context, session: Any, row: SourceRow, failures: int,
                        message: str) -> bool:
    """One alert to the admin when a source reaches N failures in a row; True if queued."""
    admin = _admin(ctx)
    if admin is None or row.failure_alerted or failures < ctx.settings.failure_alert_after:
        return False
    episode = row.failure_episodes + 1
    _queue_source_alert(ctx, session, admin, row, f"source-failure:{row.id}", episode,
                        f"Source {row.id} is failing",
                        f"{row.id} failed {failures} times in a row: {message}")
    return True


def _tell_admin_recovered(ctx: Context, session: Any, row: SourceRow) -> None:
    admin = _admin(ctx)
    if admin is None or not row.failure_alerted:
        return
    _queue_source_alert(ctx, session, admin, row, f"source-recovered:{row.id}",
                        row.failure_episodes, f"Source {row.id} recovered",
                        f"{row.id} is answering again")


def _admin(ctx: Context) -> SubscriberSpec | None:
    return next((s for s in ctx.subscribers if s.name == ctx.settings.admin), None)


def _queue_source_alert(ctx: Context, session: Any, admin: SubscriberSpec, row: SourceRow,
                        key: str, episode: int, title: str, text: str) -> None:
    now = ctx.now()
    delivery_id = "msg_" + secrets.token_hex(12)
    alert = deliver.source_alert(delivery_id, key, title, text, row.id, row.url, admin.name, now)
    ctx.store.queue_delivery(session, NewDelivery(
        id=delivery_id, rule_id=key, story_id=episode, article_id=None, subscriber=admin.name,
        channel=admin.channel, target=admin.target, next_attempt=now, created_at=now,
        payload=json.dumps(alert_dict(alert))))


def _record_failure(ctx: Context, row: SourceRow, exc: Exception) -> SourceOutcome:
    now = ctx.now()
    failures = row.consecutive_failures + 1
    message = str(exc) or type(exc).__name__
    status = getattr(exc, "status", None)
    state = FetchState(last_attempt=now, consecutive_failures=failures,
                       last_error=message[:1000], http_status=status)
    if getattr(exc, "gone", False):
        state = replace(state, disabled=True, last_error=f"disabled: {message}")
        log.error("source %s: %s; source disabled (remove it or fix the URL)", row.id, message)
    else:
        delay = source_delay(failures, ctx.sources[row.id].interval,
                             ctx.settings.fetch.backoff_max, getattr(exc, "retry_after", None),
                             random.Random())
        state = replace(state, next_due=now + timedelta(seconds=delay))
        log.warning("source %s: %s (failure %d in a row; next try in %.0f s)",
                    row.id, message, failures, delay)
    with ctx.store.session() as session:
        if _tell_admin_failing(ctx, session, row, failures, message):
            state = replace(state, failure_alerted=True,
                            failure_episodes=row.failure_episodes + 1)
        ctx.store.record_fetch(session, row.id, state)
        ctx.store.log_fetch(session, row.id, now, False, status, error=message[:1000])
    return SourceOutcome(row.id, False, error=message)
