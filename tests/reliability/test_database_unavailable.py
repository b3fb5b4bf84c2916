"""A database that goes away (spec §10): 9023 / HTTP 503 with `Retry-After`, never a 500, and
a retry with the same `Idempotency-Key` applies once, whatever happened to the first try.

The connection failures are simulated here, on both stores; the throwaway-cluster tests in
`tests/multihost/` stop a real PostgreSQL under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from coupons.adapters.sql_uow import SqlUnitOfWork
from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.conftest import Backend, Credentials
from tests.e2e.conftest import Api, error_code
from tests.reliability.live import free_port

TOKEN_SECRET = "test-signing-key-0123456789abcdef0123456789"


def lost_connection() -> OperationalError:
    """What SQLAlchemy raises when the server closes the connection under a statement."""
    return OperationalError(
        "COMMIT", None, psycopg.OperationalError("server closed the connection unexpectedly")
    )


@dataclass
class Fault:
    """A lost connection at the next commit, once armed: `after` the commit went through
    (the client cannot know it did) or before it."""

    after: bool
    armed: bool = False
    fired: int = 0


def ours(uow: SqlUnitOfWork, backend: Backend) -> bool:
    """Whether `uow` is the test app's: the class is patched for the whole process, where
    other databases' background workers (the browser tests' servers) commit too."""
    return uow._engine in backend.db.engines  # revokes on PostgreSQL: the loop's engine


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch, backend: Backend) -> Fault:
    chosen = Fault(after=True)
    original = SqlUnitOfWork.commit

    def commit(self: SqlUnitOfWork) -> None:
        if not chosen.armed or not ours(self, backend):
            original(self)
            return
        chosen.armed = False
        chosen.fired += 1
        if chosen.after:
            original(self)
        raise lost_connection()

    monkeypatch.setattr(SqlUnitOfWork, "commit", commit)
    return chosen


def test_a_commit_whose_answer_is_lost_is_a_503_and_a_retry_with_its_key_applies_once(
    api: Api, fault: Fault
) -> None:
    # given a coupon, and a database whose answer to the next COMMIT gets lost
    series_id = api.series(codes=["GONE-1"])
    fault.armed = True
    body = {"couponSeriesId": series_id, "couponCodes": ["GONE-1"], "reason": "lost"}
    key = {"Idempotency-Key": "lost-commit-1"}

    # when the revoke is sent, and then sent again with the same key
    first = api.revoke_with(body, key)
    again = api.revoke_with(body, key)

    # then the first answer is 9023 / 503 with Retry-After, never a 500, and it does not
    # claim that nothing was written: it was, and only the keyed retry can tell
    assert fault.fired == 1
    assert first.status_code == 503
    assert error_code(first) == 9023
    assert int(first.headers["Retry-After"]) >= 1
    message = first.json()["errors"][0]["message"]
    assert "may or may not have been written" in message and "Idempotency-Key" in message
    assert "nothing was written" not in message
    # and the retry answers what the committed revoke did, which happened exactly once
    assert again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    coupon_id = api.ok(again)["revokedCoupons"][0]["couponId"]
    assert [h["action"] for h in api.coupon(coupon_id)["history"]] == ["REVOKE"]


def test_a_connection_lost_before_commit_is_retried_on_a_fresh_one_and_applies_once(
    api: Api, fault: Fault
) -> None:
    # given a coupon, and a connection that is gone by the time the revoke commits
    series_id = api.series(codes=["STALE-1"])
    fault.after, fault.armed = False, True

    # when it is revoked
    response = api.revoke({"couponSeriesId": series_id, "couponCodes": ["STALE-1"]})

    # then the server rolled that attempt back and ran it again: one answer, one change
    assert fault.fired == 1
    coupon_id = api.ok(response)["revokedCoupons"][0]["couponId"]
    assert [h["action"] for h in api.coupon(coupon_id)["history"]] == ["REVOKE"]


@pytest.fixture
def unreachable() -> Iterator[TestClient]:
    """An app whose PostgreSQL does not exist: nothing listens on its port."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/coupons"
    app = create_app(Settings(database_url=url, token_secret=TOKEN_SECRET))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    app.state.db.dispose()


def test_health_answers_503_with_retry_after_while_the_database_is_unreachable(
    unreachable: TestClient,
) -> None:
    response = unreachable.get("/health")

    assert response.status_code == 503
    assert error_code(response) == 9023
    assert response.headers["Retry-After"] == "2"
    # before any commit: nothing was written, and the answer says so
    assert "nothing was written" in response.json()["errors"][0]["message"]


def test_a_request_while_the_database_is_unreachable_is_a_503_not_a_500(
    unreachable: TestClient, acme_admin: Credentials
) -> None:
    response = unreachable.post(
        "/v2/coupon/revoke",
        json={"couponSeriesId": 1, "couponCodes": ["ANY-1"]},
        headers=acme_admin.headers,
    )

    assert response.status_code == 503
    assert error_code(response) == 9023
    assert response.headers["Retry-After"] == "2"


