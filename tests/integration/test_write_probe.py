"""The write probe `coupons serve` runs at start-up: a database it can read but not write is
found before serving, on both backends; a writable one is left as it was."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from coupons.adapters import migrate


def read_only(url: str) -> str:
    """`url` opened read-only: SQLite's own read-only mode (file modes do not stop root), or a
    PostgreSQL session whose transactions are read-only, as on a replica."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///file:{parsed.database}?mode=ro&uri=true"
    options = dict(parsed.query) | {"options": "-c default_transaction_read_only=on"}
    return parsed.set(query=options).render_as_string(hide_password=False)


def test_probing_a_database_that_cannot_be_written_raises_the_drivers_error(
    empty_database_url: str,
) -> None:
    # Given a migrated database, opened read-only
    migrate.upgrade(empty_database_url)
    url = read_only(empty_database_url)
    assert migrate.schema_problem(url) is None  # reading it finds nothing wrong

    # When a write is probed, then the driver's refusal comes through
    with pytest.raises(DBAPIError, match=r"readonly database|read-only transaction"):
        migrate.probe_write(url)


def test_probing_a_writable_database_changes_nothing(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)

    migrate.probe_write(empty_database_url)

    assert migrate.current_revision(empty_database_url) == migrate.head_revision()
