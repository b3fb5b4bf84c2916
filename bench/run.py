"""Revoke benchmark: the HTTP service against the raw database limit, per backend and scale.

For each backend and scale: load (or reuse) the database, start `coupons serve --workers N` as
in production, and for each workload run the same number of concurrent connections twice, one
after the other: once as HTTP requests to the server, once as the raw statements of those
requests straight through the driver (see bench/workloads.py). Both sides are bounded by a
request count and a duration, and consume disjoint ISSUED coupons. Prints a table and one
`RESULT {...}` line per result, saves JSON and a chart under bench/results/.

    python -m bench.run --backends sqlite,postgresql --scales 10k,1m --duration 5
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import load
from bench.load import Layout
from bench.workloads import (
    REVOKE_PATH,
    WORKLOADS,
    Caller,
    Job,
    capture_statements,
    make_jobs,
    run_raw,
    statement_shapes,
)

RESULTS_DIR = load.BENCH_DIR / "results"
HOST = "127.0.0.1"  # the load generator only ever talks to this machine
# Requests per second each side is allowed per second of duration (a count bound on top of
# the time bound, so a fast run cannot drain a small database).
RATE_CAP = {"codes50": 300, "code1": 1000, "customer": 600}
CODES_PER_JOB = {"codes50": 50, "code1": 1, "customer": 9}
MAX_ROUNDS = 100
T = TypeVar("T")  # bounds the refilled rounds of small scales


@dataclass
class Side:
    """One side of one measurement: what a set of connections achieved."""

    requests: int = 0
    codes: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def codes_per_s(self) -> float:
        return self.codes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- load generator processes -------------------------------------------------------------


def _drive(
    side: Side,
    jobs: Sequence[T],
    start: Any,
    duration_s: float,
    send: Callable[[T], int | None],
) -> None:
    """From the start line, send jobs one after another until done or the deadline; `send`
    returns the codes a job revoked, or None for an error."""
    start.wait()
    start_at = time.monotonic()
    deadline = start_at + duration_s
    for job in jobs:
        began = time.monotonic()
        if began >= deadline:
            break
        codes = send(job)
        side.latencies_ms.append((time.monotonic() - began) * 1000)
        side.requests += 1
        if codes is None:
            side.errors += 1
        else:
            side.codes += codes
    side.elapsed_s = time.monotonic() - start_at


class Wire:
    """A bare keep-alive HTTP/1.1 connection: sends prepared request bytes, reads one
    response with a Content-Length (the server always sends one).

    Not `http.client` (0.35 ms of CPU a call, most of it building and parsing headers) nor
    httpx (1.5 ms): the load shares the machine's two cores with the server, and what the
    client spends is taken from the server, as it would not be from another machine.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def request(host: str, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body) of its response."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.split(b"\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        while len(rest) < length:
            rest += self._receive_more()
        self.buffer = rest[length:]
        return int(status_line.split(b" ", 2)[1]), rest[:length]

    def _receive(self) -> None:
        self.buffer += self._receive_more()

    def _receive_more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def _http_connection(
    base_url: str,
    auth: tuple[str, str],
    jobs: Sequence[Job],
    start: Any,
    duration_s: float,
    results: Any,
) -> None:
    """One keep-alive connection sending its jobs one after another until done or deadline;
    each request's bytes are prepared before the start line, as the raw side's jobs are."""
    side = Side()
    host, _, port = base_url.removeprefix("http://").partition(":")
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    wire = Wire(host, int(port))
    wire.exchange(Wire.request(host, "GET", "/health", {}, b""))  # connect before the start
    prepared = [
        Wire.request(host, "POST", REVOKE_PATH, headers, json.dumps(job.body()).encode())
        for job in jobs
    ]

    def send(request: bytes) -> int | None:
        status, payload = wire.exchange(request)
        if status != 200:
            return None
        return len(json.loads(payload)["entity"]["revokedCoupons"])

    _drive(side, prepared, start, duration_s, send)
    wire.close()
    results.put(asdict(side))


def _raw_connection(
    url: str, caller: Caller, jobs: Sequence[Job], start: Any, duration_s: float, results: Any
) -> None:
    """One database connection running the raw statements of its jobs until done or deadline."""
    from coupons.adapters.sql_uow import Database

    side = Side()
    db = Database.from_url(url, pool_size=1)
    db.start_wal_checkpointer()  # as each server worker does (SQLite; a no-op otherwise)
    # Warm up like the server was (its dry runs): connect, compile and prepare statements.
    for job in jobs[:3]:
        run_raw(db, caller, job, commit=False)

    def send(job: Job) -> int | None:
        try:
            return run_raw(db, caller, job)
        except Exception:
            return None

    _drive(side, jobs, start, duration_s, send)
    db.dispose()
    results.put(asdict(side))


