"""Alembic's environment: runs the revisions on the connection `dispatcher.migrations` hands in."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "dispatcher's migrations run from code: use SqlStore.migrate(), not the alembic command"
    )
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
