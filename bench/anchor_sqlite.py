"""The SQLite anchor: one codes50 revoke's statements through the standard `sqlite3` module.

Each connection is its own process (as on the raw side: SQLite's write lock is per file, so
processes contend for it the way the server's workers do), with the service's pragmas (WAL,
`synchronous=NORMAL`, foreign keys, a 30 s busy timeout), its checkpointing (a passive
checkpoint every 0.5 s from a thread, the inline one at 4,000 pages) and statements prepared
once (the module's statement cache). No SQLAlchemy.

Writers queue on a blocking `flock` of a file beside the database, taken before
`BEGIN IMMEDIATE` and released after `COMMIT`: the kernel wakes the next writer the moment the
lock is free. Left to SQLite's busy handler instead, a waiting writer sleeps and polls (up to
100 ms a nap), the write lock sits idle in between, and on a loaded machine the anchor fell
below the HTTP path, whose writers queue the same way (the service's write gate).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bench.anchor import N, PoolJob
from bench.load import Layout
from bench.timing import Side, drive, run_side
from bench.workloads import REASON

BUSY_TIMEOUT_S = 30.0
CHECKPOINT_EVERY_S = 0.5
AUTOCHECKPOINT_PAGES = 4_000

SERIES_SQL = (
    "SELECT coupon_series.id, coupon_series.org_id, coupon_series.description, "
    "coupon_series.client_handling_type, coupon_series.generic_code, "
    "coupon_series.generic_code_norm, coupon_series.valid_till, coupon_series.discount_type, "
    "coupon_series.discount_value, coupon_series.created_at FROM coupon_series "
    "WHERE coupon_series.id = ? AND coupon_series.org_id = ?"
)
# Lists go as one JSON text parameter, read with `json_each`, as the service sends them.
COUPONS_SQL = (
    "SELECT coupons.id, coupons.series_id, coupons.code, coupons.state, coupons.customer_id, "
    "coupons.revoked_from, coupons.pin FROM coupons WHERE coupons.org_id = ? "
    "AND coupons.code_norm IN (SELECT value FROM json_each(?)) AND coupons.series_id + 0 = ? "
    "ORDER BY coupons.id"
)
UPDATE_SQL = (
    "UPDATE coupons SET state=?, revoked_from=coupons.state, updated_at=?, "
    "version=(coupons.version + ?) "
    "WHERE coupons.id IN (SELECT value FROM json_each(?)) AND coupons.state IN (?, ?)"
)
HISTORY_SQL = (
    "INSERT INTO coupon_history (org_id, coupon_id, action, from_state, to_state, at, actor, "
    "request_id, reason, series_id, code, customer_id, coupon_version) "
    "SELECT ?, c.id, ?, json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'), ?, ?, "
    "?, ?, c.series_id, c.code, c.customer_id, c.version FROM json_each(?) AS e "
    "JOIN coupons AS c ON c.id = json_extract(e.value, '$[0]') ORDER BY e.key"
)
TRAIL_SQL = (
    "INSERT INTO revocations (org_id, request_id, at, actor, reason, revoked_count, "
    "reinstated_count, job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, request_id) "
    "DO UPDATE SET revoked_count = (revocations.revoked_count + excluded.revoked_count) "
    "WHERE revocations.job_id IS NOT NULL AND revocations.job_id = excluded.job_id"
)
REVOCABLE = ("AVAILABLE", "ISSUED")
# No client lookup: the service reads a client row at most once a second per worker.
STATEMENTS = (SERIES_SQL, COUPONS_SQL, UPDATE_SQL, TRAIL_SQL, HISTORY_SQL)


_json = json.JSONEncoder(separators=(",", ":")).encode


def _stamp() -> str:
    # The text form SQLAlchemy's SQLite DateTime writes (naive UTC).
    return datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class Revoker:
    """One connection sending codes50 revokes as the service does, statement for statement."""

    def __init__(self, path: str, org_id: int, username: str) -> None:
        self.org_id = org_id
        self.username = username
        self.conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
            f"wal_autocheckpoint={AUTOCHECKPOINT_PAGES}",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self._queue = os.open(f"{path}-anchor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint, args=(path,), daemon=True)
        self._checkpointer.start()

    def _checkpoint(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def revoke(self, job: PoolJob, *, commit: bool = True) -> int:
        """One write transaction; returns coupons revoked."""
        execute = self.conn.execute
        now = _stamp()
        fcntl.flock(self._queue, fcntl.LOCK_EX)
        try:
            execute("BEGIN IMMEDIATE")
            execute(SERIES_SQL, (job.series_id, self.org_id)).fetchall()
            rows = execute(COUPONS_SQL, (self.org_id, _json(job.norms), job.series_id)).fetchall()
            done = [row for row in rows if row[3] in REVOCABLE]
            if done:
                execute(
                    UPDATE_SQL, ("REVOKED", now, 1, _json([row[0] for row in done]), *REVOCABLE)
                )
                request_id = uuid.uuid4().hex
                execute(
                    TRAIL_SQL,
                    (self.org_id, request_id, now, self.username, REASON, len(done), 0, None),
                )
                changes = _json([(row[0], row[3], "REVOKED") for row in done])
                execute(
                    HISTORY_SQL,
                    (self.org_id, "REVOKE", now, self.username, request_id, REASON, changes),
                )
            execute("COMMIT" if commit else "ROLLBACK")
        except BaseException:
            if self.conn.in_transaction:
                execute("ROLLBACK")
            raise
        finally:
            fcntl.flock(self._queue, fcntl.LOCK_UN)
        return len(done)

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=5)
        self.conn.close()
        os.close(self._queue)


def _connection(
    path: str,
    org_id: int,
    username: str,
    jobs: Sequence[PoolJob],
    start: Any,
    duration_s: float,
    results: Any,
) -> None:
    """One process: warm up (statements prepared, rolled back), then revoke until done."""
    side = Side()
    revoker = Revoker(path, org_id, username)
    for job in jobs[:3]:
        revoker.revoke(job, commit=False)

    def send(job: PoolJob) -> int | None:
        try:
            return revoker.revoke(job)
        except sqlite3.Error:
            return None

    drive(side, jobs, start, duration_s, send)
    revoker.close()
    results.put(asdict(side))


def sqlite_round(
    layout: Layout, pool: Sequence[PoolJob], connections: int, duration_s: float
) -> Side:
    """`connections` processes over the pool, bounded by `duration_s`."""
    from sqlalchemy.engine import make_url

    path = make_url(layout.url).database or ""
    assert all(len(job.norms) == N for job in pool)
    return run_side(
        _connection, (path, layout.org_id, layout.username), pool, connections, duration_s
    )
