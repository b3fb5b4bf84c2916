"""Samples `pg_stat_activity` for sessions waiting on locks, from a thread of its own."""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType

import psycopg

# Sessions of one database waiting for a lock, with the kind of lock they wait for.
WAITS = """
SELECT a.wait_event, coalesce(l.locktype, '?')
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE a.datname = %s AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
"""


class LockSampler:
    """Counts lock waits (by wait event and lock type) every `interval` seconds until closed.

    Connects directly to PostgreSQL (never through PgBouncer); while the server is down it
    keeps trying, so it can run through a restart.
    """

    def __init__(self, url: str, database: str, interval: float = 0.005) -> None:
        self.url = url
        self.database = database
        self.interval = interval
        self.samples = 0
        self.waits: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-sampler", daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def advisory_waits(self) -> int:
        return sum(n for (event, kind), n in self.waits.items() if "advisory" in (event, kind))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                    while not self._stop.wait(self.interval):
                        rows = conn.execute(WAITS, (self.database,)).fetchall()
                        self.samples += 1
                        for event, kind in rows:
                            self.waits[(str(event), str(kind))] += 1
            except psycopg.Error:
                self._stop.wait(0.1)
