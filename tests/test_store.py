"""The store on SQLite and PostgreSQL: identity enforced by the database, leases, schema."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from monitor.config import SourceSpec
from monitor.errors import ConfigError
from monitor.models import Article
from monitor.pipeline import article_record
from monitor.records import DeliveryUpdate, NewDelivery
from monitor.store import Store, make_engine, open_store

pytestmark = pytest.mark.store
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def stored(store: Store) -> int:
    with store.session() as session:
        return session.execute(text("SELECT count(*) FROM articles")).scalar_one()


def add(store: Store, source: str, article: Article) -> int | None:
    with store.session() as session:
        record = article_record(source, article, NOW, None)
        return store.insert_articles(session, [record]).get((record.guid, record.canonical_url))


def test_same_guid_in_a_source_is_stored_once(database_url: str) -> None:
    store = open_store(database_url)
    first = add(store, "a", Article(url="https://x.org/1", title="One", guid="g-1"))
    again = add(store, "a", Article(url="https://x.org/1?v=2", title="One again", guid="g-1"))
    other_source = add(store, "b", Article(url="https://y.org/1", title="One", guid="g-1"))
    assert first is not None and again is None and other_source is not None
    assert stored(store) == 2


def test_same_canonical_url_anywhere_is_stored_once(database_url: str) -> None:
    store = open_store(database_url)
    assert add(store, "a", Article(url="https://News.example.org/s?utm_source=x#top",
                                   title="S", guid="a-1"))
    assert add(store, "b", Article(url="https://news.example.org/s?fbclid=123",
                                   title="S", guid="b-1")) is None
    assert stored(store) == 1


def test_nul_characters_are_stripped(database_url: str) -> None:
    store = open_store(database_url)
    assert add(store, "a", Article(url="https://x.org/nul\x00", title="Ti\x00tle",
                                   summary="a\x00b", guid="n\x00ul"))
    with store.session() as session:
        title = session.execute(text("SELECT title FROM articles")).scalar_one()
    assert title == "Title"


def test_times_come_back_timezone_aware(database_url: str) -> None:
    store = open_store(database_url)
    add(store, "a", Article(url="https://x.org/t", title="T", published=NOW))
    published = next(store.recent_articles(NOW - timedelta(days=1))).published
    assert published == NOW and published.tzinfo is not None


def test_a_time_in_another_zone_is_stored_as_the_same_instant(database_url: str) -> None:
    store = open_store(database_url)
    east = timezone(timedelta(hours=5, minutes=30))
    add(store, "a", Article(url="https://x.org/e", title="E", published=NOW.astimezone(east)))
    assert next(store.recent_articles(NOW - timedelta(days=1))).published == NOW


def test_text_with_quotes_braces_and_backslashes_is_stored_as_written(database_url: str
                                                                     ) -> None:
    # PostgreSQL receives a feed's articles as one array per column: array-literal syntax
    # in the values must come back untouched.
    store = open_store(database_url)
    title = 'He said "no", {x} \\ back\\slash, NULL'
    add(store, "a", Article(url="https://x.org/q", title=title, summary="NULL"))
    row = next(store.recent_articles(NOW - timedelta(days=1)))
    assert (row.title, row.summary) == (title, "NULL")


def test_a_feed_of_hundreds_of_new_items_is_stored_whole(database_url: str) -> None:
    store = open_store(database_url)
    records = [article_record("a", Article(url=f"https://x.org/{n}", title=f"T{n}",
                                           guid=f"g{n}"), NOW, None) for n in range(450)]
    with store.session() as session:
        ids = store.insert_articles(session, records)
        again = store.insert_articles(session, records[440:] + [
            article_record("a", Article(url="https://x.org/new", title="New", guid="new"),
                           NOW, None)])
    assert len(ids) == 450 and len(set(ids.values())) == 450
    assert list(again) == [("new", "https://x.org/new")]
    assert stored(store) == 451


def test_one_delivery_per_rule_story_and_subscriber(database_url: str) -> None:
    store = open_store(database_url)
    article_id = add(store, "a", Article(url="https://x.org/d", title="D"))
    assert article_id is not None

    def delivery(delivery_id: str, subscriber: str = "s") -> NewDelivery:
        return NewDelivery(id=delivery_id, rule_id="r", story_id=article_id,
                           article_id=article_id, subscriber=subscriber, channel="webhook",
                           target="https://h", next_attempt=NOW, created_at=NOW, payload="{}")
    with store.session() as session:
        assert store.queue_delivery(session, delivery("msg_1"))
        assert not store.queue_delivery(session, delivery("msg_2"))
        assert store.queue_delivery(session, delivery("msg_3", subscriber="gone"))
    assert store.count_deliveries() == {"pending": 2}
    # An update record writes only what it names; cancelling leaves the others alone.
    store.finish_delivery("msg_1", DeliveryUpdate(attempts=1, last_error="HTTP 500"))
    assert store.cancel_deliveries(["gone"], "subscriber removed") == 1
    rows = {row.id: row for row in store.deliveries()}
    assert (rows["msg_1"].status, rows["msg_1"].attempts, rows["msg_1"].last_error) == \
        ("pending", 1, "HTTP 500")
    assert (rows["msg_3"].status, rows["msg_3"].last_error) == ("cancelled", "subscriber removed")


def test_replicas_never_claim_the_same_source(database_url: str) -> None:
    store = open_store(database_url)
    specs = [SourceSpec(id=f"s{n}", url=f"https://x.org/{n}") for n in range(60)]
    store.sync_sources(specs, NOW)
    ids = [s.id for s in specs]
    claimed: dict[str, list[str]] = {}

    def replica(name: str) -> None:
        own = Store(make_engine(database_url))
        mine: list[str] = []
        while batch := own.claim_due_sources(ids, NOW, name, limit=5):
            mine += [row.id for row in batch]
        claimed[name] = mine

    threads = [threading.Thread(target=replica, args=(f"r{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for mine in claimed.values() for i in mine]
    assert sorted(everything) == sorted(ids)           # each claimed once, none lost


def test_a_lease_expires_and_another_replica_takes_over(database_url: str) -> None:
    store = open_store(database_url)
    store.sync_sources([SourceSpec(id="s", url="https://x.org/")], NOW)
    assert [r.id for r in store.claim_due_sources(["s"], NOW, "dead-replica")] == ["s"]
    assert store.claim_due_sources(["s"], NOW + timedelta(minutes=5), "other") == []
    later = store.claim_due_sources(["s"], NOW + timedelta(minutes=11), "other")
    assert [r.lease_owner for r in later] == ["other"]


def test_dead_process_leases_on_this_host_are_freed(database_url: str) -> None:
    store = open_store(database_url)
    store.sync_sources([SourceSpec(id="s", url="https://x.org/")], NOW)
    store.claim_due_sources(["s"], NOW, "host-a:4242:abc")
    assert store.release_dead_leases("host-a", lambda pid: pid != 4242, NOW) == 1
    assert store.claim_due_sources(["s"], NOW, "host-a:1:def")


def test_an_old_schema_is_refused_with_the_command_to_run(database_url: str) -> None:
    store = open_store(database_url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(ConfigError, match="news-monitor db upgrade"):
        open_store(database_url)


def test_a_0001_database_upgrades_to_the_models_schema(database_url: str) -> None:
    """A store made by the first release gains the history tables with `db upgrade`, and the
    migrated schema is exactly what the models declare."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from monitor import migrations
    engine = make_engine(database_url)
    command.upgrade(migrations.alembic_config(engine), "0001")
    with pytest.raises(ConfigError, match="news-monitor db upgrade"):
        open_store(database_url)
    assert migrations.upgrade(engine) == ("0001", migrations.head())
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection),
                                       SQLModel.metadata)
    assert differences == []
    store = open_store(database_url)
    with store.session() as session:
        store.log_fetch(session, "s", NOW, ok=False, http_status=503, error="busy")
    store.prune_history(NOW)                                   # older than NOW only
    with store.session() as session:
        assert session.execute(text("SELECT count(*) FROM fetch_log")).scalar_one() == 1


