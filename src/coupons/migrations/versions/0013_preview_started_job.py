"""preview started job: a preview records the one real job it was started as

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08

A console preview was started at most once per API client (an idempotency key), and every
person has a client of their own: a second person could start the same preview again, even
after the first job was undone. `started_job_id` on the preview is set once, under the
preview's row lock, for the whole org. Previews started before this revision get the job
their first start answered, as far as the stored answers (24 hours of them) still tell.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from coupons.migrations.started_jobs import carry_over

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("revoke_jobs", sa.Column("started_job_id", sa.String(length=40)))
    carry_over(op.get_bind())


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite has it since 3.35): batch mode would copy the table, and
    # SQLite refuses to drop one that other tables' foreign keys name.
    op.drop_column("revoke_jobs", "started_job_id")
