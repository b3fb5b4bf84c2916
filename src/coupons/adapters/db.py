"""Engines for SQLite and PostgreSQL, set up so one code path serves both."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from coupons.adapters.driver_sql import is_disconnect_sqlstate, send
from coupons.adapters.stall_watch import WATCH

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: threads are still lined up
    fcntl = None  # type: ignore[assignment]

SQLITE_BUSY_TIMEOUT_MS = 30_000

# PostgreSQL connection defaults, each overridable in the URL's query string. A connection
# attempt to a host that is gone gives up after `connect_timeout` seconds instead of the
# kernel's minutes; TCP keepalives notice a dead peer (a network cut, a failed-over primary
# that vanished) within about 11 s, and `tcp_user_timeout` a peer that stops acknowledging
# what was sent to it (10 s), instead of the kernel's retransmissions for a quarter of an hour.
POSTGRES_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
# Our own URL option: seconds a statement may go without a byte from the server before its
# connection is cut (`adapters.stall_watch`); `stall_timeout=none` turns the watch off.
STALL_TIMEOUT_SECONDS = 15.0


# libpq's form for several hosts, `postgresql://u@h1:5432,h2:5432/db`: the form a failover
# setup copies from PostgreSQL's docs, with `target_session_attrs=read-write` to reach the
# primary. SQLAlchemy reads only one host there (the comma broke its port); it takes them as
# repeated `host=` query options instead, and psycopg tries them in turn. Hosts without
# ports (`h1,h2/db?port=5432`, `h1,h2:6432/db`: one port for all) SQLAlchemy always read
# and libpq took whole; they are left to it, so such a URL connects where it did.
_MULTI_HOST = re.compile(
    r"^(?P<head>postgres(?:ql)?(?:\+\w+)?://(?:[^@/?]*@)?)(?P<hosts>[^@/?\[\]]*,[^@/?\[\]]*)"
    r"(?P<rest>[/?].*)?$",
    re.DOTALL,
)


def parse_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it, libpq's comma-separated hosts included."""
    found = _MULTI_HOST.match(url)
    if found and all(":" in host.strip("[]") for host in found["hosts"].split(",")):
        path, _, query = (found["rest"] or "/").partition("?")
        hosts = "&".join(f"host={host}" for host in found["hosts"].split(","))
        url = f"{found['head']}{path or '/'}?{hosts}" + (f"&{query}" if query else "")
    parsed = make_url(url)
    if parsed.host and "@" in parsed.host:
        # The first `@` ended the password; the rest of it would be taken for the host and
        # printed in every "failed to resolve host" the driver says.
        raise ValueError("an '@' in the URL's user name or password must be written %40")
    return parsed


def normalize_url(url: str) -> URL:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    parsed = parse_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed


def _off(value: str) -> bool:
    """`none`, `off`, `false` or nothing: the URL option turns its feature off."""
    return value.strip().lower() in ("none", "off", "false", "")


def _stall_timeout(value: str) -> float | None:
    """`stall_timeout=none` (or `off`) turns the stall watch off; otherwise seconds, > 0."""
    if _off(value):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 86_400:  # NaN fails this too
        raise ValueError(
            f"stall_timeout must be seconds above 0, at most 86400, or none, not {value!r}"
        )
    return seconds


def _option(query: dict[str, Any], name: str) -> str | None:
    raw = query.pop(name, None)
    if raw is None:
        return None
    return raw if isinstance(raw, str) else raw[-1]


def _prepare_threshold(value: str) -> int | None:
    """`prepare_threshold=none` (or `off`) turns server-side prepared statements off."""
    if _off(value):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"prepare_threshold must be a number or none, not {value!r}") from None


