"""finding: the revocations trail, and indexes for paging a series and searching codes

Revision ID: 0006_finding
Revises: 0005_event_versions
Create Date: 2026-12-01

`revocations` holds one row per revoke call (or revoke job) that revoked something, written
in the same transaction as the revoke, so the audit trail (`GET /v2/coupon/revocations`) is
read from a small table on an index instead of grouping millions of history rows. A
reinstate adds to the row of the request whose revoke it undoes. Existing history is folded
into it here. `job_id` refers to a revoke job when the row is one (no foreign key: jobs may
be added by a later revision, which then upserts its row by request id).

Coupons: `(series_id, id)` replaces `(series_id)`, so a page of a series' coupons is a short
range scan in id order at any table size. Code search reads `(org_id, code_norm, id)`: a
prefix is the range `>= prefix AND < successor` in code point order, which SQLite's byte-wise
comparison gives; on PostgreSQL `code_norm` gets the "C" collation so the order is the same
whatever the database's collation (equality is unchanged: it was byte equality already).
No index reads `state`, so revokes stay heap-only updates on PostgreSQL. On PostgreSQL the
collation change rebuilds the two indexes over `code_norm` (no table rewrite); on a large
table run it in a quiet hour.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from alembic import op

revision = "0006_finding"
down_revision = "0005_event_versions"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("revoked_count", sa.Integer(), nullable=False),
        sa.Column("reinstated_count", sa.Integer(), nullable=False),
        sa.Column("job_id", Id, nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_revocations_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
    )
    op.create_index(
        "uq_revocations_org_request", "revocations", ["org_id", "request_id"], unique=True
    )
    op.create_index("ix_revocations_org_at", "revocations", ["org_id", "at", "id"])
    op.create_index("ix_revocations_org_actor_at", "revocations", ["org_id", "actor", "at", "id"])
    _backfill()

    op.drop_index("ix_coupons_series_id", table_name="coupons")
    op.create_index("ix_coupons_series_id_id", "coupons", ["series_id", "id"])
    op.drop_index("ix_coupons_org_code", table_name="coupons")
    _code_collation('"C"')
    op.create_index("ix_coupons_org_code", "coupons", ["org_id", "code_norm", "id"])


def _code_collation(collation: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE coupons ALTER COLUMN code_norm TYPE varchar(100) COLLATE {collation}"
        )


def _backfill() -> None:
    """One row per earlier revoke request, and what reinstates undid of each."""
    op.execute(
        "INSERT INTO revocations (org_id, request_id, at, actor, reason, revoked_count, "
        "reinstated_count) "
        "SELECT org_id, request_id, MIN(at), MIN(actor), MIN(reason), COUNT(*), 0 "
        "FROM coupon_history WHERE action = 'REVOKE' GROUP BY org_id, request_id"
    )
    # Each reinstate undid the latest revoke of its coupon before it.
    rows = op.get_bind().execute(
        sa.text(
            "SELECT rv.org_id, rv.request_id FROM coupon_history ri "
            "JOIN coupon_history rv ON rv.id = ("
            "  SELECT MAX(x.id) FROM coupon_history x WHERE x.coupon_id = ri.coupon_id "
            "  AND x.action = 'REVOKE' AND x.id < ri.id) "
            "WHERE ri.action = 'REINSTATE'"
        )
    )
    undone = Counter((int(org_id), str(request_id)) for org_id, request_id in rows)
    update = sa.text(
        "UPDATE revocations SET reinstated_count = :n WHERE org_id = :org AND request_id = :rid"
    )
    for (org_id, request_id), count in undone.items():
        op.get_bind().execute(update, {"n": count, "org": org_id, "rid": request_id})


def downgrade() -> None:
    op.drop_index("ix_coupons_org_code", table_name="coupons")
    _code_collation("pg_catalog.default")
    op.create_index("ix_coupons_org_code", "coupons", ["org_id", "code_norm"])
    op.drop_index("ix_coupons_series_id_id", table_name="coupons")
    op.create_index("ix_coupons_series_id", "coupons", ["series_id"])
    op.drop_index("ix_revocations_org_actor_at", table_name="revocations")
    op.drop_index("ix_revocations_org_at", table_name="revocations")
    op.drop_index("uq_revocations_org_request", table_name="revocations")
    op.drop_table("revocations")
