"""Schema migrations (Alembic): `news-monitor db upgrade`, and the start-up schema check.

A fresh, empty database gets the current schema at start-up (the zero-setup SQLite path).
A database whose schema is older than this code is refused with the command to run, so a
replica of a newer version never writes into an old schema by accident.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from monitor.errors import ConfigError

HERE = Path(__file__).parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["engine"] = engine
    return config


def head() -> str:
    return ScriptDirectory(str(HERE)).get_current_head() or ""


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; return (revision before, revision after)."""
    before = current(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, head()


def ensure_current(engine: Engine, upgrade_empty: bool = True) -> None:
    revision = current(engine)
    if revision == head():
        return
    empty = not inspect(engine).get_table_names()
    if revision is None and empty and upgrade_empty:
        upgrade(engine)
        return
    raise ConfigError(f"the database schema is at {revision or 'an unknown version'}, this "
                      f"news-monitor needs {head()}: run `news-monitor db upgrade` first")
