"""Migrations applied to a database that already holds coupons, forward and back, on both
backends: an upgrade must carry existing rows over, not only build an empty schema."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zlib

import pytest
from sqlalchemy import Connection, Engine, make_url, text

from coupons.adapters import migrate
from coupons.adapters.db import create_db_engine
from coupons.adapters.repos import SqlHistoryRepository
from tests.conftest import scratch_postgres

NOW = "2026-11-26 10:00:00"
# The migration lock's two keys, as another host's migration takes them.
MIGRATION_KEYS = dict(zip("ab", migrate.MIGRATION_LOCK, strict=True))


def seed_org_and_client(conn: Connection) -> None:
    """Org 1 and its API client 1, as any revision since the first has them."""
    conn.execute(text("INSERT INTO orgs (id, name, created_at) VALUES (1, 'o', :t)"), {"t": NOW})
    conn.execute(
        text(
            "INSERT INTO api_clients (id, org_id, username, secret_hash, groups, is_active, "
            "created_at) VALUES (1, 1, 'c', 'h', 'default', true, :t)"
        ),
        {"t": NOW},
    )


def seed_series_7(conn: Connection) -> None:
    """Series 7 of org 1, in columns no revision since the first changed."""
    conn.execute(
        text(
            "INSERT INTO coupon_series (id, org_id, description, client_handling_type, "
            "valid_till, discount_type, discount_value, created_at) "
            "VALUES (7, 1, 's', 'DISC_CODE', :t, 'ABS', 5, :t)"
        ),
        {"t": NOW},
    )


def seed_0003(url: str) -> None:
    """One series with one coupon in each state, written against the 0003 schema."""
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO orgs (id, name, created_at) VALUES (1, 'o', :t)"), {"t": NOW}
        )
        seed_series_7(conn)
        for i, state in enumerate(["AVAILABLE", "AVAILABLE", "ISSUED", "REDEEMED", "REVOKED"]):
            conn.execute(
                text(
                    "INSERT INTO coupons (id, org_id, series_id, code, code_norm, is_generic, "
                    "state, created_at, updated_at) "
                    "VALUES (:id, 1, 7, :code, :code, false, :state, :t, :t)"
                ),
                {"id": i + 1, "code": f"C{i}", "state": state, "t": NOW},
            )
        # A history row refers to a coupon: a downgrade must not rebuild the table under it.
        conn.execute(
            text(
                "INSERT INTO coupon_history (org_id, coupon_id, action, to_state, at, actor, "
                "request_id) VALUES (1, 3, 'ISSUE', 'ISSUED', :t, 'test', 'r1')"
            ),
            {"t": NOW},
        )
    engine.dispose()


def pool(url: str) -> list[tuple[int, int | None]]:
    engine = create_db_engine(url, null_pool=True)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, pool_series_id FROM coupons ORDER BY id")).all()
    engine.dispose()
    return [(int(i), None if s is None else int(s)) for i, s in rows]


def test_pool_column_upgrade_keeps_the_pool_and_follows_state_changes(
    empty_database_url: str,
) -> None:
    # Given a database at 0003 holding coupons in every state
    migrate.upgrade(empty_database_url, "0003")
    seed_0003(empty_database_url)
    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")
    # Then exactly the AVAILABLE coupons are in their series' pool
    assert pool(empty_database_url) == [(1, 7), (2, 7), (3, None), (4, None), (5, None)]
    # And the column follows state changes without anyone writing it
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(text("UPDATE coupons SET state = 'ISSUED' WHERE id = 1"))
        conn.execute(text("UPDATE coupons SET state = 'AVAILABLE' WHERE id = 5"))
    engine.dispose()
    assert pool(empty_database_url) == [(1, None), (2, 7), (3, None), (4, None), (5, 7)]


def test_pool_column_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    # Given a database at head with coupons
    migrate.upgrade(empty_database_url, "0003")
    seed_0003(empty_database_url)
    migrate.upgrade(empty_database_url, "head")
    # When it goes back to 0003 and forward again
    migrate.downgrade(empty_database_url, "0003")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.connect() as conn:
        columns = conn.execute(text("SELECT * FROM coupons")).keys()
    engine.dispose()
    assert "pool_series_id" not in columns
    migrate.upgrade(empty_database_url, "head")
    # Then no coupon was lost and the pool is rebuilt
    assert pool(empty_database_url) == [(1, 7), (2, 7), (3, None), (4, None), (5, None)]


def test_event_versions_number_existing_history_and_go_back_and_forth(
    empty_database_url: str,
) -> None:
    # Given a database at 0004 whose coupons 3 and 5 already have history
    migrate.upgrade(empty_database_url, "0003")
    seed_0003(empty_database_url)
    migrate.upgrade(empty_database_url, "0004")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        for coupon_id, action, state in [(5, "ISSUE", "ISSUED"), (3, "REDEEM", "REDEEMED")]:
            conn.execute(
                text(
                    "INSERT INTO coupon_history (org_id, coupon_id, action, to_state, at, "
                    "actor, request_id) VALUES (1, :c, :a, :s, :t, 'test', 'r2')"
                ),
                {"c": coupon_id, "a": action, "s": state, "t": NOW},
            )

    def versions() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        with engine.connect() as conn:
            coupons = conn.execute(text("SELECT id, version FROM coupons ORDER BY id")).all()
            history = conn.execute(
                text("SELECT coupon_id, coupon_version FROM coupon_history ORDER BY id")
            ).all()
        return [(int(a), int(b)) for a, b in coupons], [(int(a), int(b)) for a, b in history]

    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")

    # Then each coupon's version counts its history, and each row is numbered per coupon
    assert versions() == ([(1, 0), (2, 0), (3, 2), (4, 0), (5, 1)], [(3, 1), (5, 1), (3, 2)])
    # And it goes back to 0004 and forward again with the same numbers
    migrate.downgrade(empty_database_url, "0004")
    migrate.upgrade(empty_database_url, "head")
    assert versions() == ([(1, 0), (2, 0), (3, 2), (4, 0), (5, 1)], [(3, 1), (5, 1), (3, 2)])
    engine.dispose()


def test_replay_request_id_upgrade_keeps_stored_responses_and_downgrades(
    empty_database_url: str,
) -> None:
    # Given a database at 0004 with a response stored under an idempotency key
    migrate.upgrade(empty_database_url, "0004")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        seed_org_and_client(conn)
        conn.execute(
            text(
                "INSERT INTO idempotency_keys (client_id, key, org_id, fingerprint, status_code, "
                "body, created_at) VALUES (1, 'k', 1, 'f', 200, :b, :t)"
            ),
            {"b": b'{"success":true}', "t": NOW},
        )

    # When it is upgraded, then the stored response is kept, with no request id to replay
    migrate.upgrade(empty_database_url, "head")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT body, request_id FROM idempotency_keys")).one()
    assert (bytes(row.body), row.request_id) == (b'{"success":true}', None)

    # And when it goes back to 0004 and forward again, the row survives both ways
    migrate.downgrade(empty_database_url, "0004")
    with engine.connect() as conn:
        columns = conn.execute(text("SELECT * FROM idempotency_keys")).keys()
        assert "request_id" not in columns
    migrate.upgrade(empty_database_url, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 1
    engine.dispose()


def test_revoke_jobs_upgrade_keeps_history_and_downgrade_drops_org_events(
    empty_database_url: str,
) -> None:
    # Given a database just before the jobs revision, holding a coupon's history
    migrate.upgrade(empty_database_url, "0003")
    seed_0003(empty_database_url)
    migrate.upgrade(empty_database_url, "0005_event_versions")
    # When it is upgraded and an org-level event (no coupon) is written
    migrate.upgrade(empty_database_url, "head")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO coupon_history (org_id, coupon_id, action, to_state, at, actor, "
                "request_id) VALUES (1, NULL, 'JOB_FINISHED', 'SUCCEEDED', :t, 'test', 'job_1')"
            ),
            {"t": NOW},
        )
        assert conn.execute(text("SELECT count(*) FROM revoke_jobs")).scalar() == 0
    # And taken back to 0005 and forward again
    migrate.downgrade(empty_database_url, "0005_event_versions")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT coupon_id, request_id FROM coupon_history")).all()
        tables = set(
            conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if conn.dialect.name == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ).scalars()
        )
    engine.dispose()
    # Then the coupon's history survived, the org event (which 0005 cannot hold) did not
    assert [(int(c), r) for c, r in rows] == [(3, "r1")]
    assert "revoke_jobs" not in tables and "revoke_job_lines" not in tables
    migrate.upgrade(empty_database_url, "head")


def test_upgrades_started_together_all_succeed_one_after_another(empty_database_url: str) -> None:
    # hosts starting a new release together each migrate first: all but one failed on what
    # the first had made ("duplicate key value", "column already exists")
    command = [sys.executable, "-m", "coupons.entrypoints.cli", "db", "upgrade"]
    runs = [
        subprocess.Popen(
            [*command, "--db", empty_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    assert migrate.current_revision(empty_database_url) == migrate.head_revision()


def test_migrations_wait_and_run_past_the_roles_statement_timeout(
    postgres_admin_url: str | None,
) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with scratch_postgres(postgres_admin_url, "coupons_timeouts") as url:
        # Given a database whose sessions give up on a statement or a lock after 1 s (the
        # deployment guide sets a role's statement_timeout), and another host's migration
        # holding the migration lock for 2.5 s
        name = make_url(url).database
        engine = create_db_engine(url, null_pool=True)
        with engine.connect() as conn:
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET statement_timeout = '1s'"))
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '1s'"))
            conn.commit()
        holder = engine.connect()
        holder.execute(text("SELECT pg_advisory_lock(:a, :b)"), MIGRATION_KEYS)
        release = threading.Timer(
            2.5,
            lambda: holder.execute(text("SELECT pg_advisory_unlock(:a, :b)"), MIGRATION_KEYS),
        )
        release.start()
        try:
            # When this host migrates
            revision = migrate.upgrade(url)
        finally:
            release.join()
            holder.close()
            engine.dispose()

        # Then it waited for the other and migrated, instead of failing to start
        assert revision == migrate.head_revision()


def packed(job_id: str) -> bytes:
    """A console start's answer as the service stores it (`adapters/repos/idempotency.py`)."""
    return zlib.compress(b'{"jobId":"%s"}' % job_id.encode(), 1)


