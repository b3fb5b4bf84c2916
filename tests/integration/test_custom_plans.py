"""Big transactions (a revoke job's chunks) are planned for their own parameters on
PostgreSQL, never with a generic plan cached when the tables were small."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from coupons.adapters.repos.jobs import ANALYZE_AFTER_LINES
from coupons.adapters.sql_uow import Database, SqlUnitOfWork
from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions
from coupons.services import job_runner
from coupons.services.common import utcnow
from tests.conftest import Backend
from tests.integration.test_job_claims import queued_job


def plan_mode(uow: SqlUnitOfWork) -> Any:
    return uow.conn.execute(text("SHOW plan_cache_mode")).scalar()


def test_custom_plans_hold_for_that_transaction_only(backend: Backend) -> None:
    # given one pooled connection, so the next transaction reuses the same session
    db = Database.from_url(backend.url, pool_size=1)
    try:
        if backend.name == "sqlite":
            # (plan caching is PostgreSQL's: SQLite takes the option and works as before)
            assert db.run(
                lambda uow: uow.conn.execute(text("SELECT 1")).scalar(), custom_plans=True
            )
            return
        inside = db.run(plan_mode, custom_plans=True)
        after = db.run(plan_mode)
    finally:
        db.dispose()

    assert inside == "force_custom_plan"
    assert after == "auto"


def test_the_job_worker_runs_its_chunks_with_custom_plans(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = queued_job(backend)
    worker = JobWorker(backend.db, JobWorkerOptions(chunk_size=2))
    assert (
        backend.db.run(
            lambda uow: job_runner.claim(uow, worker.owner, utcnow(), worker.options.lease)
        )
        == job_id
    )
    calls: list[dict[str, Any]] = []
    original = Database.run

    def spy(self: Database, work: Any, **options: Any) -> Any:
        calls.append(options)
        return original(self, work, **options)

    monkeypatch.setattr(Database, "run", spy)

    worker.run_job(job_id)

    chunks = [c for c in calls if c.get("custom_plans")]
    assert len(chunks) >= 2  # two chunks of two lines, then the one that finds it done
    with backend.db.unit_of_work(write=False) as uow:
        job = uow.jobs.get(1, job_id)
    assert job is not None and job.processed == 3


def test_a_big_staging_refreshes_the_planners_statistics_of_job_lines(backend: Backend) -> None:
    # given a job whose upload staged as many lines as make statistics worth refreshing
    job_id = queued_job(backend)
    many = ANALYZE_AFTER_LINES
    reltuples = text("SELECT reltuples FROM pg_class WHERE relname = 'revoke_job_lines'")

    def stage(uow: SqlUnitOfWork) -> tuple[Any, Any]:
        uow.jobs.add_lines(job_id, [(n, f"C{n}", f"c{n}") for n in range(10, 10 + many)])
        before = uow.conn.execute(reltuples).scalar() if backend.name == "postgresql" else None
        # when the service reports them
        uow.jobs.lines_added(many)
        after = uow.conn.execute(reltuples).scalar() if backend.name == "postgresql" else None
        uow.commit()
        return before, after

    before, after = backend.db.run(stage)

    # then PostgreSQL counted them (ANALYZE ran); SQLite has nothing to do
    if backend.name == "postgresql":
        assert before < many <= after
    else:
        assert before is None and after is None