def run_side(
    target: Callable[..., None],
    first_args: tuple[Any, ...],
    jobs: Sequence[Job],
    connections: int,
    duration_s: float,
    during: Callable[[], None] | None = None,
) -> Side:
    """Run `connections` processes over `jobs` (dealt round-robin), bounded by `duration_s`."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    # Every connection is open before any starts: the clock starts when all are ready.
    start = ctx.Barrier(connections)
    processes = [
        ctx.Process(
            target=target,
            args=(*first_args, jobs[i::connections], start, duration_s, results),
            daemon=True,
        )
        for i in range(connections)
    ]
    for process in processes:
        process.start()
    if during is not None:
        during()
    parts = [Side(**results.get(timeout=duration_s + 120)) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    total = combine(parts)
    # Connections ran side by side: the wall time is the slowest one's, not the sum.
    total.elapsed_s = max(part.elapsed_s for part in parts)
    return total


def combine(parts: Sequence[Side]) -> Side:
    """Rounds run one after another: counts, latencies and elapsed times add up."""
    total = Side()
    for part in parts:
        total.requests += part.requests
        total.codes += part.codes
        total.errors += part.errors
        total.latencies_ms.extend(part.latencies_ms)
        total.elapsed_s += part.elapsed_s
    return total


# --- the server -----------------------------------------------------------------------------


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
        self, url: str, workers: int, log_path: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.url = url
        self.workers = workers
        self.extra_args = tuple(extra_args)
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
        env = {**os.environ, "COUPONS_LOG_LEVEL": "WARNING"}
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


# --- statement equality ---------------------------------------------------------------------

_IN_LIST = re.compile(r"IN \((?:(?:\?|%\(\w+\)s)(?:::\w+)?(?:, )?)+\)")


def same_sql(layout: Layout, http_job: Job, raw_job: Job) -> tuple[list[str], list[str]]:
    """Statements of one real request in-process and of its raw twin (IN lists folded)."""
    from fastapi.testclient import TestClient

    from coupons.adapters.sql_uow import Database
    from coupons.config import Settings
    from coupons.entrypoints.http import create_app

    db = Database.from_url(layout.url, pool_size=1)
    try:
        app = create_app(
            Settings(
                database_url=layout.url, token_secret="bench-signing-key-0123456789abcdef0123456789"
            ),
            db=db,
        )
        with TestClient(app) as client:
            with capture_statements(db.engine) as service:
                response = client.post(
                    REVOKE_PATH, json=http_job.body(), auth=(layout.username, layout.secret)
                )
            response.raise_for_status()
        with capture_statements(db.engine) as raw:
            run_raw(db, Caller(layout.org_id, layout.username), raw_job)
    finally:
        db.dispose()

    def fold(statements: list[str]) -> list[str]:
        return [_IN_LIST.sub("IN (...)", s) for s in statement_shapes(statements)]

    return fold(service), fold(raw)


# --- one run --------------------------------------------------------------------------------


def _short(http_rounds: Sequence[Side], raw_rounds: Sequence[Side], duration_s: float) -> bool:
    """Whether either side has yet to run for `duration_s` in all (and is still revoking)."""
    ran = min(sum(s.elapsed_s for s in http_rounds), sum(s.elapsed_s for s in raw_rounds))
    return ran < duration_s and http_rounds[-1].codes > 0 and raw_rounds[-1].codes > 0


def job_counts(layout: Layout, duration_s: float) -> dict[str, int]:
    """Jobs per side per workload: the rate cap times the duration, within what is left."""
    codes_left, customer_left = load.issued_left(layout)
    usable = 0.9 * codes_left / 2  # per side
    wanted = {w: int(RATE_CAP[w] * duration_s) for w in WORKLOADS}
    codes50 = min(wanted["codes50"], int(0.8 * usable / 50))
    code1 = min(wanted["code1"], int(usable - codes50 * 50))
    customer = min(wanted["customer"], int(0.9 * customer_left / 2 / 9))
    return {"codes50": codes50, "code1": code1, "customer": customer}


def ready_database(backend: str, scale: str, duration_s: float, pg_admin_url: str) -> Layout:
    """The loaded database of a scale, with the ISSUED coupons a run of `duration_s` would
    like left (capped for small scales, which start from a nearly fresh load instead)."""
    n = load.scale_count(scale)
    codes = 2 * (RATE_CAP["codes50"] * duration_s * 50 + RATE_CAP["code1"] * duration_s)
    customers = 2 * RATE_CAP["customer"] * duration_s * 9
    return load.ensure(
        backend,
        scale,
        need_codes=int(min(codes, 0.8 * 0.81 * n)),
        need_customer_coupons=int(min(customers, 0.8 * 0.09 * n)),
        pg_admin_url=pg_admin_url,
    )


def _phase(label: str, since: float) -> float:
    now = time.monotonic()
    print(f"[run] {label} {now - since:.1f}s", flush=True)
    return now


def measure(
    backend: str,
    scale: str,
    workloads: Sequence[str],
    *,
    connections: int,
    workers: int,
    duration_s: float,
    rounds: int,
    rng: random.Random,
    pg_admin_url: str,
) -> list[dict[str, Any]]:
    """Every workload at one backend and scale; one result dict per workload."""
    mark = time.monotonic()
    layout = ready_database(backend, scale, duration_s, pg_admin_url)
    counts = job_counts(layout, duration_s)
    mark = _phase(f"{backend}/{scale}: data ready {counts}", mark)
    caller = Caller(layout.org_id, layout.username)
    results = []
    log_path = load.DATA_DIR / f"server-{backend}-{scale}.log"
    with Server(layout.url, workers, log_path) as server:
        mark = _phase("server up", mark)
        rss_per_worker = rss_sum = 0.0
        for workload in workloads:
            # A scale too small to feed the whole duration from one pick (10k) runs more,
            # shorter rounds instead, its revoked coupons put back before each pick.
            refill = counts[workload] < RATE_CAP[workload] * duration_s
            if refill:
                load.restore(layout)
                counts = job_counts(layout, duration_s)
            http_jobs, raw_jobs = make_jobs(layout, workload, counts[workload] + 1, rng)
            if not http_jobs or not raw_jobs:
                print(f"[run] {backend}/{scale}/{workload}: no ISSUED coupons left, skipped")
                continue
            service_sql, raw_sql = same_sql(layout, http_jobs.pop(), raw_jobs.pop())
            if service_sql != raw_sql:
                raise RuntimeError(
                    f"raw side no longer issues the service's SQL for {workload}:\n"
                    + "\n".join(service_sql)
                    + "\n---\n"
                    + "\n".join(raw_sql)
                )
            mark = _phase(f"{workload}: jobs picked, SQL compared", mark)
            warm_up(server, layout, http_jobs[0], connections)
            mark = _phase(f"{workload}: warmed up", mark)
            # Alternate short HTTP and raw rounds, so a noisy neighbour hits both sides alike.
            http_rounds, raw_rounds = [], []
            for r in range(MAX_ROUNDS):
                if refill:
                    if r > 0:
                        load.restore(layout)
                        http_jobs, raw_jobs = make_jobs(layout, workload, counts[workload], rng)
                    http_share, raw_share, round_s = http_jobs, raw_jobs, duration_s
                else:
                    http_share, raw_share = http_jobs[r::rounds], raw_jobs[r::rounds]
                    round_s = duration_s / rounds
                with RssSampler(server) as rss:
                    http_rounds.append(
                        run_side(
                            _http_connection,
                            (server.base_url, (layout.username, layout.secret)),
                            http_share,
                            connections,
                            round_s,
                        )
                    )
                rss_per_worker = max(rss_per_worker, rss.max_per_worker)
                rss_sum = max(rss_sum, rss.max_sum)
                raw_rounds.append(
                    run_side(
                        _raw_connection,
                        (layout.url, caller),
                        raw_share,
                        connections,
                        round_s,
                    )
                )
                if r + 1 >= rounds and not (refill and _short(http_rounds, raw_rounds, duration_s)):
                    break
            http, raw = combine(http_rounds), combine(raw_rounds)
            mark = _phase(f"{workload}: measured", mark)
            result = {
                "backend": backend,
                "workload": workload,
                "scale": scale,
                "api_codes_per_s": round(http.codes_per_s, 1),
                "raw_codes_per_s": round(raw.codes_per_s, 1),
                "ratio": round(http.codes_per_s / raw.codes_per_s, 3) if raw.codes_per_s else 0,
                "p50_ms": round(http.percentile(0.50), 2),
                "p99_ms": round(http.percentile(0.99), 2),
                "server_rss_mb": round(rss_per_worker, 1),
                # Context beyond the RESULT contract, kept in the JSON file.
                "raw_p50_ms": round(raw.percentile(0.50), 2),
                "raw_p99_ms": round(raw.percentile(0.99), 2),
                "api_requests": http.requests,
                "api_codes": http.codes,
                "raw_codes": raw.codes,
                "raw_requests": raw.requests,
                "api_errors": http.errors,
                "raw_errors": raw.errors,
                "server_rss_sum_mb": round(rss_sum, 1),
                "rounds": len(http_rounds),
                "refilled": refill,
                "connections": connections,
                "workers": workers,
                "sql_statements": len(service_sql),
            }
            print("RESULT " + json.dumps({k: result[k] for k in RESULT_KEYS}), flush=True)
            results.append(result)
    return results


RESULT_KEYS = (
    "backend",
    "workload",
    "scale",
    "api_codes_per_s",
    "raw_codes_per_s",
    "ratio",
    "p50_ms",
    "p99_ms",
    "server_rss_mb",
)


# --- output ---------------------------------------------------------------------------------


def print_table(results: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="revoke: HTTP service vs raw database limit")
    columns = (
        "backend", "workload", "scale", "api_codes_per_s", "raw_codes_per_s", "ratio",
        "p50_ms", "p99_ms", "raw_p50_ms", "server_rss_mb", "api_requests", "api_errors",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in RESULT_KEYS[:3] else "right")
    for result in results:
        table.add_row(*(str(result[c]) for c in columns))
    Console(width=200).print(table)


def chart(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Throughput (HTTP and raw) and HTTP p99 against scale, one column per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in results)]
    fig, axes = plt.subplots(2, len(workloads), figsize=(5 * len(workloads), 7), squeeze=False)
    colours = {"sqlite": "tab:blue", "postgresql": "tab:orange"}
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for backend in ("sqlite", "postgresql"):
            rows = [r for r in results if r["workload"] == workload and r["backend"] == backend]
            rows.sort(key=lambda r: load.scale_count(r["scale"]))
            if not rows:
                continue
            xs = [load.scale_count(r["scale"]) for r in rows]
            colour = colours[backend]
            top.plot(xs, [r["api_codes_per_s"] for r in rows], "o-", color=colour,
                     label=f"{backend} HTTP")  # fmt: skip
            top.plot(xs, [r["raw_codes_per_s"] for r in rows], "s--", color=colour,
                     label=f"{backend} raw")  # fmt: skip
            bottom.plot(xs, [r["p99_ms"] for r in rows], "o-", color=colour,
                        label=f"{backend} p99")  # fmt: skip
            bottom.plot(xs, [r["p50_ms"] for r in rows], "x:", color=colour,
                        label=f"{backend} p50")  # fmt: skip
        top.set_title(f"{workload}: revoked codes/s")
        bottom.set_title(f"{workload}: HTTP latency (ms)")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("coupons in database")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        top.set_ylim(bottom=0)
        bottom.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def postgres_answers(admin_url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(load._libpq(admin_url), connect_timeout=3).close()
        return True
    except Exception as error:
        print(f"[run] PostgreSQL at {admin_url} does not answer ({error}); skipping it")
        return False


def chosen_backends(spec: str, pg_admin_url: str) -> list[str]:
    """The comma-separated backends of `--backends`, PostgreSQL left out when it is away."""
    backends = [b for b in spec.split(",") if b]
    if "postgresql" in backends and not postgres_answers(pg_admin_url):
        backends.remove("postgresql")
    return backends


def save_results(kind: str, results: Sequence[dict[str, Any]]) -> Path:
    """Keep a run's results as `bench/results/<kind>-<time>.json`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    return path


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scales", default="10k,1m")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating HTTP/raw rounds")
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--chart", default=str(RESULTS_DIR / "revoke-bench.png"))
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        help="results JSON of an earlier run to show in the table and chart too",
    )
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    for backend in chosen_backends(args.backends, args.pg_admin_url):
        for scale in [s for s in args.scales.split(",") if s]:
            results += measure(
                backend,
                scale,
                [w for w in args.workloads.split(",") if w],
                connections=args.connections,
                workers=args.workers,
                duration_s=args.duration,
                rounds=args.rounds,
                rng=rng,
                pg_admin_url=args.pg_admin_url,
            )
    save_results("results", results)
    shown = [r for path in args.include for r in json.loads(Path(path).read_text())] + results
    print_table(shown)
    if not args.no_chart and shown:
        chart(shown, Path(args.chart))
        print(f"chart: {args.chart}")
    return results


if __name__ == "__main__":
    main()
