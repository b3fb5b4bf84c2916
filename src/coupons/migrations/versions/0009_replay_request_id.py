"""replay request id: a replayed answer carries the original request's X-Request-Id

Revision ID: 0009
Revises: 0008_console_users
Create Date: 2026-12-01

A client that retried a revoke got the stored answer with a new `X-Request-Id`, and reinstate
by that id found nothing: the history holds the first request's id. The id is now stored with
the idempotency record and sent again with the replay. Records stored before this revision
have none; their replays keep the retry's own id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008_console_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("request_id")
