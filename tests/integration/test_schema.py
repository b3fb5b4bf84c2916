"""The migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from coupons.adapters.tables import metadata
from tests.conftest import Backend


def test_migrated_schema_matches_the_declared_tables_and_indexes(backend: Backend) -> None:
    with backend.db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