def store_answer(conn: Connection, client_id: int, key: str, body: bytes, at: str) -> None:
    conn.execute(
        text(
            "INSERT INTO idempotency_keys (client_id, key, org_id, fingerprint, "
            "status_code, body, created_at) VALUES (:c, :k, 1, 'f', 200, :b, :t)"
        ),
        {"c": client_id, "k": key, "b": body, "t": at},
    )


def seeded_at(url: str, revision: str) -> Engine:
    """The database at `url` brought to `revision`, with org 1 and its client 1."""
    migrate.upgrade(url, revision)
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        seed_org_and_client(conn)
    return engine


def insert_job(conn: Connection, job_id: str, org_id: int, dry_run: bool) -> None:
    conn.execute(
        text(
            "INSERT INTO revoke_jobs (id, org_id, kind, source, state, dry_run, "
            "code_case, client_id, created_by, created_at, total, cursor, processed, "
            "done_count, failed_count, duplicate_count, failed_by_code) VALUES (:id, "
            ":org, 'REVOKE', 'FILE', 'SUCCEEDED', :dry, 'AS_IT_IS', 1, 'a', :t, 0, 0, "
            "0, 0, 0, 0, '{}')"
        ),
        {"id": job_id, "org": org_id, "dry": dry_run, "t": NOW},
    )


