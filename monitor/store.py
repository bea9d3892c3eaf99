"""The only module that talks SQL: SQLModel tables, and the queries the pipeline needs.

Identity is enforced by the database, not by Python: unique indexes decide "same article"
(source + GUID; canonical URL) and "already alerted" (rule x story x subscriber), and inserts
are INSERT ... ON CONFLICT DO NOTHING, so two processes racing on one item still make one row.
Deliveries are an outbox written in the same transaction as the article and its matches.
Times are stored as naive UTC and always come back timezone-aware.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence

from sqlalchemy import (JSON, BigInteger, Column, DateTime, Index, Integer, Text,
                        TypeDecorator, UniqueConstraint, any_, bindparam, case, cast, delete,
                        event, func, literal, literal_column, or_, text, union_all, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from monitor.errors import ConfigError
from monitor.records import (BANDS, DELIVERY_STATUSES, KEEP, NEW_ARTICLE_COLUMNS,
                             DeliveryStatus, DeliveryUpdate, FetchState,
                             NewArticle, NewDelivery)
from monitor.redact import masked_credentials, masked_passwords

LEASE = timedelta(minutes=10)
# Articles whose story candidates one statement looks up (8 band lookups each: 160 parts,
# within SQLite's 500 terms of a compound SELECT).
SIMILAR_BATCH = 20


class UTCDateTime(TypeDecorator[datetime]):
    """Stored naive in UTC (SQLite has no time zones), returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware times")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


def _time(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), **kw))


def _text() -> Any:
    return Field(default="", sa_column=Column(Text, nullable=False, default=""))


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"
    id: str = Field(primary_key=True)
    url: str
    kind: str = "auto"
    interval: float = 600.0
    next_due: datetime | None = _time(index=True)
    lease_owner: str | None = None
    lease_until: datetime | None = _time()
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None             # of the last body: an unchanged 200 is a 304
    # Of the last poll's item identities, every one of them stored by then: a feed listing
    # the same items again (a new body, nothing new) needs no lookup.
    items_hash: str | None = None
    last_attempt: datetime | None = _time()
    last_success: datetime | None = _time()
    consecutive_failures: int = 0
    last_error: str | None = None
    http_status: int | None = None
    items_seen: int = 0
    articles_total: int = 0
    disabled: bool = False
    failure_alerted: bool = False
    failure_episodes: int = 0                   # how many times admins were told it failed


class ArticleRow(SQLModel, table=True):
    __tablename__ = "articles"
    # Each band is indexed together with the id, so "the latest 20 with this band" is one
    # index range on both backends (a band index alone lets PostgreSQL walk the primary key).
    __table_args__ = (UniqueConstraint("source_id", "guid", name="uq_article_source_guid"),
                      UniqueConstraint("canonical_url", name="uq_article_canonical_url"),
                      *(Index(f"ix_articles_band{i}_id", f"band{i}", "id") for i in range(8)))
    id: int | None = Field(default=None, primary_key=True)
    source_id: str = Field(index=True)
    guid: str | None = None
    canonical_url: str | None = None
    url: str = ""
    title: str = _text()
    summary: str = _text()
    body: str = _text()
    published: datetime | None = _time()
    fetched_at: datetime | None = _time(index=True)
    minhash: str | None = None                   # story.py signature, comma-separated
    band0: int | None = Field(default=None, sa_column=Column(BigInteger))
    band1: int | None = Field(default=None, sa_column=Column(BigInteger))
    band2: int | None = Field(default=None, sa_column=Column(BigInteger))
    band3: int | None = Field(default=None, sa_column=Column(BigInteger))
    band4: int | None = Field(default=None, sa_column=Column(BigInteger))
    band5: int | None = Field(default=None, sa_column=Column(BigInteger))
    band6: int | None = Field(default=None, sa_column=Column(BigInteger))
    band7: int | None = Field(default=None, sa_column=Column(BigInteger))
    story_id: int | None = Field(default=None, index=True)


