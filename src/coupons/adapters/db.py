"""Engines for SQLite and PostgreSQL, set up so one code path serves both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

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
