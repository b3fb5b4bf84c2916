"""The revoke job worker: a thread of `coupons serve`, or part of `coupons worker`.

It leases one job at a time and runs it chunk by chunk, each chunk one transaction, until the
job ends, its lease is lost, or the worker is stopped (then the current chunk finishes and the
lease is given back, so another worker resumes at once). A worker that dies keeps its lease
until it runs out; then any other worker resumes the job from its last committed chunk.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog

from coupons.adapters.sql_uow import Database
from coupons.domain.errors import CouponError, DatabaseUnavailable
from coupons.entrypoints.http.metrics import count_committed_changes
from coupons.entrypoints.outage import OutageLog
from coupons.services import job_runner, jobs
from coupons.services.common import utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.runner import forget_old_answers

log = structlog.get_logger("coupons.jobs")
CLEANUP_SECONDS = 60.0


@dataclass
class JobWorkerOptions:
    chunk_size: int = job_runner.CHUNK_SIZE
    # Renewed with every chunk; a dead worker's job waits this long before another takes it.
    lease: timedelta = timedelta(seconds=30)
    poll_interval: float = 0.5


class JobWorker:
    """Claims runnable jobs and runs them until stopped."""

    def __init__(self, db: Database, options: JobWorkerOptions | None = None) -> None:
        self.db = db
        self.options = options or JobWorkerOptions()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()

    def run(self) -> None:
        """Run jobs until `stop()`."""
        next_cleanup = 0.0
        outage = OutageLog(log, "job runs")
        while not self.stopping.is_set():
            if time.monotonic() >= next_cleanup:
                # Apart from the claim, and not again before its time: a cleanup that kept
                # failing (a huge abandoned upload past the statement timeout) was retried
                # every poll instead of claiming, and every job waited.
                next_cleanup = time.monotonic() + CLEANUP_SECONDS
                for name, cleanup in (
                    ("clearing abandoned uploads", jobs.clear_abandoned_uploads),
                    ("forgetting expired idempotency answers", forget_old_answers),
                ):
                    try:  # each apart: one failing for good must not stop the other
                        self.db.run(lambda uow, cleanup=cleanup: cleanup(uow, utcnow()))  # type: ignore[misc]
                    except Exception as error:
                        outage.failed(error, f"{name} failed")
            try:
                job_id = self.db.run(
                    lambda uow: job_runner.claim(uow, self.owner, utcnow(), self.options.lease)
                )
                outage.succeeded()
            except Exception as error:
                outage.failed(error, "job claim failed")
                job_id = None
            if job_id is None:
                self.stopping.wait(self.options.poll_interval)
                continue
            try:
                self.run_job(job_id)
            except Exception:
                # Whatever went wrong, this thread is every job's only runner in its process:
                # it must live on (the job's lease runs out and a worker resumes it).
                log.exception("job run failed", job=job_id)
                self.stopping.wait(self.options.poll_interval)

    def run_job(self, job_id: str) -> None:
        """Chunk after chunk until the job ends, is lost, or the worker stops."""
        log.info("job started", job=job_id, owner=self.owner)
        options = self.options

        def chunk(uow: UnitOfWork) -> bool:
            return job_runner.run_chunk(
                uow, job_id, self.owner, utcnow(), options.lease, options.chunk_size
            )

        outage = OutageLog(log.bind(job=job_id), "the job")
        try:
            while not self.stopping.is_set():
                try:
                    more = self.db.run(chunk, custom_plans=True)
                    outage.succeeded()
                except DatabaseUnavailable as error:
                    # Down, restarting or failing over: nothing of the chunk committed and this
                    # worker still holds the lease, so it tries again shortly and the job goes
                    # on within seconds of the database's return (no restart, no waiting out
                    # the lease). Not a refusal: the job must not end FAILED for it. Logged
                    # once, and once more when the job goes on.
                    outage.failed(error, "job chunk failed")
                    self.stopping.wait(self.options.poll_interval)
                    continue
                if not more:
                    log.info("job left", job=job_id)
                    return
        except CouponError as error:
            # A whole-request refusal mid-job (its series expired): the job ends FAILED.
            message = f"{error.code}: {error.message}"
            self.db.run(lambda uow: job_runner.fail_job(uow, job_id, self.owner, utcnow(), message))
            log.warning("job failed", job=job_id, error=message)
            return
        except Exception:
            # Nothing of the failed chunk committed; the lease runs out and a worker resumes.
            log.exception("job chunk failed", job=job_id)
            self.stopping.wait(self.options.poll_interval)
            return
        self._release(job_id)

    def _release(self, job_id: str) -> None:
        def work(uow: UnitOfWork) -> None:
            uow.jobs.release(job_id, self.owner)
            uow.commit()

        try:
            self.db.run(work)
        except Exception:
            log.exception("job release failed", job=job_id)

    def stop(self) -> None:
        self.stopping.set()


def open_database(url: str) -> Database:
    """The job worker's own connections. A job's revokes and undos are state changes as a
    request's are: counted in the metrics of the process that commits them (they had been
    left out)."""
    db = Database.from_url(url, pool_size=2)
    for engine in db.engines:
        count_committed_changes(engine)
    return db


def start_in_background(
    url: str, options: JobWorkerOptions | None = None
) -> tuple[JobWorker, threading.Thread]:
    """A job worker on a daemon thread (the embedded setup of `coupons serve`), and that
    thread: stopped and joined when the server ends, the worker finishes its chunk and gives
    its lease back, as `coupons worker` does, instead of dying with the process and leaving
    its job to wait out the lease."""
    worker = JobWorker(open_database(url), options)
    thread = threading.Thread(target=worker.run, name="job-worker", daemon=True)
    thread.start()
    return worker, thread
