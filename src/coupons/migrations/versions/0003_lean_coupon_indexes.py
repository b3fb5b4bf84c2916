"""lean coupon indexes: no index changes when a coupon changes state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A revoke, redeem or reactivate only rewrites `state`. With `state` in the (customer, state)
and (series, state) indexes, every such change also moved two index entries, which on a
large table meant two more scattered pages written per coupon. Customer and series lookups
now use plain indexes and filter state on the row; only the pool of AVAILABLE codes, which
issuing takes from, keeps a partial index, and a revoke of an issued coupon never touches it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POOL = sa.text("state = 'AVAILABLE'")


def upgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_customer_state")
        batch_op.drop_index("ix_coupons_series_state")
        batch_op.create_index("ix_coupons_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_coupons_series_id", ["series_id"], unique=False)
        batch_op.create_index(
            "ix_coupons_series_pool",
            ["series_id", "id"],
            unique=False,
            sqlite_where=POOL,
            postgresql_where=POOL,
        )


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_series_pool")
        batch_op.drop_index("ix_coupons_series_id")
        batch_op.drop_index("ix_coupons_customer_id")
        batch_op.create_index("ix_coupons_series_state", ["series_id", "state"], unique=False)
        batch_op.create_index("ix_coupons_customer_state", ["customer_id", "state"], unique=False)
