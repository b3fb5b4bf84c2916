"""trail job ids: a revoke job's row in the revocations trail names the job

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

`revocations.job_id` was made an integer before revoke jobs existed; job ids are strings
(`job_...`). Each chunk of a job already added to one trail row under the job's id as the
request id; the row now also carries it as `jobId`, and rows written before this revision are
filled in from the jobs table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.alter_column(
            "job_id",
            existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            type_=sa.String(length=40),
            existing_nullable=True,
            postgresql_using="job_id::varchar(40)",
        )
    op.execute(
        "UPDATE revocations SET job_id = request_id WHERE job_id IS NULL AND EXISTS "
        "(SELECT 1 FROM revoke_jobs j WHERE j.id = revocations.request_id "
        "AND j.org_id = revocations.org_id)"
    )


def downgrade() -> None:
    op.execute("UPDATE revocations SET job_id = NULL")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.alter_column(
            "job_id",
            existing_type=sa.String(length=40),
            type_=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            existing_nullable=True,
            postgresql_using="job_id::bigint",
        )
