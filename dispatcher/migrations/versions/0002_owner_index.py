"""Find a team's subscriptions by owner: an index for `GET /api/v1/subscriptions?owner=`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_subscriptions_owner", "subscriptions", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_owner", table_name="subscriptions")
