"""initial schema

Revision ID: 0001
Revises: -
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orgs")),
        sa.UniqueConstraint("name", name=op.f("uq_orgs_name")),
    )
    op.create_table(
        "service_keys",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_keys")),
    )
    op.create_table(
        "api_clients",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("groups", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_api_clients_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("username", name=op.f("uq_api_clients_username")),
    )
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_clients_org_id"), ["org_id"], unique=False)

    op.create_table(
        "coupon_series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("client_handling_type", sa.String(length=30), nullable=False),
        sa.Column("generic_code", sa.String(length=100), nullable=True),
        sa.Column("generic_code_norm", sa.String(length=100), nullable=True),
        sa.Column("valid_till", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discount_type", sa.String(length=10), nullable=False),
        sa.Column("discount_value", sa.Numeric(precision=14, scale=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_coupon_series_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_series")),
    )
    with op.batch_alter_table("coupon_series", schema=None) as batch_op:
        batch_op.create_index(
            "ix_coupon_series_org_generic_code", ["org_id", "generic_code_norm"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_coupon_series_org_id"), ["org_id"], unique=False)

    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mobile", sa.String(length=40), nullable=True),
        sa.Column("mobile_norm", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_norm", sa.String(length=320), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_customers_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("uq_customers_org_email", ["org_id", "email_norm"], unique=True)
        batch_op.create_index(
            "uq_customers_org_external_id", ["org_id", "external_id"], unique=True
        )
        batch_op.create_index("uq_customers_org_mobile", ["org_id", "mobile_norm"], unique=True)

    op.create_table(
        "coupons",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "series_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("code_norm", sa.String(length=100), nullable=False),
        sa.Column("pin", sa.String(length=20), nullable=True),
        sa.Column("is_generic", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("revoked_from", sa.String(length=12), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_coupons_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_coupons_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["series_id"], ["coupon_series.id"], name=op.f("fk_coupons_series_id_coupon_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index("ix_coupons_customer_state", ["customer_id", "state"], unique=False)
        batch_op.create_index("ix_coupons_org_code", ["org_id", "code_norm"], unique=False)
        batch_op.create_index("ix_coupons_series_state", ["series_id", "state"], unique=False)
        batch_op.create_index(
            "uq_coupons_series_code",
            ["series_id", "code_norm"],
            unique=True,
            sqlite_where=sa.text("is_generic = false"),
            postgresql_where=sa.text("is_generic = false"),
        )

    op.create_table(
        "idempotency_keys",
        sa.Column(
            "client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_clients.id"],
            name=op.f("fk_idempotency_keys_client_id_api_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_idempotency_keys_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("client_id", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "coupon_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "coupon_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("from_state", sa.String(length=12), nullable=True),
        sa.Column("to_state", sa.String(length=12), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_coupon_history_coupon_id_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_coupon_history_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_history")),
    )
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.create_index("ix_coupon_history_coupon", ["coupon_id", "id"], unique=False)
        batch_op.create_index(
            "ix_coupon_history_org_request", ["org_id", "request_id"], unique=False
        )

    op.create_table(
        "redemptions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "coupon_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("transaction_number", sa.String(length=200), nullable=True),
        sa.Column("bill_amount", sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_redemptions_coupon_id_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_redemptions_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_redemptions_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_redemptions_coupon_id"), ["coupon_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_redemptions_coupon_id"))

    op.drop_table("redemptions")
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.drop_index("ix_coupon_history_org_request")
        batch_op.drop_index("ix_coupon_history_coupon")

    op.drop_table("coupon_history")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_coupons_series_code",
            sqlite_where=sa.text("is_generic = false"),
            postgresql_where=sa.text("is_generic = false"),
        )
        batch_op.drop_index("ix_coupons_series_state")
        batch_op.drop_index("ix_coupons_org_code")
        batch_op.drop_index("ix_coupons_customer_state")

    op.drop_table("coupons")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("uq_customers_org_mobile")
        batch_op.drop_index("uq_customers_org_external_id")
        batch_op.drop_index("uq_customers_org_email")

    op.drop_table("customers")
    with op.batch_alter_table("coupon_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coupon_series_org_id"))
        batch_op.drop_index("ix_coupon_series_org_generic_code")

    op.drop_table("coupon_series")
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_clients_org_id"))

    op.drop_table("api_clients")
    op.drop_table("service_keys")
    op.drop_table("orgs")
