"""Cut a PostgreSQL connection whose statement has had no answer for too long.

A database that goes away without closing its connections (a network cut, a frozen host or
virtual machine, a failover that leaves the old primary's address silent) leaves the client
waiting for an answer that never comes: the server's `statement_timeout` cannot reach a client
it has lost, and TCP keepalives only notice a peer whose kernel stops answering too. Without a
bound, a request and `GET /health` waited as long as the outage lasted instead of failing with
9023.

One thread per process looks at the pool's connections every half second. A connection with a
statement in flight (libpq's transaction status ACTIVE) whose socket has received nothing for
`limit` seconds, and that has been seen in flight for as long, is shut down at the socket: the
waiting call fails as on a lost connection, SQLAlchemy throws the pool away, and the request
fails with 9023 (or is retried once on a fresh connection, as for any lost connection before
its commit). Nothing is half-written: the server rolls back a transaction whose client is
gone. (The socket's quiet time alone also counts the time a connection sat idle in the pool
before its statement: it cut healthy connections queued behind a busy PgBouncer after a quiet
spell.)

No cost on the request path: the pool's connect and close events register and forget a
connection; the thread alone reads the sockets. Connections over a Unix socket are not watched
(the kernel's `TCP_INFO` says when data last arrived; a local server cannot be cut off).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine, event

log = structlog.get_logger(__name__)

# Linux's `struct tcp_info`: `tcpi_last_data_recv`, milliseconds since data last arrived.
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52
_TCP_INFO_SIZE = 104
_ACTIVE = 1  # psycopg.pq.TransactionStatus.ACTIVE: a command is in progress
SCAN_SECONDS = 0.5


def ms_since_data(fd: int) -> int | None:
    """Milliseconds since the TCP socket `fd` last received data; None if it is not TCP."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    finally:
        sock.close()  # closes the duplicate only
    if len(info) < _LAST_DATA_RECV_OFFSET + 4:
        return None
    return int(_LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0])


def cut(fd: int) -> None:
    """Shut the connection down both ways: whoever waits on it sees it closed at once."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    finally:
        sock.close()


@dataclass(slots=True)
class _Watched:
    """A pool connection the thread watches."""

    ref: weakref.ref[Any]  # the driver's connection, weakly
    limit_ms: int
    in_flight_since: float | None = None  # monotonic; when first seen with a statement out


class StallWatch:
    """The process's watcher: engines register their connections; one thread checks them."""

    def __init__(self, scan_seconds: float = SCAN_SECONDS) -> None:
        self._scan_seconds = scan_seconds
        self._lock = threading.Lock()
        # Pool record -> the driver's connection (weakly), its limit, and when this thread
        # first saw its current statement in flight
        self._watched: dict[int, _Watched] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._patient: set[int] = set()  # id() of driver connections running a long statement

    @contextlib.contextmanager
    def patient(self, driver: Any) -> Iterator[None]:
        """Leave `driver`'s connection alone meanwhile: for one statement that may rightly run
        silent for longer than the limit (staging every coupon of a large series as a job's
        lines); the server's `statement_timeout` still bounds it."""
        with self._lock:
            self._patient.add(id(driver))
        try:
            yield
        finally:
            with self._lock:
                self._patient.discard(id(driver))

    def watch(self, engine: Engine, limit_seconds: float) -> None:
        """Watch every connection `engine`'s pool opens from now on."""
        limit_ms = int(limit_seconds * 1000)

        @event.listens_for(engine, "connect")
        def on_connect(_dbapi: Any, record: Any) -> None:
            driver = record.driver_connection
            with self._lock:
                self._watched[id(record)] = _Watched(weakref.ref(driver), limit_ms)
            self._ensure_thread()

        # Both fire before the pool closes the driver's connection: the thread, which reads
        # the connection under the same lock, never touches a closed one.
        @event.listens_for(engine, "close")
        def on_close(_dbapi: Any, record: Any) -> None:
            with self._lock:
                self._watched.pop(id(record), None)

        @event.listens_for(engine, "close_detached")
        def on_close_detached(dbapi: Any) -> None:
            with self._lock:
                for key, watched in list(self._watched.items()):
                    if watched.ref() is getattr(dbapi, "driver_connection", dbapi):
                        del self._watched[key]

    def _ensure_thread(self) -> None:
        # A forked server worker inherits the registry but not the thread: start its own.
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="db-stall-watch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self._scan_seconds):
            try:
                self.scan()
            except Exception:  # pragma: no cover - the watcher must outlive any surprise
                log.warning("database stall check failed", exc_info=True)

    def scan(self) -> int:
        """Check every watched connection once; how many were cut."""
        cuts = 0
        now = time.monotonic()
        with self._lock:
            for key, watched in list(self._watched.items()):
                driver = watched.ref()
                if driver is None:
                    del self._watched[key]
                    continue
                fd = _waiting_socket(driver)
                if fd is None:
                    watched.in_flight_since = None
                    continue
                if watched.in_flight_since is None:
                    watched.in_flight_since = now
                in_flight_ms = (now - watched.in_flight_since) * 1000
                limit_ms = watched.limit_ms
                if id(driver) in self._patient or in_flight_ms < limit_ms:
                    continue
                quiet_ms = ms_since_data(fd)
                if quiet_ms is None or quiet_ms < limit_ms:
                    continue
                log.warning(
                    "database sent nothing during a statement; connection cut",
                    quiet_seconds=round(quiet_ms / 1000, 1),
                )
                cut(fd)
                del self._watched[key]
                cuts += 1
        return cuts


def _waiting_socket(driver: Any) -> int | None:
    """The socket of a psycopg connection with a statement in flight, else None."""
    try:
        pgconn = driver.pgconn
        if pgconn.transaction_status != _ACTIVE:
            return None
        return int(pgconn.socket)
    except Exception:  # closed meanwhile, or not psycopg
        return None


WATCH = StallWatch()
