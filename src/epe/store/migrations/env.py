"""Alembic environment: migrations run on the engine the store hands in.

On PostgreSQL the migrations run under a transaction-scoped advisory lock, so
replicas starting at once migrate one after the other (the later ones find
nothing left to do); its DDL is transactional, so a failed migration leaves
nothing half done.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from epe.store.schema import metadata

MIGRATION_LOCK = 0x657065  # "epe": the advisory lock key the migrations hold

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
