"""Polling loops log a database outage once, and its end once, not a traceback per poll."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

import structlog
from sqlalchemy.exc import OperationalError

from coupons.domain.errors import DatabaseUnavailable
from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions


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
                raise DatabaseUnavailable(2) from lost
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
