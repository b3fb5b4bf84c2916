"""Job leases on both stores: one holder at a time, a dead holder's job is taken over, and a
chunk of a lost lease changes nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

from coupons.domain.codes import CodeCase
from coupons.domain.codes_file import FileCode
from coupons.domain.jobs import JobState
from coupons.services import job_runner, jobs
from coupons.services.common import Actor, Context, utcnow
from coupons.services.ports import UnitOfWork
from tests.conftest import Backend

LEASE = timedelta(seconds=30)


def queued_job(backend: Backend) -> str:
    """A QUEUED three-line job of acme (org and client 1 exist in every test database)."""
    ctx = Context(Actor(1, 1, "acme-admin", frozenset()), "req", utcnow())
    request = jobs.JobRequest(None, "r", True, CodeCase.UPPER)
    codes = [FileCode(1, "A1"), FileCode(2, "A2"), FileCode(3, "A1")]
    job_id = jobs.stage_upload(backend.db, ctx, request, codes)

    def open_it(uow: UnitOfWork) -> None:
        jobs.open_upload(uow, ctx, job_id)
        uow.commit()

    backend.db.run(open_it)
    return job_id


def claim(backend: Backend, owner: str, shift: timedelta = timedelta()) -> str | None:
    return backend.db.run(lambda uow: job_runner.claim(uow, owner, utcnow() + shift, LEASE))


def test_a_job_is_held_by_one_worker_until_its_lease_runs_out(backend: Backend) -> None:
    job_id = queued_job(backend)
    # given worker A holds the job
    assert claim(backend, "A") == job_id
    # then B finds nothing to do while A's lease lasts
    assert claim(backend, "B") is None
    # and once it has run out (A died), B takes the job over
    assert claim(backend, "B", shift=LEASE + timedelta(seconds=1)) == job_id


def test_a_chunk_run_by_a_worker_that_lost_its_lease_does_nothing(backend: Backend) -> None:
    job_id = queued_job(backend)
    assert claim(backend, "A") == job_id
    later = utcnow() + LEASE + timedelta(seconds=1)
    assert claim(backend, "B", shift=LEASE + timedelta(seconds=1)) == job_id

    def chunk_of(owner: str) -> bool:
        return backend.db.run(
            lambda uow: job_runner.run_chunk(uow, job_id, owner, later, LEASE, chunk_size=2)
        )

    # when A wakes up and runs a chunk, nothing happens: the job is B's
    assert chunk_of("A") is False
    with backend.db.unit_of_work(write=False) as uow:
        job = uow.jobs.get(1, job_id)
    assert job is not None and job.processed == 0 and job.claimed_by == "B"
    # while B's chunks do the job, the repeated code reported as a duplicate
    assert chunk_of("B") is True
    assert chunk_of("B") is False
    with backend.db.unit_of_work(write=False) as uow:
        job = uow.jobs.get(1, job_id)
        rows = uow.jobs.report(job_id, 0, 10)
    assert job is not None and job.state is JobState.SUCCEEDED and job.claimed_by is None
    assert [(r.code, r.outcome) for r in rows] == [
        ("A1", "not_found"),
        ("A2", "not_found"),
        ("A1", "duplicate_in_file"),
    ]


def test_workers_claiming_at_the_same_instant_never_share_a_job(backend: Backend) -> None:
    # given two runnable jobs and six workers, each on its own connection, released together
    # by a barrier, over several rounds (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: its
    # write lock serializes the claims)
    workers = 6
    for round_number in range(8):
        queued = {queued_job(backend), queued_job(backend)}
        won = claim_together(backend, [f"w{round_number}-{i}" for i in range(workers)])

        # then each job went to exactly one worker, and the others found nothing
        taken = [job for job in won if job is not None]
        assert sorted(taken) == sorted(queued), won
        with backend.db.unit_of_work(write=False) as uow:
            holders = {job: uow.jobs.get(1, job) for job in queued}
        for job_id, job in holders.items():
            assert job is not None
            assert job.claimed_by == f"w{round_number}-{won.index(job_id)}"
        # (end them, so the next round's claims see only its own jobs)
        for job_id in queued:
            backend.db.run(lambda uow, job_id=job_id: _end(uow, job_id))  # type: ignore[misc]


def claim_together(backend: Backend, owners: list[str]) -> list[str | None]:
    """Each owner claims on its own thread and connection, all released at once."""
    start = threading.Barrier(len(owners))
    won: list[str | None] = [None] * len(owners)

    def take(i: int) -> None:
        start.wait()
        won[i] = claim(backend, owners[i])

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(owners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won


def _end(uow: UnitOfWork, job_id: str) -> None:
    uow.jobs.set_state(job_id, JobState.CANCELLED, utcnow())
    uow.commit()