def _drop_connections(url: str) -> None:
    """What a server restart does to the pool: every connection to the database is gone."""
    import psycopg

    from conftest import PG_ADMIN
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))


def test_a_pooled_postgresql_connection_dropped_while_idle_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that sat in the pool IDLE_PING seconds is checked before use: one the
    server dropped is replaced, and the use succeeds (here every pooled connection counts
    as idle)."""
    from conftest import drop_pg_database, make_pg_database
    from monitor import store as store_module
    url = make_pg_database()
    try:
        store = open_store(url)
        assert stored(store) == 0                 # a connection now waits in the pool
        monkeypatch.setattr(store_module, "IDLE_PING", 0.0)
        _drop_connections(url)
        assert stored(store) == 0                 # checked, found dropped, replaced
        assert add(store, "a", Article(url="https://x.org/after", title="After"))
    finally:
        drop_pg_database(url)


def test_a_connection_dropped_just_after_use_fails_one_statement_then_reconnects() -> None:
    """On the defaults, a connection back in the pool for under IDLE_PING is used unchecked:
    if the server dropped it, that one statement fails, and the pool's connections are
    replaced for the next."""
    from sqlalchemy.exc import OperationalError

    from conftest import drop_pg_database, make_pg_database
    url = make_pg_database()
    try:
        store = open_store(url)
        assert stored(store) == 0
        _drop_connections(url)
        with pytest.raises(OperationalError):
            stored(store)
        assert stored(store) == 0
        assert add(store, "a", Article(url="https://x.org/after", title="After"))
    finally:
        drop_pg_database(url)


def test_a_postgresql_server_without_autovacuum_gets_articles_analyzed_by_the_store() -> None:
    """Lookups planned while `articles` was empty stayed sequential scans on a server whose
    autovacuum is off (this machine's): the store analyzes the table itself as it grows,
    at 50 new rows first; where autovacuum runs, it leaves that to the server."""
    from conftest import drop_pg_database, make_pg_database
    url = make_pg_database()
    try:
        store = open_store(url)

        def analyzed() -> bool:
            with store.reading() as connection:
                return connection.execute(text(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE relname = 'articles'")).scalar_one()

        with store.reading() as connection:
            autovacuum = connection.execute(text("SHOW autovacuum")).scalar_one() == "on"
        for n in range(60):
            add(store, "a", Article(url=f"https://x.org/{n}", title=f"Item {n}"))
        store.stored_articles(49)
        assert not analyzed()
        store.stored_articles(11)
        assert analyzed() is not autovacuum
    finally:
        drop_pg_database(url)


def test_sqlite_is_never_analyzed_by_the_store(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    store.stored_articles(10_000)             # nothing to do, and no query sent
    assert store._analyzes is None


def test_sqlite_connections_write_ahead_and_keep_temporary_files_in_memory(
        tmp_path: object) -> None:
    """The settings each SQLite connection is opened with (make_engine's comments say why):
    a write-ahead log synced at checkpoints, a 64 MB page cache, and savepoint sub-journals
    in memory rather than in files under /var/tmp."""
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    with store.reading() as connection:
        settings = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                    for name in ("journal_mode", "synchronous", "temp_store", "cache_size",
                                 "wal_autocheckpoint", "foreign_keys")}
    assert settings == {"journal_mode": "wal", "synchronous": 1, "temp_store": 2,
                        "cache_size": -65536, "wal_autocheckpoint": 10000, "foreign_keys": 1}