def test_health_is_a_503_while_the_database_takes_no_writes(read_only_postgres: str) -> None:
    # given a migrated database that has turned read-only (a primary demoted in a failover
    # answers reads and refuses every write)
    app = create_app(Settings(database_url=read_only_postgres, token_secret=TOKEN_SECRET))

    # when a load balancer asks for its health
    with TestClient(app) as client:
        response = client.get("/health")
    app.state.db.dispose()

    # then it is out of rotation, told when to ask again, as for a database that is away
    assert response.status_code == 503
    assert error_code(response) == 9023
    assert response.headers["Retry-After"] == "2"


def test_health_touches_the_database(backend: Backend, api: Api) -> None:
    # the shared stores answer: 200 and which backend
    entity = api.ok(api.get("/health"))
    assert entity["database"] == backend.name


def test_a_statement_timeout_is_a_503_with_nothing_written(
    backend: Backend, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a coupon, and a database that cancels the next commit's statement (57014)
    series_id = api.series(codes=["SLOW-1"])
    original = SqlUnitOfWork.commit

    def commit(self: SqlUnitOfWork) -> None:
        if not ours(self, backend):
            original(self)
            return
        monkeypatch.setattr(SqlUnitOfWork, "commit", original)
        raise OperationalError("UPDATE", None, psycopg.errors.QueryCanceled("statement timeout"))

    monkeypatch.setattr(SqlUnitOfWork, "commit", commit)

    # when it is revoked
    response = api.revoke({"couponSeriesId": series_id, "couponCodes": ["SLOW-1"]})

    # then the answer is 9023 / 503 and the coupon is unchanged (revocable now)
    assert response.status_code == 503
    assert error_code(response) == 9023
    assert api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["SLOW-1"]}))[
        "revokedCoupons"
    ]


def test_a_revoke_job_waits_out_an_outage_and_ends_as_if_none_happened(
    api: Api, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job of 120 codes run in chunks of 50, and a database that loses the connection
    # under three chunk commits in a row: past the one retry on a fresh connection, so the
    # worker sees 9023 (the database is away)
    from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions
    from coupons.services import job_runner
    from coupons.services.common import utcnow
    from tests.e2e.test_revoke_jobs import accepted, job_of, report, upload

    codes = [f"OUT-{i:03}" for i in range(120)]
    series_id = api.series(codes=codes)
    job = accepted(upload(api, "\n".join(codes), couponSeriesId=series_id))
    lost = {"left": 0, "fired": 0}
    original = SqlUnitOfWork.commit

    def commit(self: SqlUnitOfWork) -> None:
        if lost["left"] and ours(self, backend):
            lost["left"] -= 1
            lost["fired"] += 1
            raise lost_connection()
        original(self)

    monkeypatch.setattr(SqlUnitOfWork, "commit", commit)
    worker = JobWorker(backend.db, JobWorkerOptions(chunk_size=50, poll_interval=0.01))
    claimed = backend.db.run(
        lambda uow: job_runner.claim(uow, worker.owner, utcnow(), worker.options.lease)
    )
    assert claimed is not None and claimed == job["jobId"]
    job_id = claimed

    # when the worker runs it, the outage starting after its first chunk
    first = backend.db.run(
        lambda uow: job_runner.run_chunk(
            uow, job_id, worker.owner, utcnow(), worker.options.lease, 50
        ),
        custom_plans=True,
    )
    assert first
    lost["left"] = 3
    worker.run_job(job_id)

    # then it went on once the database answered: SUCCEEDED, each code revoked once
    assert lost["fired"] == 3
    done = job_of(api, job["jobId"])
    assert (done["state"], done["revokedCount"], done["processed"]) == ("SUCCEEDED", 120, 120)
    assert [row[1] for row in report(api, job["jobId"])[1:]] == ["revoked"] * 120
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["REVOKED"] == 120


def test_a_codes_upload_cancelled_by_the_server_is_a_503_with_no_job(
    backend: Backend, api: Api
) -> None:
    # The upload's lines go in by COPY, past SQLAlchemy: cancelled by the server (a
    # statement timeout, an operator's cancel), its raw error was a 500
    if backend.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    import threading
    import time

    from tests.e2e.test_revoke_jobs import upload

    series_id = api.series(codes=["UP-1"])
    driver_url = backend.url.replace("postgresql+psycopg://", "postgresql://")
    cancelled = threading.Event()

    def block_then_cancel() -> None:
        # the line table held, so the COPY waits; then its backend is cancelled
        with (
            psycopg.connect(driver_url) as holder,
            psycopg.connect(driver_url, autocommit=True) as admin,
        ):
            holder.execute("LOCK TABLE revoke_job_lines IN ACCESS EXCLUSIVE MODE")
            for _ in range(200):
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY revoke_job_lines%' "
                    "AND wait_event_type = 'Lock'"
                ).fetchone()
                if row is not None:
                    admin.execute("SELECT pg_cancel_backend(%s)", (row[0],))
                    cancelled.set()
                    break
                time.sleep(0.05)
            holder.rollback()

    thread = threading.Thread(target=block_then_cancel)
    thread.start()
    time.sleep(0.3)  # the lock is taken first
    try:
        response = upload(api, "UP-1\n", couponSeriesId=series_id)
    finally:
        thread.join(30)

    assert cancelled.is_set()
    assert (response.status_code, error_code(response)) == (503, 9023), response.text
    assert api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"] == []
