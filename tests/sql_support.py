"""Test helpers for the SQL store: a throwaway PostgreSQL database, raw rows, the contract."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from dispatcher.subscriptions.sql import SqlStore
from dispatcher.subscriptions.sql_engine import async_url
from tests.unit.test_store import Harness

#: where the tests' PostgreSQL answers (trust auth); each test gets a database of its own there
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
#: Fernet keys of the tests (fixed, fake)
KEY = "SkeIPL4LigPvAlQDnL_N4bvFO9spLJ8L3uzY5wDpDz4="
OTHER_KEY = "3NLYNXAGmAbf9SJkUHkW16e1QqHjhASuEESiBRkKdZw="
#: how long a test waits for a database operation at most
SETUP_TIMEOUT_S = 30.0


def _admin_engine() -> AsyncEngine:
    return create_async_engine(
        async_url(f"{POSTGRES_SERVER}/postgres"),
        isolation_level="AUTOCOMMIT",  # CREATE and DROP DATABASE refuse to run in a transaction
        poolclass=NullPool,
        connect_args={"timeout": 10},
    )


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped afterwards. Skips only where no PostgreSQL is
    installed: a server that is installed but not answering fails the test."""
    if shutil.which("pg_ctlcluster") is None and shutil.which("postgres") is None:
        pytest.skip("PostgreSQL is not installed")
    name = f"dispatcher_test_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine()
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        await admin.dispose()


async def raw_rows(url: str, table: str) -> list[str]:
    """Each row of a table as text, read with plain SQL (no store, no decryption)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = f"SELECT * FROM {table}"  # noqa: S608 -- the table names are the tests' own
            rows = (await conn.execute(sa.text(query))).all()
    finally:
        await engine.dispose()
    return [" | ".join(str(value) for value in row) for row in rows]


async def execute(url: str, statement: str) -> None:
    """Run one statement of the test's own on the database (autocommitted)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


async def schema_differences(url: str, metadata: sa.MetaData) -> list[Any]:
    """What Alembic finds different between the database's schema and `metadata`."""

    def compare(connection: sa.Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


def _run_on_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result(timeout=SETUP_TIMEOUT_S)


class SqlHarness(Harness):
    """A SqlStore under the store contract. `change` replaces the set as API clients would
    (delete each, create each), through a store of its own on a thread of its own: the
    contract's `change` is synchronous, and the store under test stays on the test's loop."""

    def __init__(self, url: str, subscriptions: Sequence[dict[str, Any]]) -> None:
        self.url = url
        _run_on_thread(self._replace(subscriptions, migrate=True))
        self.sql = SqlStore(url, secret_key=KEY)
        self.store = self.sql

    def change(self, subscriptions: Sequence[dict[str, Any]]) -> None:
        _run_on_thread(self._replace(subscriptions))

    async def _replace(
        self, subscriptions: Sequence[dict[str, Any]], migrate: bool = False
    ) -> None:
        editor = SqlStore(self.url, secret_key=KEY)
        try:
            if migrate:
                await editor.migrate()
            for old in await editor.load():
                await editor.delete(old.name)
            for body in subscriptions:
                await editor.create(body)
        finally:
            await editor.close()
