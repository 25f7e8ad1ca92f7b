"""The first schema: subscriptions, their labels, and the change counter.

Revision ID: 0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        # creation order, for listing and loading (SQLite numbers only INTEGER PRIMARY KEYs)
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("secrets", sa.JSON, nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("id", name="uq_subscriptions_id"),
        sa.UniqueConstraint("name", name="uq_subscriptions_name"),
    )
    op.create_table(
        "subscription_labels",
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
    )
    op.create_index("ix_subscription_labels_key_value", "subscription_labels", ["key", "value"])
    version = op.create_table(
        "subscriptions_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_subscriptions_version_one_row"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("subscriptions_version")
    op.drop_index("ix_subscription_labels_key_value", table_name="subscription_labels")
    op.drop_table("subscription_labels")
    op.drop_table("subscriptions")
