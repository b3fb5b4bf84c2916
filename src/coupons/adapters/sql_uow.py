"""Unit of work over an Engine: one transaction, committed explicitly, retried when transient."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from coupons.adapters.db import (
    SqliteWriteGate,
    create_db_engine,
    create_loop_engine,
    sqlite_write_gate,
)
from coupons.adapters.driver_sql import is_disconnect_sqlstate
from coupons.adapters.repos import (
    SqlClientRepository,
    SqlCouponRepository,
    SqlCustomerRepository,
    SqlHistoryRepository,
    SqlIdempotencyRepository,
    SqlJobRepository,
    SqlRevocationRepository,
    SqlSeriesRepository,
    SqlUsersRepository,
    SqlWebhookRepository,
)
from coupons.adapters.repos.revoke_batch import write_revoke_pg
from coupons.domain import errors
from coupons.domain.records import RevokeBatch

T = TypeVar("T")

MAX_ATTEMPTS = 8
# A use case that lost its connection before COMMIT is tried once more on a fresh one (after
# a database restart every pooled connection is stale, and the first use finds out).
UNAVAILABLE_ATTEMPTS = 2
# What a 503 (9023) tells clients: a restart or failover takes a few seconds.
RETRY_AFTER_SECONDS = 2
STATEMENT_TIMEOUT = "57014"  # query_canceled: statement_timeout (or an operator's cancel)
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
    revocations: SqlRevocationRepository

    jobs: SqlJobRepository

    users: SqlUsersRepository
    conn: Connection

    def __init__(
        self,
        engine: Engine,
        *,
        write: bool,
        gate: SqliteWriteGate | None = None,
        custom_plans: bool = False,
    ) -> None:
        self._engine = engine
        self._write = write
        self._custom_plans = custom_plans
        self._gate = gate if write else None
        self._gated = False
        # Set once COMMIT is sent: a connection lost after that leaves the outcome unknown.
        self.commit_started = False

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
            if self._custom_plans and self.conn.dialect.name == "postgresql":
                # psycopg prepares a statement on its fifth run, and PostgreSQL may then keep
                # one generic plan for it for the connection's life, made with the statistics
                # of that moment. A revoke job's chunk statements first ran when its lines
                # table was small: their cached plan scanned the whole table, and a 1M-code
                # job ran at a fifth of its speed. Plan them for their own parameters, in
                # this transaction only (PgBouncer-safe).
                self.conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
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
        self.revocations = SqlRevocationRepository(conn)

        self.jobs = SqlJobRepository(conn)

        self.users = SqlUsersRepository(conn)
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
            # The transaction is over: the next writer may start while this connection goes
            # back to the pool.
            try:
                self._leave_gate()
            finally:
                self.conn.close()

    def _leave_gate(self) -> None:
        if self._gated and self._gate is not None:
            self._gated = False
            self._gate.release()

    def commit(self) -> None:
        self.commit_started = True
        self._tx.commit()

    def apply_revoke(self, batch: RevokeBatch) -> int:
        """The revoke's UPDATE, history and trail row: one statement on PostgreSQL, the three
        repository calls in turn on SQLite (no data-modifying CTEs there)."""
        if not batch.coupon_ids:
            return 0
        if self.conn.dialect.name == "postgresql":
            return write_revoke_pg(self.conn, batch)
        changed = self.coupons.mark_revoked(batch.coupon_ids, batch.at)
        if changed != len(batch.coupon_ids):
            return changed  # the caller refuses the whole batch: nothing more to write
        if not self.revocations.record_revoke(batch, changed):
            raise errors.RequestIdTaken()
        self.history.write_revoke(batch)
        return changed

    def ping(self) -> bool:
        """One cheap round trip, proving the database answers; whether it takes writes (a
        PostgreSQL primary demoted in a failover, or a standby, answers reads only)."""
        if self.conn.dialect.name != "postgresql":
            self.conn.execute(text("SELECT 1"))
            return True
        found = self.conn.execute(text("SELECT current_setting('transaction_read_only')"))
        return found.scalar() != "on"

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


def is_unavailable(error: DBAPIError) -> bool:
    """The database (or the way to it) is gone: down, restarting, failing over, unreachable.

    SQLite reports no such thing: its file is always there; its errors stay as they are.
    """
    if error.connection_invalidated:
        return True
    orig = error.orig
    if not type(orig).__module__.startswith("psycopg"):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    # No SQLSTATE: the client side failed (connection refused, timed out, closed), unless the
    # server refused the connection for good (no such database or role, a wrong password):
    # that is a configuration to fix, not an outage to wait out (9023).
    return is_disconnect_sqlstate(sqlstate) or (
        sqlstate is None
        and isinstance(error, OperationalError)
        and not _REFUSED_FOR_GOOD.search(str(orig))
    )


# The server answered and said no: a configuration to fix, which no wait changes.
_REFUSED_FOR_GOOD = re.compile(
    r'(database|role) "[^"]*" does not exist|password authentication failed|no password supplied'
    r"|pg_hba\.conf rejects connection|server does not support SSL, but SSL was required"
)


def _pause_on_loop(seconds: float) -> None:
    """A retry's pause inside a use case run on the event loop: the loop serves others."""
    await_only(asyncio.sleep(seconds))


