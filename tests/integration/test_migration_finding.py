"""Migration 0006: the revocations trail is folded from existing history, and the code and
series indexes are rebuilt, forward and back, on both backends."""

from __future__ import annotations

from sqlalchemy import text

from coupons.adapters import migrate
from coupons.adapters.db import create_db_engine
from tests.integration.test_migrations import seed_org_and_client, seed_series_7

NOW = "2026-11-26 10:00:00"
LATER = "2026-11-27 10:00:00"
HISTORY = [
    # (coupon, action, request, at, actor, reason)
    (1, "REVOKE", "req-a", NOW, "alice", "leak"),
    (2, "REVOKE", "req-a", NOW, "alice", "leak"),
    (3, "REVOKE", "req-b", LATER, "bob", None),
    (1, "REINSTATE", "req-c", LATER, "carol", None),
    (1, "REVOKE", "req-d", LATER, "dave", "again"),
]


def seed_0004(url: str) -> None:
    """Three coupons with revokes by two requests, one coupon reinstated and revoked again."""
    engine = create_db_engine(url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO orgs (id, name, created_at) VALUES (1, 'o', :t)"), {"t": NOW}
        )
        seed_series_7(conn)
        for i in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO coupons (id, org_id, series_id, code, code_norm, is_generic, "
                    "state, revoked_from, created_at, updated_at) "
                    "VALUES (:id, 1, 7, :code, :norm, false, 'REVOKED', 'AVAILABLE', :t, :t)"
                ),
                {"id": i, "code": f"Code-{i}", "norm": f"code-{i}", "t": NOW},
            )
        for coupon, action, request, at, actor, reason in HISTORY:
            conn.execute(
                text(
                    "INSERT INTO coupon_history (org_id, coupon_id, action, to_state, at, actor, "
                    "request_id, reason) VALUES (1, :c, :a, 'REVOKED', :at, :actor, :r, :reason)"
                ),
                {
                    "c": coupon,
                    "a": action,
                    "r": request,
                    "at": at,
                    "actor": actor,
                    "reason": reason,
                },
            )
    engine.dispose()


def trail(url: str) -> list[tuple[str, str, str | None, int, int]]:
    engine = create_db_engine(url, null_pool=True)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT request_id, actor, reason, revoked_count, reinstated_count "
                "FROM revocations ORDER BY request_id"
            )
        ).all()
    engine.dispose()
    return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]


def test_upgrade_folds_history_into_one_row_per_revoke_request(empty_database_url: str) -> None:
    # Given a database at 0004 with revokes by several requests and one reinstate
    migrate.upgrade(empty_database_url, "0004")
    seed_0004(empty_database_url)

    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")

    # Then each revoke request is one row; the reinstate counts against the revoke it undid
    assert trail(empty_database_url) == [
        ("req-a", "alice", "leak", 2, 1),
        ("req-b", "bob", None, 1, 0),
        ("req-d", "dave", "again", 1, 0),
    ]


def test_downgrade_and_upgrade_again_keep_coupons_and_rebuild_the_trail(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0004")
    seed_0004(empty_database_url)
    migrate.upgrade(empty_database_url, "head")

    migrate.downgrade(empty_database_url, "0004")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.connect() as conn:
        codes = conn.execute(text("SELECT code_norm FROM coupons ORDER BY id")).scalars().all()
        tables = set(conn.dialect.get_table_names(conn))
    engine.dispose()
    assert codes == ["code-1", "code-2", "code-3"]
    assert "revocations" not in tables

    migrate.upgrade(empty_database_url, "head")
    assert [row[0] for row in trail(empty_database_url)] == ["req-a", "req-b", "req-d"]


def test_0010_names_the_job_on_trail_rows_a_job_wrote_before_it(empty_database_url: str) -> None:
    # Given a database at 0009 where a job and a plain call each revoked something
    migrate.upgrade(empty_database_url, "0009")
    engine = create_db_engine(empty_database_url, null_pool=True)
    with engine.begin() as conn:
        seed_org_and_client(conn)
        conn.execute(
            text(
                "INSERT INTO revoke_jobs (id, org_id, kind, source, state, dry_run, code_case, "
                "client_id, created_by, created_at, total, cursor, processed, done_count, "
                "failed_count, duplicate_count, failed_by_code) VALUES ('job_1', 1, 'REVOKE', "
                "'FILE', 'SUCCEEDED', false, 'AS_IS', 1, 'u', :t, 1, 1, 1, 1, 0, 0, '{}')"
            ),
            {"t": NOW},
        )
        for request in ("job_1", "req-a"):
            conn.execute(
                text(
                    "INSERT INTO revocations (org_id, request_id, at, actor, revoked_count, "
                    "reinstated_count) VALUES (1, :r, :t, 'u', 1, 0)"
                ),
                {"r": request, "t": NOW},
            )
    # When it is upgraded
    migrate.upgrade(empty_database_url, "head")
    # Then the job's row names the job, the call's row names none
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT request_id, job_id FROM revocations ORDER BY request_id")
        ).all()
    assert [tuple(r) for r in rows] == [("job_1", "job_1"), ("req-a", None)]
    # and it goes back down to integers, which cannot name a job
    migrate.downgrade(empty_database_url, "0009")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(job_id) FROM revocations")).scalar_one() == 0
    engine.dispose()
