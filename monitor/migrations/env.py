"""Alembic environment: runs migrations on the engine news-monitor hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import monitor.store  # noqa: F401  (registers the tables on SQLModel.metadata)

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
