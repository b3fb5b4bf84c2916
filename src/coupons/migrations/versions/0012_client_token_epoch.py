"""client token epoch: tokens issued before a client's last disable never work again

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

A disabled client's tokens were refused only while it was disabled; enabling it brought back
every token not yet expired. `tokens_after` keeps the moment of the last disable (NULL: never
disabled since this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_clients", sa.Column("tokens_after", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite has it since 3.35): batch mode would copy the table, and
    # SQLite refuses to drop one that other tables' foreign keys name.
    op.drop_column("api_clients", "tokens_after")
