"""The server under test: `coupons serve --workers N` in a subprocess, its memory, warm-up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bench.load import Layout
from bench.workloads import REVOKE_PATH, Job

SOURCES = Path(__file__).resolve().parent.parent / "src"

HOST = "127.0.0.1"  # the load generator only ever talks to this machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            text = (task / "children").read_text().split()
            found.extend(int(c) for c in text)
    except OSError:
        return []
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


class Server:
    """`coupons serve --workers N` in a subprocess on a free port, as an operator starts it."""

    def __init__(
        self,
        url: str,
        workers: int,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.workers = workers
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [
            sys.executable, "-m", "coupons.entrypoints.cli", "serve",
            "--host", HOST, "--port", str(self.port), "--workers", str(self.workers),
            "--db", self.url, *self.extra_args,
        ]  # fmt: skip
        # This checkout's sources first: the package may be installed from another checkout
        # (a second worktree shares the venv), and `bench.ab` compares this one with a baseline.
        own = os.pathsep.join(filter(None, (str(SOURCES), os.environ.get("PYTHONPATH"))))
        env = {**os.environ, "COUPONS_LOG_LEVEL": "WARNING", "PYTHONPATH": own, **self.env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_until_serving(deadline=time.monotonic() + 90)
        except BaseException:
            self.__exit__()  # also on Ctrl-C: never leave a server behind
            raise
        return self

    def _wait_until_serving(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log_path}")
            try:
                healthy = httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and len(self.worker_pids()) >= self.workers:
                return
            time.sleep(0.3)
        raise RuntimeError(f"server did not answer within 90 s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """The worker processes (uvicorn spawns them; with one worker it serves itself)."""
        assert self.process is not None
        workers = []
        for pid in _children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                workers.append(pid)
        return workers or [self.process.pid]

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class RssSampler:
    """Samples the server workers' RSS while a measurement runs; keeps the peak."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.max_per_worker = 0.0
        self.max_sum = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sizes = [rss_mb(pid) for pid in self.server.worker_pids()]
            if sizes:
                self.max_per_worker = max(self.max_per_worker, max(sizes))
                self.max_sum = max(self.max_sum, sum(sizes))
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def warm_up(server: Server, layout: Layout, job: Job, connections: int) -> None:
    """Dry runs over fresh connections: every worker verifies the secret once (argon2) and
    imports its lazy modules before the clock starts; dry runs change nothing."""

    def one() -> None:
        with httpx.Client(base_url=server.base_url, auth=(layout.username, layout.secret)) as c:
            c.post(f"{REVOKE_PATH}?dryRun=true", json=job.body(), timeout=60)

    # One at a time first, so workers verify the secret once each rather than all at once.
    for _ in range(2 * server.workers):
        one()
    threads = [threading.Thread(target=one) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
