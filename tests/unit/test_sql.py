"""The SQL store's URLs as users write them, mapped to async drivers and described without a
password; the migrations' newest revision."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from dispatcher import migrations
from dispatcher.subscriptions.sql import HEAD, SqlStore
from dispatcher.subscriptions.sql_engine import async_url


@pytest.mark.parametrize(
    ("written", "driver", "database"),
    [
        ("sqlite:///dispatcher.db", "sqlite+aiosqlite", "dispatcher.db"),
        ("sqlite:///data/subs.db", "sqlite+aiosqlite", "data/subs.db"),
        (
            "sqlite:////var/lib/dispatcher/subs.db",
            "sqlite+aiosqlite",
            "/var/lib/dispatcher/subs.db",
        ),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite", "x.db"),
        ("postgresql://app:pw@db:5433/dispatcher", "postgresql+asyncpg", "dispatcher"),
        ("postgres://app@db/dispatcher", "postgresql+asyncpg", "dispatcher"),
        ("postgresql+asyncpg://app@db/dispatcher", "postgresql+asyncpg", "dispatcher"),
    ],
)
def test_a_store_url_maps_to_its_async_driver(written: str, driver: str, database: str) -> None:
    url = async_url(written)
    assert (url.drivername, url.database) == (driver, database)


@pytest.mark.parametrize(
    "written",
    ["mysql://app:pw@db/x", "postgresql+psycopg://app:pw@db/x", "not a url at all pw"],
)
def test_another_url_is_refused_without_showing_its_password(written: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite://.*postgresql://") as refused:
        async_url(written)
    assert "pw" not in str(refused.value)


async def test_a_store_describes_itself_without_its_password() -> None:
    store = SqlStore("postgresql://app:s3cret@db:5432/dispatcher")
    assert store.description == "postgresql://app:***@db:5432/dispatcher"
    await store.close()
    store = SqlStore("sqlite:///subs.db")
    assert store.description == "sqlite:///subs.db"
    await store.close()


def test_head_names_the_newest_revision() -> None:
    scripts = ScriptDirectory.from_config(migrations.config())
    assert scripts.get_heads() == [HEAD]