class MatchRow(SQLModel, table=True):
    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("article_id", "rule_id", name="uq_match_article_rule"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="articles.id", index=True)
    rule_id: str = Field(index=True)
    explanation: str = _text()
    created_at: datetime | None = _time(index=True)


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("rule_id", "story_id", "subscriber",
                                       name="uq_delivery_rule_story_subscriber"),
                      Index("ix_deliveries_due", "status", "next_attempt"))
    id: str = Field(primary_key=True)           # stable: webhook-id and Message-ID on every try
    rule_id: str
    story_id: int
    article_id: int | None = Field(default=None, foreign_key="articles.id")  # None: source alert
    subscriber: str = Field(index=True)
    channel: str
    target: str
    status: str = "pending"                      # a DeliveryStatus
    attempts: int = 0
    next_attempt: datetime | None = _time()
    last_error: str | None = None
    created_at: datetime | None = _time(index=True)
    sent_at: datetime | None = _time()
    lease_owner: str | None = None
    lease_until: datetime | None = _time()
    payload: str = _text()


class EndpointRow(SQLModel, table=True):
    """A subscriber endpoint switched off by its own server (webhook 410 Gone)."""

    __tablename__ = "disabled_endpoints"
    subscriber: str = Field(primary_key=True)
    target: str
    reason: str
    disabled_at: datetime | None = _time()


