"""Databases made by earlier commits of main, whose 0009 revised 0005, 0006 or 0007: stamped
0009 or later without what the skipped revisions create. An upgrade mends them to the schema
of a fresh database and keeps their rows, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from coupons.adapters import migrate
from coupons.adapters.db import create_db_engine
from tests.conftest import scratch_postgres
from tests.integration.test_migrations import NOW, seed_org_and_client, seed_series_7

Schema = dict[str, dict[str, Any]]


def schema_of(url: str) -> Schema:
    """Every table's columns, indexes, unique constraints and foreign keys, as inspect sees
    them (names, types, nullability; order where the database keeps one)."""
    engine = create_db_engine(url, null_pool=True)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {
                table: {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)
                    ],
                    "indexes": sorted(
                        (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                        for i in found.get_indexes(table)
                    ),
                    "unique": sorted(
                        (u["name"] or "", tuple(u["column_names"]))
                        for u in found.get_unique_constraints(table)
                    ),
                    "foreign_keys": sorted(
                        (tuple(f["constrained_columns"]), f["referred_table"])
                        for f in found.get_foreign_keys(table)
                    ),
                }
                for table in found.get_table_names()
            }
    finally:
        engine.dispose()


def seed(url: str) -> None:
    """A coupon revoked by one request, and a stored answer: rows every revision since 0005
    holds, in columns none of them changed."""
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        seed_org_and_client(conn)
        seed_series_7(conn)
        conn.execute(
            text(
                "INSERT INTO coupons (id, org_id, series_id, code, code_norm, is_generic, "
                "state, revoked_from, created_at, updated_at) "
                "VALUES (1, 1, 7, 'Code-1', 'code-1', false, 'REVOKED', 'AVAILABLE', :t, :t)"
            ),
            {"t": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO coupon_history (org_id, coupon_id, action, to_state, at, actor, "
                "request_id) VALUES (1, 1, 'REVOKE', 'REVOKED', :t, 'alice', 'req-a')"
            ),
            {"t": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO idempotency_keys (client_id, key, org_id, fingerprint, status_code, "
                "body, created_at) VALUES (1, 'k', 1, 'f', 200, :b, :t)"
            ),
            {"b": b'{"success":true}', "t": NOW},
        )
    engine.dispose()


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_db_engine(url, null_pool=True)
    try:
        with engine.connect() as conn:

            def read(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(row) for row in conn.execute(text(sql))]

            return {
                "coupons": read("SELECT id, code, state FROM coupons"),
                "history": read("SELECT coupon_id, action, request_id FROM coupon_history"),
                "answers": read("SELECT key, status_code FROM idempotency_keys"),
                "clients": read("SELECT id, username FROM api_clients"),
            }
    finally:
        engine.dispose()


def stamp_0009_on(url: str, parent: str) -> None:
    """What an earlier main did: 0009's own step on a database at `parent`, stamped 0009
    (the rows written at 0005, so any revocation trail is folded from them)."""
    migrate.upgrade(url, "0005_event_versions")
    seed(url)
    migrate.upgrade(url, parent)
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    replay = script.get_revision("0009")
    assert replay is not None
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        context = MigrationContext.configure(
            conn, opts={"render_as_batch": conn.dialect.name == "sqlite"}
        )
        with Operations.context(context):
            replay.module.upgrade()
        conn.execute(text("UPDATE alembic_version SET version_num = '0009'"))
    engine.dispose()


def upgraded_without_users(url: str) -> None:
    """What an earlier main whose 0009 revised 0007 left after a later upgrade: at head,
    without the two tables 0008 makes."""
    migrate.upgrade(url, "0005_event_versions")
    seed(url)
    migrate.upgrade(url)
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE user_sessions"))
        conn.execute(text("DROP TABLE users"))
    engine.dispose()


@pytest.fixture
def fresh_schema(
    empty_database_url: str, tmp_path: Path, postgres_admin_url: str | None
) -> Iterator[Schema]:
    """The schema a new database at head has, on the same backend as `empty_database_url`."""
    if empty_database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        migrate.upgrade(url)
        yield schema_of(url)
        return
    assert postgres_admin_url is not None
    with scratch_postgres(postgres_admin_url, "coupons_fresh") as url:
        migrate.upgrade(url)
        yield schema_of(url)


BROKEN = {
    "0009 on 0005 (missing 0006, 0007, 0008)": lambda url: stamp_0009_on(
        url, "0005_event_versions"
    ),
    "0009 on 0006 (missing 0007, 0008)": lambda url: stamp_0009_on(url, "0006_finding"),
    "0009 on 0007, then upgraded (missing 0008)": upgraded_without_users,
}
MENDED = {
    "0009 on 0005 (missing 0006, 0007, 0008)": ["0006_finding", "0007", "0008_console_users"],
    "0009 on 0006 (missing 0007, 0008)": ["0007", "0008_console_users"],
    "0009 on 0007, then upgraded (missing 0008)": ["0008_console_users"],
}


@pytest.mark.parametrize("made_by", list(BROKEN))
def test_upgrading_a_database_an_earlier_0009_skipped_revisions_on_mends_it_to_head(
    made_by: str, empty_database_url: str, fresh_schema: Schema
) -> None:
    # Given a database as an earlier main left it, holding coupons, history and an answer
    BROKEN[made_by](empty_database_url)
    before = rows(empty_database_url)

    # When it is upgraded
    with structlog.testing.capture_logs() as logs:
        revision = migrate.upgrade(empty_database_url)

    # Then it is at head with the schema of a fresh database, and its rows survived
    assert revision == migrate.head_revision()
    assert schema_of(empty_database_url) == fresh_schema
    assert rows(empty_database_url) == before
    # And the trail holds the earlier revoke, as 0006 folds it from history
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.connect() as conn:
        trail = conn.execute(text("SELECT request_id, revoked_count FROM revocations")).all()
    engine.dispose()
    assert [tuple(row) for row in trail] == [("req-a", 1)]
    # And one warning names what was mended
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["applied"] == MENDED[made_by]
    # And upgrading again finds nothing to mend
    with structlog.testing.capture_logs() as logs:
        migrate.upgrade(empty_database_url)
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []


def test_upgrading_a_healthy_database_mends_nothing(
    empty_database_url: str, fresh_schema: Schema
) -> None:
    # Given a database upgraded through every revision in order, holding rows
    migrate.upgrade(empty_database_url, "0005_event_versions")
    seed(empty_database_url)
    migrate.upgrade(empty_database_url, "0009")
    before = rows(empty_database_url)

    # When it is upgraded, from 0009 and again at head
    with structlog.testing.capture_logs() as logs:
        migrate.upgrade(empty_database_url)
        migrate.upgrade(empty_database_url)

    # Then nothing is mended and the schema is a fresh database's
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []
    assert schema_of(empty_database_url) == fresh_schema
    assert rows(empty_database_url) == before
