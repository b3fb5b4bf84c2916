"""event versions: a per-coupon version on coupons and on every event

Revision ID: 0005_event_versions
Revises: 0004
Create Date: 2026-12-01

`coupons.version` counts a coupon's state changes (0 for a pool code never issued); every
state change bumps it under the row lock, and the history row (the event) copies it as
`coupon_history.coupon_version`, so a coupon's events carry 1, 2, 3, ... Existing rows are
numbered from their history, oldest first.

The same release drops the per-org advisory lock that made event ids commit in order on
PostgreSQL; the events query stays complete without it (docs/events.md). That needs no
schema change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_event_versions"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "coupons", sa.Column("version", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column(
        "coupon_history",
        sa.Column("coupon_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # Through the (coupon_id, id) index: each row counts the rows of its coupon up to itself.
    op.execute(
        "UPDATE coupon_history SET coupon_version = ("
        "SELECT count(*) FROM coupon_history AS older "
        "WHERE older.coupon_id = coupon_history.coupon_id AND older.id <= coupon_history.id)"
    )
    op.execute(
        "UPDATE coupons SET version = ("
        "SELECT count(*) FROM coupon_history WHERE coupon_history.coupon_id = coupons.id)"
    )


def downgrade() -> None:
    op.drop_column("coupon_history", "coupon_version")
    op.drop_column("coupons", "version")
