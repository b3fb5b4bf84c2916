"""The timed loop every load generator shares: a start line, a deadline, and the figures.

A side of a measurement is a set of connection processes started together behind a barrier;
each sends its jobs one after another until they run out or the duration is up, and reports
a `Side` (counts and latencies) through a queue.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


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


def drive(
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


def run_side(
    target: Callable[..., None],
    first_args: tuple[Any, ...],
    jobs: Sequence[Any],
    connections: int,
    duration_s: float,
    during: Callable[[], None] | None = None,
) -> Side:
    """Run `connections` processes over `jobs` (dealt round-robin), bounded by `duration_s`.

    `target(*first_args, its_jobs, start, duration_s, results)` runs in each process and puts
    `asdict(Side)` on `results`."""
    ctx = _context(target)
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
    try:
        for process in processes:
            process.start()
        if during is not None:
            during()
        parts = [Side(**results.get(timeout=duration_s + 120)) for _ in processes]
        for process in processes:
            process.join(timeout=30)
    finally:
        # A connection that never reported (it failed, or hangs) must not outlive the run.
        start.abort()
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    total = combine(parts)
    # Connections ran side by side: the wall time is the slowest one's, not the sum.
    total.elapsed_s = max(part.elapsed_s for part in parts)
    return total


def _context(target: Callable[..., None]) -> Any:
    """Processes forked from a clean, single-threaded server, not from this process.

    Forking the caller copies its threads' locks mid-use: a test process whose other threads
    were inside SQLite (a background job worker) handed a child a held SQLite mutex, and the
    child hung in `sqlite3.connect` forever, keeping the caller's pipes open. The server has
    the target's module imported already, so a connection starts about as fast as a fork."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([target.__module__])
    return ctx


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