class Database:
    """The store: hands out units of work and runs use cases with bounded retries."""

    def __init__(
        self,
        engine: Engine,
        *,
        retry_after: int = RETRY_AFTER_SECONDS,
        loop_engine: AsyncEngine | None = None,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.retry_after = retry_after
        self._gate = sqlite_write_gate(engine)
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        self._loop_engine = loop_engine
        self._on_loop: Database | None = None
        self._home_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._pause = pause

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = 10, retry_after: int = RETRY_AFTER_SECONDS
    ) -> Database:
        return cls(
            create_db_engine(url, pool_size=pool_size),
            retry_after=retry_after,
            loop_engine=create_loop_engine(url, pool_size=pool_size),
        )

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @property
    def on_loop(self) -> Database | None:
        """The same store for use cases run on the server's event loop, in a greenlet
        (`sqlalchemy.util.greenlet_spawn`): PostgreSQL only, None on SQLite.

        The use case and its statements are the same; only the connection differs (psycopg's
        asyncio one), so each round trip hands control back to the event loop instead of
        blocking a pool thread. On two cores, the thread hop and the threads' contention for
        the interpreter cost the revoke more than its own Python (docs/benchmarks.md).
        Only for use cases that do nothing but database work: anything else would stall
        every request of the process.
        """
        if self._loop_engine is None:
            return None
        # One event loop owns the pool's asyncio connections and waits: a server process has
        # one. Another loop running meanwhile (two test clients of one app, each with its
        # own) would wait on the owner's futures and hang, so its use cases go to threads.
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # asked outside any loop (a test holding it for later)
            loop = None
        home = self._home_loop() if self._home_loop is not None else None
        if loop is not None and (home is None or home.is_closed()):
            self._home_loop = weakref.ref(loop)
        elif loop is not None and home is not loop:
            return None
        if self._on_loop is None:
            self._on_loop = Database(
                self._loop_engine.sync_engine, retry_after=self.retry_after, pause=_pause_on_loop
            )
        return self._on_loop

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine statements go through: listeners that must see all of them (metrics,
        statement counts) attach to each."""
        if self._loop_engine is None:
            return (self.engine,)
        return (self.engine, self._loop_engine.sync_engine)

    def unit_of_work(self, *, write: bool = True, custom_plans: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write, gate=self._gate, custom_plans=custom_plans)

    def run(
        self,
        work: Callable[[SqlUnitOfWork], T],
        *,
        write: bool = True,
        retry_integrity: bool = False,
        custom_plans: bool = False,
    ) -> T:
        """Run `work` in a fresh transaction, retrying lock conflicts a bounded number of times.

        With `custom_plans`, PostgreSQL plans each statement for its parameters instead of
        reusing a cached generic plan: for big transactions (a job's chunk), where planning
        costs nothing next to the work and a stale plan costs everything.

        With `retry_integrity`, a unique-key race (two requests inserting the same key) is
        retried too: the next attempt sees the winner's committed row and answers from it.

        A database that is gone raises `DatabaseUnavailable` (9023). A transaction that lost
        its connection before COMMIT was rolled back by the server, so it is tried once more
        on a fresh connection; one that lost it during COMMIT may or may not have committed,
        so it is never retried here: the client retries with its `Idempotency-Key`.
        """
        lost_connections = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            uow = self.unit_of_work(write=write, custom_plans=custom_plans)
            try:
                with uow:
                    return work(uow)
            except IntegrityError:
                if not retry_integrity or attempt >= 3:
                    raise
            except PoolTimeout as error:  # every connection stuck on a database not answering
                raise errors.DatabaseUnavailable(self.retry_after) from error
            except DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) == STATEMENT_TIMEOUT:
                    # The server gave up on a statement (statement_timeout) and rolled the
                    # transaction back: overloaded, not a conflict; another try would wait again.
                    raise errors.DatabaseUnavailable(self.retry_after) from error
                if is_unavailable(error):
                    lost_connections += 1
                    if uow.commit_started:
                        raise errors.CommitOutcomeUnknown(self.retry_after) from error
                    if lost_connections >= UNAVAILABLE_ATTEMPTS:
                        raise errors.DatabaseUnavailable(self.retry_after) from error
                    # Debug: while the database is away every poll of every worker meets
                    # this (4 lines a second each); the outage itself is logged once, by
                    # whoever meets it (`entrypoints.outage`), and each 503 in the access log.
                    log.debug("database connection lost; retrying on a fresh one")
                elif not is_transient(error) or attempt == MAX_ATTEMPTS:
                    raise
            self._pause(min(0.2, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Prove the database answers and takes writes (`GET /health`); `DatabaseUnavailable`
        when it does not: a read-only one refuses every write as a lost primary (25006), and a
        load balancer should take this process out of rotation until it takes them again."""
        if not self.run(lambda uow: uow.ping(), write=False):
            raise errors.DatabaseUnavailable(self.retry_after)

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
        if self._loop_engine is not None:
            # Its connections belong to an event loop that may be gone by now: dropped, not
            # closed (the server sees each socket close when it is collected).
            self._loop_engine.sync_engine.dispose(close=False)
            self._on_loop = None
        if self._checkpointer is not None:
            thread, stop = self._checkpointer
            stop.set()
            thread.join(timeout=5)
            self._checkpointer = None
        self.engine.dispose()
        if self._gate is not None:
            self._gate.close()
