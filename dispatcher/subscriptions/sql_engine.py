"""How the SQL store reaches its database: a store URL as users write it, mapped to an async
driver, and an engine set up alike for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(url: str) -> URL:
    """The SQLAlchemy URL, with its async driver, of a store URL as users write it."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # its message would repeat the URL, password and all
        raise ValueError(
            "the store URL is not a database URL: use sqlite:///path.db or"
            " postgresql://user:password@host:port/db"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"store URLs start with sqlite:// or postgresql://, not {parsed.drivername}://"
        )
    return parsed.set(drivername=driver)


def engine_for(url: URL) -> AsyncEngine:
    """An engine for an `async_url`: statements' parameters are kept out of error messages (they
    carry the secrets), and a pooled connection is checked before use (the server may restart)."""
    engine = create_async_engine(url, hide_parameters=True, pool_pre_ping=True)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys only when asked, connection by connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
