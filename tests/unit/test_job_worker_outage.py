"""The revoke-job worker through a database outage: the job waits and goes on, never ends
FAILED for it, the worker's thread survives whatever a job run raises, and the outage is
logged once, not a traceback per poll."""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from sqlalchemy.exc import OperationalError

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

    with structlog.testing.capture_logs() as logs:
        worker.run_job("job_1")

    # Then its chunks were tried again until they ran, and nothing marked it FAILED
    assert db.calls == ["chunk"] * 4
    assert "<lambda>" not in db.calls  # no fail_job, no release while the job went on
    # And the outage was one warning naming the job, and one line when the job went on
    said = [(e["log_level"], e["event"], e.get("job")) for e in logs if e["log_level"] != "info"]
    assert said == [("warning", "database unavailable; the job paused until it answers", "job_1")]
    resumed = [e for e in logs if e["event"].startswith("database answers again")]
    assert [e["job"] for e in resumed] == ["job_1"]


def test_the_worker_thread_survives_a_job_run_that_raises() -> None:
    # Given a worker whose first job run raises what nothing else catches
    claims = iter([None, None, "job_1", "job_2"])  # first the two cleanups
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


def test_jobs_are_claimed_and_old_answers_forgotten_while_clearing_uploads_keeps_failing() -> None:
    # Given a worker whose cleanup of abandoned uploads fails every time it runs (a huge
    # upload past the statement timeout), and a queued job
    calls: list[str] = []
    order = ["uploads", "answers"]  # the two cleanups run first, then the claims
    worker = JobWorker(None, JobWorkerOptions(poll_interval=0.001))  # type: ignore[arg-type]

    def run(work: Any, **_: Any) -> Any:
        kind = order[len(calls)] if len(calls) < len(order) else "claim"
        calls.append(kind)
        if kind == "uploads":
            raise errors.DatabaseUnavailable(2)
        if kind == "answers":
            return 0
        return "job_1" if calls.count("claim") == 1 else None

    worker.db = type("Db", (), {"run": lambda self, work, **kw: run(work, **kw)})()
    ran: list[str] = []

    def run_job(job_id: str) -> None:
        ran.append(job_id)
        worker.stop()

    worker.run_job = run_job  # type: ignore[method-assign]
    loop = threading.Thread(target=worker.run)
    loop.start()
    loop.join(5)

    # Then the other cleanup still ran, the job was claimed and run, and the failing
    # cleanup waits for its next turn instead of being tried at every poll
    assert ran == ["job_1"] and not loop.is_alive()
    assert calls == ["uploads", "answers", "claim"]


class FlakyDatabase:
    """A store that is down for its first `down` polls, then answers "no job"."""

    def __init__(self, down: int, worker_stops_after: int) -> None:
        self.down = down
        self.calls = 0
        self.stops_after = worker_stops_after
        self.worker: JobWorker | None = None

    def run(self, work: Any, **_: Any) -> None:
        self.calls += 1
        if self.calls >= self.stops_after and self.worker is not None:
            self.worker.stopping.set()
        if self.calls <= self.down:
            try:
                raise OperationalError("SELECT", {}, Exception("connection refused\nmore"))
            except OperationalError as lost:
                raise errors.DatabaseUnavailable(2) from lost
        if self.calls == self.down + 3:
            raise RuntimeError("a bug, not an outage")
        return None


def run_worker(db: FlakyDatabase) -> list[MutableMapping[str, Any]]:
    worker = JobWorker(db, JobWorkerOptions(poll_interval=0.001))  # type: ignore[arg-type]
    db.worker = worker
    with structlog.testing.capture_logs() as logs:
        thread = threading.Thread(target=worker.run)
        thread.start()
        thread.join(10)
    assert not thread.is_alive()
    return logs


def test_an_outage_of_many_polls_is_one_warning_and_one_note_when_it_ends() -> None:
    # given a job worker whose database is down for 30 polls, back, then fails with a bug
    logs = run_worker(FlakyDatabase(down=30, worker_stops_after=40))

    # then the outage is one warning naming the cause's first line, without a traceback
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == [
        "database unavailable; job runs paused until it answers"
    ]
    assert warnings[0]["error"] == "OperationalError: (builtins.Exception) connection refused"
    assert "exc_info" not in warnings[0]
    # and its end one note with how long it lasted
    notes = [entry for entry in logs if entry["event"].startswith("database answers again")]
    assert len(notes) == 1 and notes[0]["down_seconds"] >= 0
    # and anything else than an outage is still logged in full, each time
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["job claim failed"]
    assert errors[0]["exc_info"] is True


def test_a_webhook_delivery_meeting_an_outage_is_one_warning_not_a_traceback_each(
    monkeypatch: Any,
) -> None:
    # Given a webhook worker whose deliveries meet a database outage when they record the
    # attempt (three of them), then one that meets a real bug
    from types import SimpleNamespace

    from coupons.entrypoints import worker as webhook_worker
    from coupons.services import webhooks

    raised: list[BaseException] = [errors.DatabaseUnavailable(2)] * 3 + [KeyError("bug")]

    def deliver(*args: Any, **kwargs: Any) -> Any:
        raise raised.pop(0)

    monkeypatch.setattr(webhooks, "deliver", deliver)
    worker = webhook_worker.Worker(None)  # type: ignore[arg-type]

    with structlog.testing.capture_logs() as logs:
        results = [worker._deliver(SimpleNamespace(id=7)).outcome for _ in range(4)]  # type: ignore[arg-type]

    # Then each is an ERROR result (retried after its lease); the outage was one warning,
    # and only the bug was logged with its traceback
    assert results == ["ERROR"] * 4
    said = [(e["log_level"], e["event"]) for e in logs]
    assert said == [
        ("warning", "database unavailable; webhook deliveries paused until it answers"),
        ("error", "delivery failed"),
    ]
