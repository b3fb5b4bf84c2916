"""revoke jobs: jobs, their input lines, and org-level events

Revision ID: 0007
Revises: 0006_finding
Create Date: 2026-12-01

A revoke job (spec §8) keeps its input lines in the database, so an upload is never held in a
server's memory and a job resumes after a crash from its last committed chunk. The history
table takes org-level events too (a job finished): `coupon_id` becomes nullable for them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006_finding"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revoke_jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("series_id", Id, nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("code_case", sa.String(length=10), nullable=False),
        sa.Column("client_id", Id, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("started_at", Moment, nullable=True),
        sa.Column("finished_at", Moment, nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("done_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("failed_by_code", sa.String(length=500), nullable=False),
        sa.Column("undo_of_job_id", sa.String(length=40), nullable=True),
        sa.Column("undone_by_job_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("lease_until", Moment, nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_revoke_jobs_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["series_id"], ["coupon_series.id"], name=op.f("fk_revoke_jobs_series_id_coupon_series")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["api_clients.id"], name=op.f("fk_revoke_jobs_client_id_api_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revoke_jobs")),
    )
    op.create_index("ix_revoke_jobs_org_created", "revoke_jobs", ["org_id", "created_at"])
    op.create_index("ix_revoke_jobs_state_created", "revoke_jobs", ["state", "created_at"])
    op.create_table(
        "revoke_job_lines",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("line_no", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("norm", sa.String(length=100), nullable=False),
        sa.Column("coupon_id", Id, nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("issued_to", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["revoke_jobs.id"], name=op.f("fk_revoke_job_lines_job_id_revoke_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", "line_no", name=op.f("pk_revoke_job_lines")),
    )
    op.create_index("ix_revoke_job_lines_norm", "revoke_job_lines", ["job_id", "norm", "line_no"])
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.alter_column("coupon_id", existing_type=Id, nullable=True)


def downgrade() -> None:
    # Org-level events have no coupon; the older schema cannot hold them.
    op.execute("DELETE FROM coupon_history WHERE coupon_id IS NULL")
    with op.batch_alter_table("coupon_history", schema=None) as batch_op:
        batch_op.alter_column("coupon_id", existing_type=Id, nullable=False)
    op.drop_index("ix_revoke_job_lines_norm", table_name="revoke_job_lines")
    op.drop_table("revoke_job_lines")
    op.drop_index("ix_revoke_jobs_state_created", table_name="revoke_jobs")
    op.drop_index("ix_revoke_jobs_org_created", table_name="revoke_jobs")
    op.drop_table("revoke_jobs")
