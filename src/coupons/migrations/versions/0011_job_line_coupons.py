"""job line coupons: a report line names every coupon its code was found as

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Without `couponSeriesId` a job looks each code up in the org, as a single-code revoke does,
and a code in several series is revoked in all of them; its report line named only the first
coupon. `more_coupons` keeps the others (JSON `[[id, holder], ...]`, NULL for one coupon).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revoke_job_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("more_coupons", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revoke_job_lines", schema=None) as batch_op:
        batch_op.drop_column("more_coupons")