class FetchLogRow(SQLModel, table=True):
    """One fetch of one source: the history the dashboard shows (kept HISTORY_DAYS)."""

    __tablename__ = "fetch_log"
    __table_args__ = (Index("ix_fetch_log_source_at", "source_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: str
    at: datetime | None = _time(index=True)
    ok: bool = True
    not_modified: bool = False
    http_status: int | None = None
    items: int = 0
    new: int = 0
    error: str | None = None


class AttemptRow(SQLModel, table=True):
    """One attempt to send one delivery, with its outcome (kept HISTORY_DAYS)."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str
    at: datetime | None = _time(index=True)
    status: str
    error: str | None = None


HISTORY_DAYS = 14


# --- opening ----------------------------------------------------------------------------------

def make_engine(url: str) -> Engine:
    """An engine tuned for its backend. SQLite: WAL, busy timeout, writes BEGIN IMMEDIATE."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=5, max_overflow=5)
    event.listen(engine, "checkin", _returned)

    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _ping_if_idle(engine.dialect, dbapi_connection, record)

    event.listen(engine, "checkout", ping_if_idle)
    return engine


# A pooled PostgreSQL connection idle this long is checked before use (one round trip);
# one back in the pool for less is used as it is. pool_pre_ping checked every checkout: on a
# feed with nothing new, the ping cost as much as the feed's own lookup.
IDLE_PING = 5.0


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info["returned"] = time.monotonic()


def _ping_if_idle(dialect: Any, dbapi_connection: Any, record: Any) -> None:
    """A connection the server may have dropped while it sat in the pool (a restart, an idle
    timeout) is replaced before use: DisconnectionError makes the pool connect again."""
    returned = record.info.get("returned")
    if returned is None or time.monotonic() - returned < IDLE_PING:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as exc:  # noqa: BLE001 (any failure: a connection not to be used)
        raise DisconnectionError(f"pooled connection dropped: {exc}") from exc


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so BEGIN IMMEDIATE below is the
    # only BEGIN: a write transaction takes the lock at its start instead of failing midway.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # The log is copied back into the database every 10,000 pages (40 MB) rather than
    # SQLite's 1,000: a feed's insert dirties ~200 index pages at random places, so the
    # default checkpointed (and synced) every few feeds; 12% more articles/s (bench_store).
    # A page cache of up to 64 MB rather than 2 MB holds a group commit's dirty pages until
    # its commit (the default spilled them to the log midway, and wrote them again) and the
    # index pages the next feeds will touch: 10-18% more new articles/s with group commit, no
    # gain without it (bench_store.py, interleaved runs). Temporary files in memory: SQLite
    # keeps the original of every page a savepoint changes (to roll it back) in a
    # sub-journal, which past 64 KB went to a file under /var/tmp: two thirds of the
    # writer's pwrite calls (strace) when every feed of a group had a savepoint (now only a
    # group written again after one of its feeds failed: groupcommit.py). A group's
    # sub-journal is at most its dirty pages (a few MB) and is dropped at its commit; ~5%
    # less CPU per new article in the main thread then (interleaved runs, normalised by the
    # worker's CPU).
    for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL",
                   "foreign_keys=ON", "wal_autocheckpoint=10000", "cache_size=-65536",
                   "temp_store=MEMORY"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A read (Store.reading) takes no write lock: a deferred transaction.
    read_only = connection.get_execution_options().get("read_only")
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def fetch_entry(source_id: str, at: datetime, ok: bool, http_status: int | None,
                items: int = 0, new: int = 0, error: str | None = None,
                not_modified: bool = False) -> dict[str, Any]:
    """One row of the fetch history."""
    return dict(source_id=source_id, at=at, ok=ok, http_status=http_status, items=items,
                new=new, error=error, not_modified=not_modified)


@dataclass
class Store:
    """Queries over one database. Build it with `open_store`; pass it in, never import it."""

    engine: Engine
    _fetch_updates: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)
    # PostgreSQL without autovacuum (`_analyzes`): articles stored since this process last
    # analyzed the table, and the rows that analysis counted.
    _analyzes: bool | None = field(default=None, repr=False)
    _unanalyzed: int = field(default=0, repr=False)
    _analyzed_rows: int = field(default=0, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table: Any) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))

    # Statements on the hot path are built once, on the Core tables, and executed with plain
    # parameters: building an ORM insert per row costs more than SQLite takes to run it.

    def _among(self, column: Any, name: str, kind: Any) -> Any:
        """`column` is one of the list bound as `name`, given as one parameter so the
        statement's text never changes (an IN list of up to 160 parameters cost more to render
        and plan than to run): a PostgreSQL array, or for SQLite, which has no arrays, a JSON
        array read by json_each (each value still found through the column's index)."""
        if self.dialect == "postgresql":
            return column == any_(bindparam(name, type_=postgresql.ARRAY(kind)))
        values: Any = select(literal_column("value")).select_from(
            func.json_each(bindparam(name, type_=JSON)))
        return column.in_(values.scalar_subquery())

    def _rows_insert(self, table: Any, columns: Sequence[str]) -> Any:
        """An INSERT of many rows that skips those already stored. On PostgreSQL the rows come
        as one array per column, unnested: the statement's text is the same for any number of
        rows, so psycopg parses it and the server plans it once (a multi-row VALUES list,
        whose text grows with the rows, was parsed again for every feed). Execute it with
        `_rows_params`."""
        if self.dialect != "postgresql":
            return self.insert(table).on_conflict_do_nothing()
        kinds = [postgresql.ARRAY(table.c[name].type) for name in columns]
        rows = func.unnest(*(cast(bindparam(name, type_=kind), kind) for name, kind
                             in zip(columns, kinds, strict=True))
                           ).table_valued(*columns).render_derived("rows")
        return postgresql.insert(table).from_select(
            list(columns), select(*rows.c)).on_conflict_do_nothing()

    def _rows_params(self, rows: Sequence[dict[str, Any]]) -> Any:
        """The parameters of a `_rows_insert`: the rows themselves, or on PostgreSQL one list
        per column."""
        if self.dialect != "postgresql":
            return list(rows)
        return {name: [row[name] for row in rows] for name in rows[0]}

    @cached_property
    def _insert_match(self) -> Any:
        return self.insert(MatchRow.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]

    @cached_property
    def _insert_delivery(self) -> Any:
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        return self.insert(table).on_conflict_do_nothing().returning(table.c.id)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read outside any write transaction: on SQLite without the write lock, on
        PostgreSQL in autocommit (no BEGIN and COMMIT round trips around the query)."""
        options = {"isolation_level": "AUTOCOMMIT"} if self.dialect == "postgresql" \
            else {"read_only": True}
        with self.engine.connect().execution_options(**options) as connection:
            yield connection

    def stored_articles(self, count: int) -> None:
        """Keep the planner's view of `articles` current on a PostgreSQL server that does
        not (autovacuum off): analyzed after 50 new rows plus three times those last counted
        (at 50, 200, 800... rows: plans settle while the table is small; reading a sample of
        a large table is not free). Without it, a new database's lookups were planned once,
        while the table was empty, as sequential scans, and stayed so (484 duplicates/s
        instead of 29,000 in bench_store.py)."""
        if self.dialect != "postgresql" or count <= 0:
            return
        if self._analyzes is None:
            with self.reading() as connection:
                self._analyzes = connection.exec_driver_sql(
                    "SHOW autovacuum").scalar_one() != "on"
        if not self._analyzes:
            return
        self._unanalyzed += count
        if self._unanalyzed < 50 + 3 * self._analyzed_rows:
            return
        with self.reading() as connection:
            connection.exec_driver_sql("ANALYZE articles")
            self._analyzed_rows = int(connection.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = 'articles'::regclass").scalar_one())
        self._unanalyzed = 0

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except OperationalError:
            return False

    # -- sources --

    def sync_sources(self, specs: Sequence[Any], now: datetime) -> None:
        """Make the table follow the sources file: new sources are due now."""
        with self.session() as session:
            for spec in specs:
                values = dict(id=spec.id, url=spec.url, kind=spec.kind, interval=spec.interval,
                              next_due=now)
                statement = self.insert(SourceRow).values(**values)
                table = SourceRow.__table__
                # A new URL is a new start: a source switched off by 410 Gone, or backed off
                # after failures, at its old address is polled again at once at the new one.
                moved = table.c.url != statement.excluded.url
                fresh = {name: case((moved, value), else_=table.c[name]) for name, value in (
                    ("disabled", False), ("consecutive_failures", 0), ("next_due", now),
                    ("last_error", None), ("etag", None), ("last_modified", None),
                    ("content_hash", None), ("items_hash", None))}
                statement = statement.on_conflict_do_update(
                    index_elements=["id"],
                    set_=dict(fresh, url=spec.url, kind=spec.kind, interval=spec.interval))
                session.execute(statement)

    def claim_due_sources(self, ids: Sequence[str], now: datetime, owner: str,
                          everything: bool = False, exclude: Sequence[str] = (),
                          limit: int = 10_000) -> list[SourceRow]:
        """Take a lease on due sources (SKIP LOCKED on PostgreSQL: replicas never collide).

        `everything` claims every enabled source whatever its due time (`news-monitor once`).
        """
        with self.session() as session:
            query = select(SourceRow).where(
                SourceRow.id.in_(list(ids)), SourceRow.disabled == False,  # noqa: E712
                or_(SourceRow.lease_until == None, SourceRow.lease_until < now))  # noqa: E711
            if not everything:
                query = query.where(or_(SourceRow.next_due == None,  # noqa: E711
                                        SourceRow.next_due <= now))
            if exclude:
                query = query.where(SourceRow.id.not_in(list(exclude)))
            query = query.order_by(SourceRow.next_due).limit(limit)
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(session.exec(query))
            for row in rows:
                row.lease_owner, row.lease_until = owner, now + LEASE
                session.add(row)
        return rows

    def release_dead_leases(self, host: str, alive: Any, now: datetime) -> int:
        """Free leases held by processes of this host that no longer run (crashed, killed).

        Owners are "host:pid:token"; a lease of another host is left to expire on its own.
        """
        freed = 0
        with self.session() as session:
            for table in (SourceRow, DeliveryRow):
                owners = session.execute(select(table.lease_owner).distinct().where(
                    table.lease_owner.like(f"{host}:%"), table.lease_until > now)).scalars()
                dead = [o for o in owners if not alive(int(o.split(":")[1]))]
                if dead:
                    result = session.execute(update(table).where(table.lease_owner.in_(dead))
                                             .values(lease_owner=None, lease_until=None))
                    freed += result.rowcount or 0  # type: ignore[attr-defined]
        return freed

    def sources(self) -> list[SourceRow]:
        with self.session() as session:
            return list(session.exec(select(SourceRow).order_by(SourceRow.id)))

    def source(self, source_id: str) -> SourceRow | None:
        with self.session() as session:
            return session.get(SourceRow, source_id)

    # -- articles, matches, deliveries: a whole feed at once, inside its one transaction --

    @cached_property
    def _known_many(self) -> Any:
        """Which of many (source, GUID) pairs and canonical URLs are stored: the pairs joined
        to the (source_id, guid) unique index, the URLs looked up in theirs, each list one
        parameter (a PostgreSQL array, a JSON array on SQLite) so the text never changes."""
        if self.dialect == "postgresql":
            return text(
                "SELECT a.source_id, a.guid, a.canonical_url FROM unnest("
                "CAST(:sources AS text[]), CAST(:guids AS text[])) AS p(source_id, guid) "
                "JOIN articles AS a ON a.source_id = p.source_id AND a.guid = p.guid "
                "UNION ALL SELECT source_id, guid, canonical_url FROM articles "
                "WHERE canonical_url = ANY(CAST(:urls AS text[]))")
        # CROSS JOIN: the pairs drive the loop, each one probe of the unique index.
        return text(
            "SELECT a.source_id, a.guid, a.canonical_url FROM json_each(:pairs) AS p "
            "CROSS JOIN articles AS a ON a.source_id = json_extract(p.value, '$[0]') "
            "AND a.guid = json_extract(p.value, '$[1]') "
            "UNION ALL SELECT source_id, guid, canonical_url FROM articles "
            "WHERE canonical_url IN (SELECT value FROM json_each(:urls))")

    def known_many(self, connection: Connection,
                   feeds: Sequence[tuple[str, Sequence[tuple[str | None, str | None]]]]
                   ) -> tuple[set[tuple[str, str]], set[str]]:
        """Of several feeds' (source, [(guid, canonical URL)]), the (source, GUID) pairs and
        the canonical URLs stored already, in one indexed statement."""
        pairs = sorted({(source, guid) for source, identities in feeds
                        for guid, _ in identities if guid})
        urls = sorted({url for _, identities in feeds for _, url in identities if url})
        if not pairs and not urls:
            return set(), set()
        params: dict[str, Any] = (
            {"sources": [source for source, _ in pairs], "guids": [guid for _, guid in pairs],
             "urls": urls} if self.dialect == "postgresql"
            else {"pairs": json.dumps(pairs), "urls": json.dumps(urls)})
        known_pairs: set[tuple[str, str]] = set()
        known_urls: set[str] = set()
        for source, guid, url in connection.execute(self._known_many, params):
            if guid is not None:
                known_pairs.add((source, guid))
            if url is not None:
                known_urls.add(url)
        return known_pairs, known_urls

    @cached_property
    def _insert_articles(self) -> Any:
        table = ArticleRow.__table__  # type: ignore[attr-defined]
        return self._rows_insert(table, NEW_ARTICLE_COLUMNS).returning(
            table.c.id, table.c.guid, table.c.canonical_url)

    def insert_articles(self, session: Session, articles: Sequence[NewArticle]
                        ) -> dict[tuple[str | None, str | None], int]:
        """Insert a feed's new articles in one statement; the id of each one inserted, by its
        (guid, canonical URL). One already stored (a concurrent writer won) is left out."""
        if not articles:
            return {}
        rows = session.connection().execute(self._insert_articles, self._rows_params(
            [article.values() for article in articles]))
        return {(row.guid, row.canonical_url): row.id for row in rows}

    def set_story(self, session: Session, article_id: int, story_id: int) -> None:
        session.connection().execute(self._set_story, {"article": article_id, "story": story_id})

    @cached_property
    def _set_story(self) -> Any:
        table = ArticleRow.__table__  # type: ignore[attr-defined]
        return update(table).where(table.c.id == bindparam("article")).values(
            story_id=bindparam("story"))

    @cached_property
    def _similar_many(self) -> Any:
        """SIMILAR_BATCH articles' story candidates in one statement: per article and band,
        the 20 most recent articles sharing it (one index range each: a story carried a
        thousand times costs no more), tagged with the article's place. Unused places get
        NULL bands, which match nothing."""
        table = ArticleRow.__table__  # type: ignore[attr-defined]
        columns = (table.c.id, table.c.minhash, table.c.story_id, table.c.fetched_at)
        parts = [select(literal(slot).label("slot"), *columns)
                 .where(table.c[f"band{band}"] == bindparam(f"b{slot}_{band}"))
                 .order_by(table.c.id.desc()).limit(20).subquery()
                 for slot in range(SIMILAR_BATCH) for band in range(BANDS)]
        return union_all(*(select(part) for part in parts))

    @cached_property
    def _bands_present(self) -> Any:
        """Which of these band values are stored at all, per band: a cheap first look, since
        most articles (no other outlet carries them) have none."""
        table = ArticleRow.__table__  # type: ignore[attr-defined]
        return union_all(*(
            select(literal(band).label("band"), table.c[f"band{band}"].label("value"))
            .where(self._among(table.c[f"band{band}"], f"v{band}", BigInteger))
            .distinct() for band in range(BANDS)))

    def similar_many(self, session: Session, bands: Sequence[Sequence[int] | None],
                     since: datetime) -> list[list[tuple[int, str, int | None]]]:
        """For each article's bands (None: no fingerprint), the (id, minhash, story_id) of
        articles since a time sharing a band with it, oldest first: per band, the 20 most
        recent. Two statements when any band is shared, one when none is."""
        out: list[list[tuple[int, str, int | None]]] = [[] for _ in bands]
        if not any(bands):
            return out
        present = {(row.band, row.value) for row in session.connection().execute(
            self._bands_present, {f"v{band}": sorted({b[band] for b in bands if b})
                                  for band in range(BANDS)}).all()}
        if not present:
            return out
        shared = [[value if (band, value) in present else None for band, value in enumerate(b)]
                  if b else None for b in bands]
        for first in range(0, len(bands), SIMILAR_BATCH):
            chunk = shared[first:first + SIMILAR_BATCH]
            if not any(value is not None for b in chunk if b for value in b):
                continue
            params = {f"b{slot}_{band}": chunk[slot][band]  # type: ignore[index]
                      if slot < len(chunk) and chunk[slot] else None
                      for slot in range(SIMILAR_BATCH) for band in range(BANDS)}
            found: dict[int, set[tuple[int, str, int | None]]] = defaultdict(set)
            for row in session.connection().execute(self._similar_many, params).all():
                if row.fetched_at is not None and row.fetched_at >= since:
                    found[row.slot].add((row.id, row.minhash, row.story_id))
            for slot, rows in found.items():
                out[first + slot] = sorted(rows)
        return out

    def insert_matches(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """A feed's matches, each {article_id, rule_id, explanation (JSON text), created_at}."""
        if rows:
            session.connection().execute(self._insert_match, rows)

    @cached_property
    def _queued(self) -> Any:
        table = DeliveryRow.__table__  # type: ignore[attr-defined]
        return select(table.c.rule_id, table.c.story_id, table.c.subscriber).where(
            self._among(table.c.story_id, "stories", Integer))

    def queued_keys(self, session: Session, story_ids: Sequence[int]
                    ) -> set[tuple[str, int, str]]:
        """(rule, story, subscriber) of the outbox rows already there for these stories."""
        if not story_ids:
            return set()
        rows = session.connection().execute(self._queued, {"stories": sorted(set(story_ids))})
        return {(row.rule_id, row.story_id, row.subscriber) for row in rows}

    def queue_deliveries(self, session: Session, deliveries: Sequence[NewDelivery]) -> None:
        """A feed's outbox rows in one statement (the unique index still settles a race)."""
        if deliveries:
            session.connection().execute(self._insert_deliveries,
                                         [delivery.values() for delivery in deliveries])

    @cached_property
    def _insert_deliveries(self) -> Any:
        return self.insert(DeliveryRow.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]

    def queue_delivery(self, session: Session, delivery: NewDelivery) -> bool:
        """Add one outbox row; False when this rule x story x subscriber was already queued."""
        inserted = session.connection().execute(self._insert_delivery, delivery.values())
        return inserted.scalar_one_or_none() is not None

    def last_delivery_time(self, session: Session, subscriber: str, rule_id: str
                           ) -> datetime | None:
        query = select(func.max(DeliveryRow.created_at)).where(
            DeliveryRow.subscriber == subscriber, DeliveryRow.rule_id == rule_id)
        return session.execute(query).scalar_one_or_none()

    def story_outlets(self, story_id: int) -> list[tuple[str, str, str]]:
        """(source id, url, title) of every article of a story, oldest first."""
        with self.session() as session:
            query = (select(ArticleRow.source_id, ArticleRow.url, ArticleRow.title)
                     .where(or_(ArticleRow.story_id == story_id, ArticleRow.id == story_id))
                     .order_by(ArticleRow.id))
            return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]

    def record_fetch(self, session: Session, source_id: str, state: FetchState) -> None:
        self.record_fetches(session, [(source_id, state)])

    def record_fetches(self, session: Session, states: Sequence[tuple[str, FetchState]]
                       ) -> None:
        """Sources' fetch states, one executemany per set of written columns."""
        by_columns: defaultdict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for source_id, state in states:
            values = {"lease_owner": None, "lease_until": None, **state.values()}
            by_columns[tuple(sorted(values))].append({"source_key": source_id, **values})
        for columns, rows in by_columns.items():
            session.connection().execute(self._fetch_update(columns), rows)

    def _fetch_update(self, columns: tuple[str, ...]) -> Any:
        """The sources update for one set of written columns, built (and compiled) once."""
        statement = self._fetch_updates.get(columns)
        if statement is None:
            table = SourceRow.__table__  # type: ignore[attr-defined]
            statement = self._fetch_updates[columns] = update(table).where(
                table.c.id == bindparam("source_key")).values(
                {name: bindparam(name) for name in columns})
        return statement

    # -- the outbox sender's side --

    def claim_deliveries(self, now: datetime, owner: str, limit: int,
                         exclude: Sequence[str] = ()) -> list[DeliveryRow]:
        """Lease due deliveries; `exclude` holds ids this pass already tried."""
        with self.session() as session:
            query = (select(DeliveryRow)
                     .where(DeliveryRow.status == "pending", DeliveryRow.next_attempt <= now,
                            or_(DeliveryRow.lease_until == None,  # noqa: E711
                                DeliveryRow.lease_until < now))
                     .order_by(DeliveryRow.next_attempt).limit(limit))
            if exclude:
                query = query.where(DeliveryRow.id.not_in(list(exclude)))
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(session.exec(query))
            for row in rows:
                row.lease_owner, row.lease_until = owner, now + LEASE
                session.add(row)
        return rows

    def finish_delivery(self, delivery_id: str, outcome: DeliveryUpdate,
                        now: datetime | None = None) -> None:
        """Record an attempt's outcome (and, with `now`, the attempt in the history)."""
        with self.session() as session:
            session.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(
                lease_owner=None, lease_until=None, **outcome.values()))
            if now is not None:
                status = outcome.status if outcome.status is not KEEP else "pending"
                error = outcome.last_error if outcome.last_error is not KEEP else None
                session.execute(self.insert(AttemptRow).values(
                    delivery_id=delivery_id, at=now, status=status, error=error))

    def log_fetch(self, session: Session, source_id: str, now: datetime, ok: bool,
                  http_status: int | None, items: int = 0, new: int = 0,
                  error: str | None = None, not_modified: bool = False) -> None:
        self.log_fetches(session, [fetch_entry(source_id, now, ok, http_status, items, new,
                                               error, not_modified)])

    def log_fetches(self, session: Session, entries: Sequence[dict[str, Any]]) -> None:
        """Fetch history rows (`fetch_entry`), in one statement."""
        if entries:
            session.connection().execute(self._insert_fetch_log, list(entries))

    @cached_property
    def _insert_fetch_log(self) -> Any:
        return self.insert(FetchLogRow.__table__)  # type: ignore[attr-defined]

    def prune_history(self, before: datetime) -> None:
        """Fetch and attempt history older than `before` goes (the rows it describes stay)."""
        with self.session() as session:
            session.execute(delete(FetchLogRow).where(FetchLogRow.at < before))
            session.execute(delete(AttemptRow).where(AttemptRow.at < before))

    def deliveries(self, statuses: Sequence[DeliveryStatus] = DELIVERY_STATUSES,
                   limit: int = 200) -> list[DeliveryRow]:
        with self.session() as session:
            query = (select(DeliveryRow).where(DeliveryRow.status.in_(list(statuses)))
                     .order_by(DeliveryRow.created_at).limit(limit))
            return list(session.exec(query))

    def retry_deliveries(self, now: datetime, delivery_id: str | None = None,
                         all_dead: bool = False) -> int:
        """Put deliveries back to pending, due now. Returns how many."""
        with self.session() as session:
            statement = update(DeliveryRow).values(status="pending", next_attempt=now,
                                                   lease_owner=None, lease_until=None)
            if delivery_id:
                statement = statement.where(DeliveryRow.id == delivery_id)
            elif all_dead:
                statement = statement.where(DeliveryRow.status == "dead")
            else:
                return 0
            return session.execute(statement).rowcount or 0  # type: ignore[attr-defined]

    def count_deliveries(self) -> dict[str, int]:
        with self.session() as session:
            query = select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
            return {status: count for status, count in session.execute(query)}

    def disable_endpoint(self, subscriber: str, target: str, reason: str, now: datetime) -> None:
        with self.session() as session:
            session.execute(self.insert(EndpointRow).values(
                subscriber=subscriber, target=target, reason=reason, disabled_at=now
            ).on_conflict_do_nothing())
            session.execute(update(DeliveryRow).where(
                DeliveryRow.subscriber == subscriber, DeliveryRow.status == "pending"
            ).values(status="disabled", last_error=reason))

    def cancel_deliveries(self, subscribers: Sequence[str], reason: str) -> int:
        """Pending deliveries of removed subscribers become 'cancelled' (kept, shown as such)."""
        if not subscribers:
            return 0
        with self.session() as session:
            result = session.execute(update(DeliveryRow).where(
                DeliveryRow.subscriber.in_(list(subscribers)),  # type: ignore[attr-defined]
                DeliveryRow.status == "pending").values(status="cancelled", last_error=reason,
                                                        lease_owner=None, lease_until=None))
            return int(result.rowcount or 0)

    def enable_source(self, source_id: str, now: datetime) -> bool:
        """A disabled or backed-off source is polled again at once (dashboard action)."""
        with self.session() as session:
            result = session.execute(update(SourceRow).where(SourceRow.id == source_id).values(
                disabled=False, consecutive_failures=0, next_due=now, last_error=None))
            return bool(result.rowcount)

    def enable_endpoint(self, subscriber: str, now: datetime) -> int:
        """A subscriber endpoint switched off by 410 Gone takes deliveries again; its
        deliveries switched off with it are queued again. Returns how many."""
        with self.session() as session:
            session.execute(delete(EndpointRow).where(EndpointRow.subscriber == subscriber))
            result = session.execute(update(DeliveryRow).where(
                DeliveryRow.subscriber == subscriber, DeliveryRow.status == "disabled"
            ).values(status="pending", next_attempt=now, last_error=None))
            return int(result.rowcount or 0)

    def disabled_endpoints(self) -> dict[str, str]:
        with self.session() as session:
            return {row.subscriber: row.target for row in session.exec(select(EndpointRow))}

    # -- reading articles back --

    def recent_articles(self, since: datetime, batch: int = 500) -> Iterator[ArticleRow]:
        """Articles fetched since a time, streamed in id order (never a whole-table load)."""
        last_id = 0
        while True:
            with self.session() as session:
                rows = list(session.exec(select(ArticleRow).where(
                    ArticleRow.fetched_at >= since, ArticleRow.id > last_id  # type: ignore[operator]
                ).order_by(ArticleRow.id).limit(batch)))
            if not rows:
                return
            yield from rows
            last_id = rows[-1].id or last_id

    def counts_since(self, since: datetime) -> dict[str, int]:
        with self.session() as session:
            articles = session.execute(select(func.count()).select_from(ArticleRow).where(
                ArticleRow.fetched_at >= since)).scalar_one()
            alerts = session.execute(select(func.count()).select_from(DeliveryRow).where(
                DeliveryRow.created_at >= since)).scalar_one()
            matches = session.execute(select(func.count()).select_from(MatchRow).where(
                MatchRow.created_at >= since)).scalar_one()
        return {"articles": articles, "alerts": alerts, "matches": matches}


def open_store(url: str, upgrade: bool = True) -> Store:
    """Open the database; a new one gets the schema, an old one must be upgraded first."""
    from monitor import migrations
    store = Store(make_engine(url))
    try:
        migrations.ensure_current(store.engine, upgrade_empty=upgrade)
    except OperationalError as exc:
        raise ConfigError(f"cannot open database {masked_credentials(url)}: "
                          f"{masked_passwords(str(exc.orig))}") from None
    return store
