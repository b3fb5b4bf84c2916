"""pool column: no index reads the coupon state, so revokes are in-place row updates

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

The partial index over the AVAILABLE pool named `state` in its predicate. On PostgreSQL any
index that reads a changed column, predicates included, rules out a heap-only (HOT) update:
every revoke or redeem wrote a new row version on another page plus an entry in each of the
five coupon indexes, scattered over a large table. The pool is now indexed through a generated
column that holds the series only while the coupon is AVAILABLE; a change between other states
leaves it NULL, so PostgreSQL updates the row on its own page and touches no index. The
table's fillfactor leaves room on each page for that new version.

On PostgreSQL adding the stored column rewrites the table (packed at the new fillfactor)
under an exclusive lock: on a large table, run it in a maintenance window. On SQLite the
column is virtual and the upgrade only builds the new index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POOL_SERIES = "CASE WHEN state = 'AVAILABLE' THEN series_id END"
OLD_POOL = sa.text("state = 'AVAILABLE'")
NEW_POOL = sa.text("pool_series_id IS NOT NULL")
FILLFACTOR = 85
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Before the column: the rewrite that adding it causes then packs at this fillfactor.
        op.execute(f"ALTER TABLE coupons SET (fillfactor = {FILLFACTOR})")
    op.drop_index("ix_coupons_series_pool", table_name="coupons")
    computed = sa.Computed(POOL_SERIES, persisted=True if postgres else None)
    op.add_column("coupons", sa.Column("pool_series_id", Id, computed))
    op.create_index(
        "ix_coupons_pool",
        "coupons",
        ["pool_series_id", "id"],
        unique=False,
        sqlite_where=NEW_POOL,
        postgresql_where=NEW_POOL,
    )


def downgrade() -> None:
    op.drop_index("ix_coupons_pool", table_name="coupons")
    op.drop_column("coupons", "pool_series_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE coupons RESET (fillfactor)")
    op.create_index(
        "ix_coupons_series_pool",
        "coupons",
        ["series_id", "id"],
        unique=False,
        sqlite_where=OLD_POOL,
        postgresql_where=OLD_POOL,
    )
