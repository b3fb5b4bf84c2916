"""Engines for SQLite and PostgreSQL, set up so one code path serves both."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: threads are still lined up
    fcntl = None  # type: ignore[assignment]

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> URL:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed


def create_db_engine(
    url: str,
    *,
    pool_size: int = 10,
    null_pool: bool = False,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Engine:
    """An engine with WAL, foreign keys and `BEGIN IMMEDIATE` writes on SQLite.

    `busy_timeout_ms` bounds how long a SQLite writer waits for the write lock.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if null_pool:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        if not null_pool:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            **kwargs,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if not null_pool:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=1800)
    return create_engine(parsed, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # Writers take the database lock up front: a deferred transaction that reads and then
        # upgrades to write can fail with SQLITE_BUSY without waiting; IMMEDIATE waits instead.
        write = conn.get_execution_options().get("coupons_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class SqliteWriteGate:
    """Lines up one SQLite file's writers so each starts the moment the previous one commits.

    SQLite's busy handler makes a writer that finds the file locked sleep and poll with
    growing pauses (up to 100 ms), so under several concurrent writers some wait far longer
    than the work ahead of them: p99 many times p50. Writers here first take an in-process
    lock (threads block and are woken at once) and then an exclusive `flock` on a file beside
    the database (other processes, polled at 1 ms). The gate only orders writers; it is never
    needed for correctness: past `timeout` a writer goes on without it and SQLite's own
    locking decides, as before.
    """

    def __init__(self, database_path: str | None, timeout: float) -> None:
        self._threads = threading.Lock()
        self._timeout = timeout
        self._fd: int | None = None
        if database_path and fcntl is not None:
            try:
                self._fd = os.open(f"{database_path}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._fd = None  # a read-only directory: fall back to SQLite's locking

    def acquire(self) -> bool:
        """Wait for this writer's turn; False when the wait gave up (proceed regardless)."""
        deadline = time.monotonic() + self._timeout
        if not self._threads.acquire(timeout=self._timeout):
            return False
        if self._fd is None:
            return True
        assert fcntl is not None
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._threads.release()
                    return False
                time.sleep(0.001)

    def release(self) -> None:
        try:
            if self._fd is not None and fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sqlite_write_gate(engine: Engine) -> SqliteWriteGate | None:
    """The gate for a SQLite engine's file (None for PostgreSQL, which locks rows)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    on_disk = path not in (None, "", ":memory:") and not str(path).startswith("file::memory:")
    return SqliteWriteGate(str(path) if on_disk else None, SQLITE_BUSY_TIMEOUT_MS / 1000)
