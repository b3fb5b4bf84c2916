"""The revoke-job worker through a database outage: the job waits and goes on, never ends
FAILED for it, and the worker's thread survives whatever a job run raises."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from coupons.domain import errors
from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions


class OutageDb:
    """A database whose first `down` calls fail as a restart does, then answers `answers`."""

    def __init__(self, down: int, answers: list[Any]) -> None:
        self.down = down
        self.answers = answers
        self.calls: list[str] = []

    def run(self, work: Callable[..., Any], **_: Any) -> Any:
        self.calls.append(getattr(work, "__name__", "work"))
        if self.down:
            self.down -= 1
            raise errors.DatabaseUnavailable(2)
        return self.answers.pop(0) if self.answers else False


def test_a_job_goes_on_after_the_database_returns_and_is_not_failed() -> None:
    # Given a job whose next chunks meet two 9023s, then two chunks, the job's end
    db = OutageDb(down=2, answers=[True, False])
    worker = JobWorker(db, JobWorkerOptions(poll_interval=0.001))  # type: ignore[arg-type]

    worker.run_job("job_1")

    # Then its chunks were tried again until they ran, and nothing marked it FAILED
    assert db.calls == ["chunk"] * 4
    assert "<lambda>" not in db.calls  # no fail_job, no release while the job went on


def test_the_worker_thread_survives_a_job_run_that_raises() -> None:
    # Given a worker whose first job run raises what nothing else catches
    claims = iter([None, "job_1", "job_2"])  # the first read is the uploads' cleanup
    ran: list[str] = []
    worker = JobWorker(None, JobWorkerOptions(poll_interval=0.001))  # type: ignore[arg-type]
    worker.db = type("Db", (), {"run": lambda self, work, **_: next(claims, None)})()

    def run_job(job_id: str) -> None:
        ran.append(job_id)
        if job_id == "job_1":
            raise errors.DatabaseUnavailable(2)  # as fail_job may, with the database away
        worker.stop()

    worker.run_job = run_job  # type: ignore[method-assign]
    loop = threading.Thread(target=worker.run)
    loop.start()
    loop.join(5)

    # Then it went on to the next job
    assert ran == ["job_1", "job_2"] and not loop.is_alive()
