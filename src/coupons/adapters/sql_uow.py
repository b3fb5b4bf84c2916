"""Unit of work over an Engine: one transaction, committed explicitly, retried when transient."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from coupons.adapters.db import SqliteWriteGate, create_db_engine, sqlite_write_gate
from coupons.adapters.repos import (
    SqlClientRepository,
    SqlCouponRepository,
    SqlCustomerRepository,
    SqlHistoryRepository,
    SqlIdempotencyRepository,
    SqlSeriesRepository,
    SqlWebhookRepository,
)

T = TypeVar("T")

MAX_ATTEMPTS = 8
WAL_CHECKPOINT_SECONDS = 0.5
# Pages of write-ahead log past which a commit still checkpoints inline (SQLite: 1,000).
WAL_BACKSTOP_PAGES = 4_000

log = structlog.get_logger(__name__)


class SqlUnitOfWork:
    """One transaction; leaving the block without `commit()` rolls back.

    Implements `services.ports.UnitOfWork`: one repository per aggregate, all on the same
    connection, so every write of a use case shares its transaction.
    """

    coupons: SqlCouponRepository
    series: SqlSeriesRepository
    customers: SqlCustomerRepository
    history: SqlHistoryRepository
    idempotency: SqlIdempotencyRepository
    clients: SqlClientRepository
    webhooks: SqlWebhookRepository
    conn: Connection

    def __init__(self, engine: Engine, *, write: bool, gate: SqliteWriteGate | None = None) -> None:
        self._engine = engine
        self._write = write
        self._gate = gate if write else None
        self._gated = False

    def __enter__(self) -> SqlUnitOfWork:
        if self._gate is not None:
            self._gated = self._gate.acquire()
        try:
            self.conn = self._engine.connect()
        except BaseException:
            self._leave_gate()
            raise
        try:
            self.conn.execution_options(coupons_write=self._write)
            self._tx = self.conn.begin()
        except BaseException:
            # `__exit__` does not run when `__enter__` fails (say SQLite stayed busy past its
            # timeout): give the connection back now, or every retry would hold one more.
            self.conn.close()
            self._leave_gate()
            raise
        conn = self.conn
        self.coupons = SqlCouponRepository(conn)
        self.series = SqlSeriesRepository(conn)
        self.customers = SqlCustomerRepository(conn)
        self.history = SqlHistoryRepository(conn)
        self.idempotency = SqlIdempotencyRepository(conn)
        self.clients = SqlClientRepository(conn)
        self.webhooks = SqlWebhookRepository(conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()
            self._leave_gate()

    def _leave_gate(self) -> None:
        if self._gated and self._gate is not None:
            self._gated = False
            self._gate.release()

    def commit(self) -> None:
        self._tx.commit()

    def rollback(self) -> None:
        self._tx.rollback()


def is_transient(error: DBAPIError) -> bool:
    """Lock contention that a fresh attempt of the whole transaction can get past."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock not available
        return True
    if isinstance(error, OperationalError):
        text = str(orig).lower()
        return "database is locked" in text or "database is busy" in text
    return False


class Database:
    """The store: hands out units of work and runs use cases with bounded retries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._gate = sqlite_write_gate(engine)
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> Database:
        return cls(create_db_engine(url, pool_size=pool_size))

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def unit_of_work(self, *, write: bool = True) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write, gate=self._gate)

    def run(
        self,
        work: Callable[[SqlUnitOfWork], T],
        *,
        write: bool = True,
        retry_integrity: bool = False,
    ) -> T:
        """Run `work` in a fresh transaction, retrying lock conflicts a bounded number of times.

        With `retry_integrity`, a unique-key race (two requests inserting the same key) is
        retried too: the next attempt sees the winner's committed row and answers from it.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.unit_of_work(write=write) as uow:
                    return work(uow)
            except IntegrityError:
                if not retry_integrity or attempt >= 3:
                    raise
            except DBAPIError as error:
                if not is_transient(error) or attempt == MAX_ATTEMPTS:
                    raise
            time.sleep(min(0.2, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def start_wal_checkpointer(self, interval: float = WAL_CHECKPOINT_SECONDS) -> None:
        """SQLite: copy the write-ahead log back into the database from a background thread.

        By default the writer whose commit takes the log past 1,000 pages does that copy
        inside its commit, while it still holds the write gate, so every queued writer waits
        behind it: on a 1M-coupon table that was one request in a few dozen taking 300-500 ms
        (codes50 p99 4.7x p50). A passive checkpoint needs no write lock, so writers go on
        while this thread copies; the per-commit checkpoint stays as a backstop at a far
        larger log. Served processes call this; commands and tests do not need it.
        """
        if self.engine.dialect.name != "sqlite" or self._checkpointer is not None:
            return
        path = self.engine.url.database
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            return

        @event.listens_for(self.engine, "connect")
        def fewer_inline_checkpoints(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")

        self.engine.dispose()  # pooled connections reconnect with the setting above
        stop = threading.Event()

        def checkpoint() -> None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                while not stop.wait(interval):
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error:
                        log.warning("wal checkpoint failed", exc_info=True)
            finally:
                conn.close()

        thread = threading.Thread(target=checkpoint, name="sqlite-checkpoint", daemon=True)
        self._checkpointer = (thread, stop)
        thread.start()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            thread, stop = self._checkpointer
            stop.set()
            thread.join(timeout=5)
            self._checkpointer = None
        self.engine.dispose()
        if self._gate is not None:
            self._gate.close()
