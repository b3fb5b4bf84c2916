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

import json

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KEY_PREFIX = "console-start:"


def upgrade() -> None:
    op.add_column("revoke_jobs", sa.Column("started_job_id", sa.String(length=40)))
    conn = op.get_bind()
    answers = conn.execute(
        sa.text(
            "SELECT key, org_id, body FROM idempotency_keys WHERE key LIKE :prefix "
            "ORDER BY created_at"
        ),
        {"prefix": KEY_PREFIX + "%"},
    )
    for key, org_id, body in answers:
        try:
            started = json.loads(bytes(body))["jobId"]
        except (ValueError, KeyError, TypeError):
            continue  # not a start's answer: nothing to carry over
        # The earliest answer wins; a job of another org is never named.
        conn.execute(
            sa.text(
                "UPDATE revoke_jobs SET started_job_id = :started "
                "WHERE id = :preview AND org_id = :org AND started_job_id IS NULL "
                "AND EXISTS (SELECT 1 FROM revoke_jobs j WHERE j.id = :started "
                "AND j.org_id = :org)"
            ),
            {"started": str(started), "preview": key[len(KEY_PREFIX) :], "org": org_id},
        )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite has it since 3.35): batch mode would copy the table, and
    # SQLite refuses to drop one that other tables' foreign keys name.
    op.drop_column("revoke_jobs", "started_job_id")
