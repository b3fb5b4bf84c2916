"""Throwaway PostgreSQL clusters and PgBouncers for tests that stop, start or break a database.

The shared test server must never be stopped, so these tests build their own: `initdb` into a
temporary directory, `pg_ctl` on a free port, and (when asked) a PgBouncer in transaction
pooling mode in front of it. PostgreSQL and PgBouncer both refuse to run as root, so as root
every command runs as the `postgres` user, in a directory that user owns.

A cluster can also be made a streaming replica of another (`pg_basebackup -R`), kept in step
synchronously and promoted, and a PgBouncer pointed at another cluster, as a failover manager
does.

Outside CI a missing piece (no PostgreSQL binaries, no `pgbouncer`) skips the test with its
reason; in CI (`CI` set) it fails, so a green CI run has really run them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.reliability.live import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = "pgbouncer"
OWNER = "postgres"


def missing(reason: str) -> None:
    """Skip the test for a missing tool, or fail it in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _postgres_bin() -> Path | None:
    if (POSTGRES_BIN / "initdb").exists():
        return POSTGRES_BIN
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_owner(command: list[str]) -> list[str]:
    """Run as `postgres` when we are root (both servers refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OWNER, "--", *command]
    return command


def _owned_temp_dir(prefix: str) -> Path:
    """A private temporary directory that the server user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o700)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OWNER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _run(command: list[str], what: str, timeout: float = 60) -> None:
    done = subprocess.run(
        _as_owner(command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


def _wait_for_port(port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class Cluster:
    """A PostgreSQL cluster of our own: `stop()` and `start()` it at will.

    With `standby_of`, a streaming replica of that (running) cluster instead of a new one: a
    copy of its data directory that, started, follows its WAL until `promote()`d.
    """

    def __init__(self, *, standby_of: Cluster | None = None) -> None:
        bin_dir = _postgres_bin()
        if bin_dir is None:
            missing("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        assert bin_dir is not None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(OWNER)
            except KeyError:
                missing(f"no {OWNER!r} user to run a throwaway PostgreSQL as")
            if shutil.which("runuser") is None:
                missing("runuser not installed")
        self.bin = bin_dir
        self.dir = _owned_temp_dir("coupons-pg-")
        self.data = self.dir / "data"
        self.port = free_port()
        if standby_of is not None:
            try:
                self._copy(standby_of)
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            return
        _run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )

    def _copy(self, primary: Cluster) -> None:
        # -R: `standby.signal` and the primary's address (`primary_conninfo`) go with the
        # copy; -X stream: the WAL written meanwhile too, so the copy is consistent.
        _run(
            [
                str(self.bin / "pg_basebackup"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            "pg_basebackup",
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off: these clusters hold test data only; a stop, even "immediate", still keeps
        # every committed transaction (the WAL is written, just not flushed to the platter).
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=32MB"
        )
        _run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "pg_ctl start",
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients, `immediate` is a crash."""
        _run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            "pg_ctl stop",
        )

    def promote(self) -> None:
        """End a standby's recovery: from now on it is a primary and takes writes."""
        _run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"],
            "pg_ctl promote",
            timeout=90,
        )

    def query(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """The rows of one statement, run on its own connection (autocommit)."""
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql.encode())  # bytes: any statement, not only a literal
            return cursor.fetchall() if cursor.description is not None else []

    def replicate_synchronously(self, timeout: float = 30) -> None:
        """Make each commit here wait until a standby has it, as a failover that must lose no
        acknowledged commit needs; returns once a standby streams synchronously.

        Set in this cluster's own configuration, after the standby was copied from it: the
        standby, once promoted, must not wait for a standby of its own.
        """
        self.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.query("SELECT pg_reload_conf()")
        synchronous = (
            "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'"
        )
        deadline = time.monotonic() + timeout
        while not self.query(synchronous):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no synchronous standby after {timeout}s")
            time.sleep(0.05)

    def _processes(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # "pid (command) state ppid ...": the command may hold spaces and parentheses
                if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Stop every server process without closing a connection: to its clients the server
        is cut off (its kernel still acknowledges, nothing ever answers)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> str:
        engine = create_engine(
            make_url(self.url()).set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of `cluster`, on a free port.

    `query_wait_timeout`: seconds a transaction waits for a server connection (the server is
    down) before PgBouncer fails it; a shorter outage is absorbed by the wait.
    """

    def __init__(
        self, cluster: Cluster, *, pool_size: int = 20, query_wait_timeout: int = 10
    ) -> None:
        binary = shutil.which(PGBOUNCER) or shutil.which(PGBOUNCER, path="/usr/sbin")
        if binary is None:
            missing("pgbouncer not installed (Debian package `pgbouncer`)")
        assert binary is not None
        self.binary = binary
        self.cluster = cluster
        self.dir = _owned_temp_dir("coupons-pgbouncer-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pool_size = pool_size
        self.query_wait_timeout = query_wait_timeout
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        self._write_config()

    def _write_config(self) -> None:
        # server_login_retry: how soon PgBouncer tries the server again after a failed login
        # (default 15 s); short, so the service recovers within seconds of the database.
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.cluster.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            "server_login_retry = 1\n"
            f"query_wait_timeout = {self.query_wait_timeout}\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OWNER)
            for name in ("users.txt", "pgbouncer.ini"):
                os.chown(self.dir / name, entry.pw_uid, entry.pw_gid)

    def point_at(self, cluster: Cluster) -> None:
        """Send every new server connection to `cluster`, as a failover manager does after a
        promotion: rewrite the configuration, `RELOAD` it, and `RECONNECT` (server connections
        to the old address close as soon as their transaction is over). Clients stay
        connected to PgBouncer throughout."""
        self.cluster = cluster
        self._write_config()
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer",
            autocommit=True,
            connect_timeout=5,
        ) as admin:
            # The admin console speaks the simple query protocol only.
            for command in (b"RELOAD", b"RECONNECT"):
                result = admin.pgconn.exec_(command)
                if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                    message = (result.error_message or b"").decode(errors="replace")
                    raise RuntimeError(f"PgBouncer {command.decode()} failed: {message}")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?prepare_threshold=none"

    def start(self) -> None:
        self.process = subprocess.Popen(
            _as_owner([self.binary, str(self.dir / "pgbouncer.ini")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port, 15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and deleted afterwards."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@contextlib.contextmanager
def throwaway_standby(primary: Cluster) -> Iterator[Cluster]:
    """A started streaming replica of `primary`, which from then on commits synchronously
    (each commit waits until the standby has it); stopped and deleted afterwards."""
    standby = Cluster(standby_of=primary)
    try:
        standby.start()
        primary.replicate_synchronously()
        yield standby
    finally:
        standby.destroy()


@contextlib.contextmanager
def pgbouncer_in_front(
    cluster: Cluster, *, pool_size: int = 20, query_wait_timeout: int = 10
) -> Iterator[PgBouncer]:
    """A started PgBouncer (transaction pooling) in front of `cluster`."""
    bouncer = PgBouncer(cluster, pool_size=pool_size, query_wait_timeout=query_wait_timeout)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.destroy()
