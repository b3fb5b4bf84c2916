"""Schema migrations through Alembic; the only way the schema is created."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text

from coupons.adapters.db import create_db_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The advisory lock every migration run of this schema takes: two 32-bit keys, a key space
# apart from the one-number locks by which event writers fence their ids (the event reader
# counts those, `repos.history._FINAL_BOUND`). As one number it read as a writer's fence once
# event ids passed it, and held every event reader back for as long as a migration ran.
MIGRATION_LOCK = (0x0C0B, 0x0DB0)
# Earlier commits of main shipped 0009 revising 0005, 0006 or 0007 (branches merged in another
# order), so databases they made are stamped 0009 or later without what the revisions between
# create. Each such revision, in order, with the table it creates (none of them changed since).
SKIPPED_UNDER_0009 = (
    ("0006_finding", "revocations"),
    ("0007", "revoke_jobs"),
    ("0008_console_users", "users"),
)

log = structlog.get_logger(__name__)


class SchemaAhead(Exception):
    """The database was migrated by a newer release: this code does not know its revision,
    so it can neither upgrade it nor work on it."""

    def __init__(self, current: str, head: str) -> None:
        super().__init__(
            f"the database was migrated by a newer release (revision {current}; this version "
            f"knows up to {head}): run that release or newer"
        )
        self.current = current
        self.head = head


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> str:
    """Bring the database at `url` to `revision`, the newest by default (idempotent);
    returns the revision it is at."""
    _run(url, command.upgrade, revision, mend=True)
    return current_revision(url) or ""


def downgrade(url: str, revision: str) -> str:
    """Take the database at `url` back to `revision`; returns the revision it is at."""
    _run(url, command.downgrade, revision)
    return current_revision(url) or ""


def _run(
    url: str, step: Callable[[Config, str], None], revision: str, *, mend: bool = False
) -> None:
    engine = create_db_engine(url, null_pool=True)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One migration at a time: hosts starting a new release together (every
                # `coupons serve` migrates first) each ran the same steps, and all but one
                # failed on what the first had made. The lock is the transaction's, so it
                # holds through PgBouncer too; the next one then finds nothing to do.
                # No bound on this transaction's waits and steps: a role's `statement_timeout`
                # (docs/deployment.md) cancelled the wait for another host's migration, and a
                # step rewriting a big table, so every host but one failed to start.
                conn.execute(text("SET LOCAL statement_timeout = 0"))
                conn.execute(text("SET LOCAL lock_timeout = 0"))
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:a, :b)"),
                    dict(zip("ab", MIGRATION_LOCK, strict=True)),
                )
            config = alembic_config(url)
            script = ScriptDirectory.from_config(config)
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and not _is_known(script, current):
                # Alembic would say only that it cannot locate the revision.
                raise SchemaAhead(current, _head(script))
            if mend and current is not None:
                _mend_skipped_revisions(conn, script, current)
            config.attributes["connection"] = conn
            step(config, revision)
    finally:
        engine.dispose()


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # "Can't locate revision"
        return False


def _head(script: ScriptDirectory) -> str:
    head = script.get_current_head()
    assert head is not None
    return head


def _mend_skipped_revisions(conn: Connection, script: ScriptDirectory, current: str) -> None:
    """Apply what an earlier 0009 skipped (see SKIPPED_UNDER_0009) to a database stamped 0009
    or later (`current`, a revision this code knows) that lacks it, so the upgrade that
    follows finds the schema its steps expect."""
    ancestors = {each.revision for each in script.iterate_revisions(current, "base")}
    if "0009" not in ancestors:
        return
    tables = set(inspect(conn).get_table_names())
    missing = [revision for revision, table in SKIPPED_UNDER_0009 if table not in tables]
    if not missing:
        return
    context = MigrationContext.configure(
        conn, opts={"render_as_batch": conn.dialect.name == "sqlite"}
    )
    with Operations.context(context):
        for revision in missing:
            found = script.get_revision(revision)
            assert found is not None
            found.module.upgrade()
    log.warning(
        "schema mended: revisions an earlier 0009 skipped were applied",
        stamped=current,
        applied=missing,
    )


def probe_write(url: str) -> None:
    """Raise what the database at `url` raises on a write (a read-only file, a replica); an
    upgrade with nothing to do writes nothing, so it would not notice. The probe changes
    nothing and is rolled back."""
    engine = create_db_engine(url, null_pool=True)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_db_engine(url, null_pool=True)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    return _head(ScriptDirectory.from_config(alembic_config("sqlite://")))


def schema_problem(url: str, upgrade: str = "coupons db upgrade") -> str | None:
    """Why this version cannot work on the database at `url` as it stands (its schema is not
    the one this code was written for), or None; `upgrade` is the command the advice names
    (with the `--db` the caller was given: run bare, it would upgrade another database).
    Raises what connecting raises."""
    script = ScriptDirectory.from_config(alembic_config(url))
    current, head = current_revision(url), _head(script)
    if current == head:
        return None
    if current is not None and not _is_known(script, current):
        return str(SchemaAhead(current, head))
    return (
        f"the database schema is at {current or 'nothing'}, this version needs {head}: "
        f"run `{upgrade}` first"
    )
