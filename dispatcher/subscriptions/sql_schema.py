"""The SQL store's tables as SQLAlchemy Core sees them at `dispatcher.migrations.HEAD`, and the
queries on them that several of the store's operations share.

The migrations create these tables; a test compares the two, so a change here needs a revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncConnection

#: the single row of `subscriptions_version`
VERSION_ROW = 1


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime both ways: SQLite keeps no zone, so what it returns is taken as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a stored time must be timezone-aware")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


metadata = sa.MetaData()

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),  # the normalised patterns, for `list` filters
    sa.Column("body", sa.JSON, nullable=False),  # as written, each secret replaced by null
    sa.Column("secrets", sa.JSON, nullable=False),  # JSON pointer into body -> sealed value
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("id", name="uq_subscriptions_id"),
    sa.UniqueConstraint("name", name="uq_subscriptions_name"),
    sa.Index("ix_subscriptions_owner", "owner"),
)

labels = sa.Table(
    "subscription_labels",
    metadata,
    sa.Column("subscription_id", sa.String(36), nullable=False),
    sa.Column("key", sa.String(63), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
    sa.PrimaryKeyConstraint("subscription_id", "key", name="pk_subscription_labels"),
    sa.ForeignKeyConstraint(
        ["subscription_id"],
        ["subscriptions.id"],
        name="fk_subscription_labels_subscription",
        ondelete="CASCADE",
    ),
    sa.Index("ix_subscription_labels_key_value", "key", "value"),
)

version = sa.Table(
    "subscriptions_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="ck_subscriptions_version_one_row"),
)


async def find_row(conn: AsyncConnection, id_or_name: str) -> Row[Any] | None:
    """The row of this id, else of this name (a name may look like another one's id)."""
    query = sa.select(subscriptions).where(
        sa.or_(subscriptions.c.id == id_or_name, subscriptions.c.name == id_or_name)
    )
    rows = (await conn.execute(query)).all()
    return next((row for row in rows if row.id == id_or_name), rows[0] if rows else None)


async def labels_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    if not ids:
        return {}
    query = (
        sa.select(labels.c.subscription_id, labels.c.key, labels.c.value)
        .where(labels.c.subscription_id.in_(ids))
        .order_by(labels.c.subscription_id, labels.c.key)
    )
    found: dict[str, dict[str, str]] = {}
    for subscription_id, key, value in await conn.execute(query):
        found.setdefault(subscription_id, {})[key] = value
    return found


async def write_labels(conn: AsyncConnection, id_: str, label_map: Mapping[str, str]) -> None:
    await conn.execute(sa.delete(labels).where(labels.c.subscription_id == id_))
    if label_map:
        rows = [{"subscription_id": id_, "key": k, "value": v} for k, v in label_map.items()]
        await conn.execute(sa.insert(labels), rows)


def listing(
    *,
    target_type: str | None,
    enabled: bool | None,
    label: tuple[str, str] | None,
    owner: str | None = None,
) -> sa.Select[Any]:
    """Subscriptions in creation order, narrowed by the filters SQL can apply."""
    query = sa.select(subscriptions).order_by(subscriptions.c.seq)
    if owner is not None:
        query = query.where(subscriptions.c.owner == owner)
    if target_type is not None:
        query = query.where(subscriptions.c.target_type == target_type)
    if enabled is not None:
        query = query.where(subscriptions.c.enabled == enabled)
    if label is not None:
        key, value = label
        query = query.where(
            sa.exists().where(
                labels.c.subscription_id == subscriptions.c.id,
                labels.c.key == key,
                labels.c.value == value,
            )
        )
    return query


async def delete_row(conn: AsyncConnection, id_: str) -> None:
    """Delete a subscription and its labels (without relying on SQLite's foreign key pragma)."""
    await conn.execute(sa.delete(labels).where(labels.c.subscription_id == id_))
    await conn.execute(sa.delete(subscriptions).where(subscriptions.c.id == id_))
