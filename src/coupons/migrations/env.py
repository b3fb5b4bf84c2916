"""Alembic environment: runs on the connection the caller hands over (see adapters.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from coupons.adapters.db import create_db_engine
from coupons.adapters.tables import metadata

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "", null_pool=True)
    with engine.connect() as conn:
        run(conn)
    engine.dispose()
