"""events outbox and webhooks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

coupon_history becomes the events outbox: each row also keeps the coupon's series, code and
customer as they were at the change. Existing rows are back-filled from the coupons table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("series_id", Id, nullable=True))
        batch_op.add_column(sa.Column("code", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("customer_id", Id, nullable=True))
        batch_op.create_index("ix_coupon_history_org_id", ["org_id", "id"], unique=False)
    # Older rows: the coupon's current values are the best record there is.
    op.execute(
        "UPDATE coupon_history SET "
        "series_id = (SELECT c.series_id FROM coupons c WHERE c.id = coupon_history.coupon_id), "
        "code = (SELECT c.code FROM coupons c WHERE c.id = coupon_history.coupon_id), "
        "customer_id = (SELECT c.customer_id FROM coupons c WHERE c.id = coupon_history.coupon_id)"
    )

    op.create_table(
        "webhooks",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_webhooks_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            "ix_webhooks_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("webhook_id", Id, nullable=False),
        sa.Column("first_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_webhook_id", ["webhook_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_webhook_id")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index("ix_webhooks_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_webhooks_org_id"))
    op.drop_table("webhooks")
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_history_org_id")
        batch_op.drop_column("customer_id")
        batch_op.drop_column("code")
        batch_op.drop_column("series_id")
