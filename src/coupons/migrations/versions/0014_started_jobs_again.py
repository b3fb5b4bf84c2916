"""started jobs again: carry a preview's started job over from compressed answers too

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

0013 read each stored start answer as JSON, but the service stores its answers compressed,
so it carried nothing over: every preview started before it could be started a second time.
0013 now reads them as the service does; this revision does the same for databases that
already ran the first 0013 (previews that name a job keep it).
"""

from __future__ import annotations

from alembic import op

from coupons.migrations.started_jobs import carry_over

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    carry_over(op.get_bind())


def downgrade() -> None:
    pass  # nothing to take back: the column is 0013's