def test_preview_started_job_upgrade_carries_the_first_console_start_over_and_downgrades(
    empty_database_url: str,
) -> None:
    # Given a database at 0012 with a preview started from the console twice (two people, two
    # stored answers), another org's job named by a forged answer, and a preview never started
    migrate.upgrade(empty_database_url, "0012")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        seed_org_and_client(conn)
        conn.execute(
            text("INSERT INTO orgs (id, name, created_at) VALUES (2, 'p', :t)"), {"t": NOW}
        )
        for job_id, org_id, dry_run in [
            ("job_preview", 1, True),
            ("job_first", 1, False),
            ("job_second", 1, False),
            ("job_elsewhere", 2, False),
            ("job_untouched", 1, True),
        ]:
            insert_job(conn, job_id, org_id, dry_run)
        conn.execute(
            text(
                "INSERT INTO api_clients (id, org_id, username, secret_hash, groups, is_active, "
                "created_at) VALUES (2, 1, 'd', 'h', 'default', true, :t)"
            ),
            {"t": NOW},
        )
        # The service stores answers compressed (older ones as plain JSON): both are read.
        for client_id, key, body, at in [
            (2, "console-start:job_preview", packed("job_second"), "2026-11-26 10:00:02"),
            (1, "console-start:job_preview", packed("job_first"), "2026-11-26 10:00:01"),
            (1, "console-start:job_untouched", b'{"jobId":"job_elsewhere"}', NOW),
            (1, "console-form:x", b'{"jobId":"job_first"}', NOW),
        ]:
            store_answer(conn, client_id, key, body, at)

    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, started_job_id FROM revoke_jobs")).all()
    started: dict[str, str | None] = {r.id: r.started_job_id for r in rows}

    # Then the preview names the job its first start made; nothing else names a job
    assert started == {
        "job_preview": "job_first",
        "job_first": None,
        "job_second": None,
        "job_elsewhere": None,
        "job_untouched": None,
    }

    # And it goes back to 0012 and forward again, keeping the jobs
    migrate.downgrade(empty_database_url, "0012")
    with engine.connect() as conn:
        columns = conn.execute(text("SELECT * FROM revoke_jobs")).keys()
        assert "started_job_id" not in columns
    migrate.upgrade(empty_database_url, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM revoke_jobs")).scalar() == 5
    engine.dispose()


def test_a_database_past_0013_has_its_started_previews_carried_over_again(
    empty_database_url: str,
) -> None:
    # Given a database that ran the first 0013, which read no compressed answer: a preview
    # started before it still names no job, while its start's answer is stored
    engine = seeded_at(empty_database_url, "0013")
    with engine.begin() as conn:
        insert_job(conn, "job_preview", 1, True)
        insert_job(conn, "job_started", 1, False)
        store_answer(conn, 1, "console-start:job_preview", packed("job_started"), NOW)

    # When it is upgraded to the newest revision
    migrate.upgrade(empty_database_url, "head")

    # Then the preview names the job it was started as: no second person can start it again
    with engine.connect() as conn:
        started = conn.execute(
            text("SELECT started_job_id FROM revoke_jobs WHERE id = 'job_preview'")
        ).scalar()
    engine.dispose()
    assert started == "job_started"


def test_jobs_get_their_failed_lines_counted_by_outcome_on_upgrade(
    empty_database_url: str,
) -> None:
    # Given a database at 0014 with a finished job whose lines failed in three ways, two of
    # them under one error code (682: already revoked, not found)
    engine = seeded_at(empty_database_url, "0014")
    with engine.begin() as conn:
        insert_job(conn, "job_done", 1, False)
        insert_job(conn, "job_empty", 1, False)
        for line_no, outcome, error in [
            (1, "revoked", None),
            (2, "already_revoked", 682),
            (3, "not_found", 682),
            (4, "not_found", 682),
            (5, "redeemed", 405),
            (6, "duplicate_in_file", None),
            (7, None, None),  # not reached yet
        ]:
            conn.execute(
                text(
                    "INSERT INTO revoke_job_lines (job_id, line_no, code, norm, outcome, "
                    "error_code) VALUES ('job_done', :n, :c, :c, :o, :e)"
                ),
                {"n": line_no, "c": f"C{line_no}", "o": outcome, "e": error},
            )

    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")

    # Then each job counts its failed lines by outcome, and a job without lines counts none
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, failed_by_outcome FROM revoke_jobs")).all()
    counted: dict[str, str] = {row.id: row.failed_by_outcome for row in rows}
    engine.dispose()
    assert json.loads(counted["job_done"]) == {"already_revoked": 1, "not_found": 2, "redeemed": 1}
    assert json.loads(counted["job_empty"]) == {}


def test_a_running_migration_holds_no_event_reader_back(postgres_admin_url: str | None) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with scratch_postgres(postgres_admin_url, "coupons_migration_lock") as url:
        # Given events numbered past 300 million (the migration lock's key as one number was
        # about 202 million), and a migration running on another host, holding its lock
        migrate.upgrade(url)
        engine = create_db_engine(url, null_pool=True)
        with engine.begin() as conn:
            seed_org_and_client(conn)
            conn.execute(text("SELECT setval('coupon_history_id_seq', 300000000)"))
            conn.execute(
                text(
                    "INSERT INTO coupon_history (id, org_id, coupon_id, action, to_state, at, "
                    "actor, request_id) VALUES (nextval('coupon_history_id_seq'), 1, NULL, "
                    "'JOB_FINISHED', 'SUCCEEDED', :t, 'test', 'job_1')"
                ),
                {"t": NOW},
            )
        migration = engine.connect()
        migration.execute(text("SELECT pg_advisory_lock(:a, :b)"), MIGRATION_KEYS)
        try:
            # When the org's events are read meanwhile
            with engine.connect() as conn:
                events = SqlHistoryRepository(conn).events(1, after=0, limit=10)
        finally:
            migration.close()
            engine.dispose()

        # Then the event is there: the migration's lock is no writer's fence
        assert [e.id for e in events] == [300000001]