def postgres_connect_args(parsed: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without our own options, and the arguments for psycopg's `connect`.

    `prepare_threshold` is psycopg's: after that many runs of one statement on a connection
    it prepares it on the server. PgBouncer in transaction pooling mode (before 1.21) hands
    each transaction whichever server connection is free, where that prepared statement does
    not exist, so behind it set `?prepare_threshold=none`. `stall_timeout` is read (and
    checked) here too, and dropped: see `stall_timeout`.
    """
    query = dict(parsed.query)
    connect_args: dict[str, Any] = {}
    raw = _option(query, "prepare_threshold")
    if raw is not None:
        connect_args["prepare_threshold"] = _prepare_threshold(raw)
    raw = _option(query, "stall_timeout")
    if raw is not None:
        _stall_timeout(raw)
    for key, value in POSTGRES_CONNECT_DEFAULTS.items():
        query.setdefault(key, value)
    return parsed.set(query=query), connect_args


def stall_timeout(parsed: URL) -> float | None:
    """Seconds a statement may wait with no byte from the server (`?stall_timeout=`, default
    15; `none` for no bound). A long migration runs without it (it has no pool)."""
    raw = _option(dict(parsed.query), "stall_timeout")
    return STALL_TIMEOUT_SECONDS if raw is None else _stall_timeout(raw)


def _watch_stalls(engine: Engine, parsed: URL) -> None:
    limit = stall_timeout(parsed)
    if limit is not None:
        WATCH.watch(engine, limit)


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
        _create_private(parsed.database)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            **kwargs,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if not null_pool:
        kwargs.update(_postgres_pool(pool_size))
    given = parsed
    parsed, connect_args = postgres_connect_args(parsed)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    _configure_postgres(engine)
    if not null_pool:
        _watch_stalls(engine, given)
    return engine


def _create_private(path: str | None) -> None:
    """Create a new SQLite file readable by its owner only: it holds the token signing key
    and webhook secrets. SQLite would create it (and so its -wal and -shm files, which take
    the database's mode) with the umask's mode, often world-readable."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    # There already, or not creatable: SQLite opens it or says why it cannot.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _postgres_pool(pool_size: int) -> dict[str, Any]:
    # No pre-ping (a round trip on every checkout, on the revoke hot path): a connection
    # found dead when used throws the whole pool away instead (`_configure_postgres`).
    return {"pool_size": pool_size, "max_overflow": pool_size * 2, "pool_recycle": 1800}


def create_loop_engine(url: str, *, pool_size: int = 10) -> AsyncEngine | None:
    """PostgreSQL through psycopg's asyncio connections, for use cases the server runs on its
    event loop (`Database.on_loop`); None for SQLite, whose writers wait for a file lock.

    Same URL, options and disconnect handling as `create_db_engine`'s; its own pool.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    given = parsed
    parsed, connect_args = postgres_connect_args(parsed)
    engine = create_async_engine(
        parsed.set(drivername="postgresql+psycopg_async"),
        connect_args=connect_args,
        **_postgres_pool(pool_size),
    )
    _configure_postgres(engine.sync_engine)
    _watch_stalls(engine.sync_engine, given)
    return engine


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def on_error(context: Any) -> None:
        # psycopg reports a disconnect only once its socket is closed; PgBouncer and a server
        # shutting down answer with an error first. Treat those as disconnects too, so
        # SQLAlchemy invalidates every pooled connection and the next request reconnects.
        if is_disconnect_sqlstate(getattr(context.original_exception, "sqlstate", None)):
            context.is_disconnect = True


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
        send(conn, "BEGIN IMMEDIATE" if write else "BEGIN", ())


class SqliteWriteGate:
    """Lines up one SQLite file's writers so each starts the moment the previous one commits.

    SQLite's busy handler makes a writer that finds the file locked sleep and poll with
    growing pauses (up to 100 ms), so under several concurrent writers some wait far longer
    than the work ahead of them: p99 many times p50. Writers here first take an in-process
    lock (threads block and are woken at once) and then an exclusive `flock` on a file beside
    the database, for the other processes. A helper thread per gate blocks in `flock` on the
    writer's behalf, so the kernel wakes it the moment the lock is free (no polling), while
    the writer itself waits with a timeout.

    Processes take turns: a process that wants the lock again while another process is
    already waiting for it holds back until that one has had its turn. Without this, the
    process that just committed re-takes the lock for its next queued thread before the other
    process gets to run, again and again, and that process's requests starve (p99 4x p50 and
    more with two server workers). A waiting process announces itself with a shared `flock`
    on a second file; the kernel drops every `flock` of a process that dies.

    The gate only orders writers; it is never needed for correctness: past `timeout` a writer
    goes on without it and SQLite's own locking decides, as before.
    """

    POLL_SECONDS = 0.0005
    MAX_POLL_SECONDS = 0.005
    # A process holds back at most this long for another, in case that one stalls.
    MAX_HOLD_BACK_SECONDS = 0.05

    def __init__(self, database_path: str | None, timeout: float) -> None:
        self._threads = threading.Lock()
        self._timeout = timeout
        self._fd: int | None = None
        self._waiting_fd: int | None = None
        self._probe_fd: int | None = None
        # Between a writer and the locker thread: the writer wants the file lock; the locker
        # holds it for the writer; the gate is closed.
        self._state = threading.Condition()
        self._wanted = False
        self._held = False
        self._closed = False
        self._locker: threading.Thread | None = None
        self._path = database_path if fcntl is not None else None
        self._pid = os.getpid()
        self._open_files()

    def _open_files(self) -> None:
        if not self._path:
            return
        try:
            self._fd = _open_lock_file(f"{self._path}-writers.lock")
            # Two descriptions of one file: flock locks on them conflict with each other, so
            # the probe sees other processes' announcements, never this process's own.
            self._waiting_fd = _open_lock_file(f"{self._path}-writers.wait")
            self._probe_fd = _open_lock_file(f"{self._path}-writers.wait")
        except OSError:
            self._close_files()  # a read-only directory: fall back to SQLite's locking

    def _after_fork(self) -> None:
        """A forked child shares the parent's lock descriptions and has no locker thread."""
        self._pid = os.getpid()
        self._state = threading.Condition()
        self._wanted = self._held = False
        self._locker = None
        self._fd = self._waiting_fd = self._probe_fd = None  # the parent's: leave them be
        self._open_files()

    def acquire(self) -> bool:
        """Wait for this writer's turn; False when the wait gave up (proceed regardless)."""
        deadline = time.monotonic() + self._timeout
        if self._pid != os.getpid():
            self._threads = threading.Lock()
            self._after_fork()
        if not self._threads.acquire(timeout=self._timeout):
            return False
        if self._fd is None:
            return True
        self._hold_back_for_others(min(deadline, time.monotonic() + self.MAX_HOLD_BACK_SECONDS))
        with self._state:
            if self._locker is None:
                self._locker = threading.Thread(
                    target=self._lock_for_writers, name="sqlite-write-gate", daemon=True
                )
                self._locker.start()
            self._wanted = True
            self._state.notify_all()
            if self._state.wait_for(lambda: self._held, max(0.0, deadline - time.monotonic())):
                return True
            self._wanted = False  # the locker lets go of the lock if it gets it now
        self._threads.release()
        return False

    def release(self) -> None:
        try:
            with self._state:
                if self._held and self._fd is not None:
                    assert fcntl is not None
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._held = False
        finally:
            self._threads.release()

    def _lock_for_writers(self) -> None:
        """The locker thread: takes the file lock, blocking, whenever a writer wants it."""
        assert fcntl is not None
        while True:
            with self._state:
                self._state.wait_for(lambda: self._wanted or self._closed)
                if self._closed:
                    break
                fd, waiting_fd = self._fd, self._waiting_fd
            assert fd is not None and waiting_fd is not None
            fcntl.flock(waiting_fd, fcntl.LOCK_SH)  # announce: this process waits
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            finally:
                fcntl.flock(waiting_fd, fcntl.LOCK_UN)
            with self._state:
                if self._wanted and not self._closed:
                    self._held, self._wanted = True, False
                    self._state.notify_all()
                else:  # the writer gave up while this thread waited
                    fcntl.flock(fd, fcntl.LOCK_UN)
        self._close_files()

    def _hold_back_for_others(self, until: float) -> None:
        """Wait while another process is waiting for the lock (woken, it takes it at once).

        Polled with growing pauses: with three or more processes someone is nearly always
        waiting, and a tight loop here cost the delivery worker's process a tenth of a core.
        """
        pause = self.POLL_SECONDS
        while self._another_process_waits() and time.monotonic() < until:
            time.sleep(pause)
            pause = min(pause * 2, self.MAX_POLL_SECONDS)

    def _another_process_waits(self) -> bool:
        assert fcntl is not None and self._probe_fd is not None
        try:
            fcntl.flock(self._probe_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._probe_fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        """Stop the locker thread; it closes the lock files (at once when it is idle)."""
        with self._state:
            self._closed = True
            self._state.notify_all()
            locker = self._locker
        if locker is None:
            self._close_files()
        else:
            locker.join(timeout=1)

    def _close_files(self) -> None:
        for fd in (self._fd, self._waiting_fd, self._probe_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._waiting_fd = self._probe_fd = None


def _open_lock_file(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def sqlite_write_gate(engine: Engine) -> SqliteWriteGate | None:
    """The gate for a SQLite engine's file (None for PostgreSQL, which locks rows)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    on_disk = path not in (None, "", ":memory:") and not str(path).startswith("file::memory:")
    return SqliteWriteGate(str(path) if on_disk else None, SQLITE_BUSY_TIMEOUT_MS / 1000)
