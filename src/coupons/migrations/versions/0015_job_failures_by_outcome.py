"""job failures by outcome: a job counts its failed lines by the report's outcome too

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

`failed_by_code` groups two outcomes under 682 (already revoked, not found), so the console
could not show a job's counts by outcome. Jobs already in the database get theirs from their
lines' outcomes (one pass over `revoke_job_lines`).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Not failures: done lines (counted in done_count) and duplicates (duplicate_count).
NOT_FAILED = ("revoked", "would_revoke", "reinstated", "would_reinstate", "duplicate_in_file")


def upgrade() -> None:
    op.add_column(
        "revoke_jobs",
        sa.Column("failed_by_outcome", sa.String(length=500), nullable=False, server_default="{}"),
    )
    conn = op.get_bind()
    counted: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        sa.text(
            "SELECT job_id, outcome, count(*) FROM revoke_job_lines "
            "WHERE outcome IS NOT NULL AND outcome NOT IN :done GROUP BY job_id, outcome"
        ).bindparams(sa.bindparam("done", expanding=True)),
        {"done": list(NOT_FAILED)},
    )
    for job_id, outcome, n in rows.all():
        counted.setdefault(job_id, {})[outcome] = int(n)
    for job_id, by_outcome in counted.items():
        conn.execute(
            sa.text("UPDATE revoke_jobs SET failed_by_outcome = :counts WHERE id = :id"),
            {"counts": json.dumps(dict(sorted(by_outcome.items()))), "id": job_id},
        )


def downgrade() -> None:
    op.drop_column("revoke_jobs", "failed_by_outcome")
