"""Where the machine's cores go under the codes50 HTTP load: the server, the database, the
load generator.

The anchor ratio says how far the HTTP path is from the database's limit; this says why. It
serves codes50 as `bench.run` does and, over a window in the middle of the load, reads each
process's user and system CPU time from `/proc`, grouped by who spent it, per request:

    python -m bench.cpu_split --backend postgresql --scale 1m --seconds 8

PostgreSQL's share is its backends' CPU (every process whose command line starts with
`postgres`); with SQLite the database work runs inside the server's processes.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import load
from bench.http_side import http_connection
from bench.server import Server
from bench.timing import run_side
from bench.workloads import make_jobs

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Usage:
    """A process's command line and CPU seconds so far; `started` (clock ticks after boot)
    tells a process from a later one that got the same pid."""

    command: str
    user_s: float
    system_s: float
    started: int = 0


def snapshot(proc: Path = Path("/proc")) -> dict[int, Usage]:
    """Every readable process's CPU time now."""
    found: dict[int, Usage] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # Fields after the command name (which may hold spaces or parentheses): utime is the
        # 14th field of the line, stime the 15th.
        fields = stat.rpartition(")")[2].split()
        found[int(entry.name)] = Usage(
            command, int(fields[11]) / TICKS, int(fields[12]) / TICKS, int(fields[19])
        )
    return found


def machine_busy(stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot: what no process list can miss."""
    ticks = [int(value) for value in stat.read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def group_of(
    pid: int, usage: Usage, server_pids: Collection[int], load_pids: Collection[int]
) -> str:
    if pid in server_pids:
        return "server"
    if pid in load_pids:
        return "load generator"
    if usage.command.startswith("postgres"):
        return "postgresql"
    return "other"


def split(
    before: Mapping[int, Usage],
    after: Mapping[int, Usage],
    server_pids: Sequence[int],
    load_pids: Sequence[int],
) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per group between two snapshots (processes alive in both)."""
    totals: dict[str, tuple[float, float]] = {}
    servers, loads = set(server_pids), set(load_pids)
    for pid, end in after.items():
        start = before.get(pid)
        # Same process by its start time, not its command line: a PostgreSQL backend rewrites
        # its line with every statement ("idle", "UPDATE", "idle in transaction"), and
        # matching on it dropped most backends from the count.
        if start is None or start.started != end.started:
            continue
        name = group_of(pid, end, servers, loads)
        user, system = totals.get(name, (0.0, 0.0))
        totals[name] = (user + end.user_s - start.user_s, system + end.system_s - start.system_s)
    return totals


def report(totals: Mapping[str, tuple[float, float]], seconds: float, requests: float) -> str:
    """Per group: share of one core and CPU milliseconds per request."""
    lines = [f"{'group':16} {'user':>8} {'system':>8}   (% of one core; ms per request)"]
    for name, (user, system) in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        if user + system <= 0:
            continue
        lines.append(
            f"{name:16} {100 * user / seconds:7.1f}% {100 * system / seconds:7.1f}%"
            f"   {1000 * user / requests:.2f} + {1000 * system / requests:.2f} ms"
        )
    return "\n".join(lines)


def load_started(server_pids: Sequence[int], timeout_s: float = 60.0) -> None:
    """Wait until the server spends at least half a core over a tenth of a second: the
    connections have passed their start line."""

    def spent() -> float:
        now = snapshot()
        return sum(now[p].user_s + now[p].system_s for p in server_pids if p in now)

    deadline = time.monotonic() + timeout_s
    last = spent()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = spent()
        if current - last >= 0.05:
            return
        last = current


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--seconds", type=float, default=8, help="load duration")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    layout = load.ensure(args.backend, args.scale, need_codes=100_000)
    jobs, _ = make_jobs(layout, "codes50", int(400 * args.seconds), random.Random())
    log = load.DATA_DIR / f"server-cpu-split-{args.backend}.log"
    window: list[tuple[dict[int, Usage], float]] = []
    machine: list[tuple[int, int]] = []
    me = os.getpid()

    with Server(layout.url, args.workers, log) as server:
        assert server.process is not None
        server_pids = [server.process.pid, *server.worker_pids()]
        auth = (layout.username, layout.secret)
        run_side(http_connection, (server.base_url, auth), jobs[:40], args.connections, 5)

        def measure() -> None:
            # The middle of the load: connections are up, none has run out of jobs yet. The
            # connections' processes take a second or two to start, so the window opens once
            # the server is seen busy, not at a fixed time (which took in idle seconds before
            # the load and diluted every figure), and closes well before the load ends.
            load_started(server_pids)
            time.sleep(0.5)
            window.append((snapshot(), time.perf_counter()))
            machine.append(machine_busy())
            time.sleep(max(args.seconds - 4.0, 1.0))
            window.append((snapshot(), time.perf_counter()))
            machine.append(machine_busy())

        side = run_side(
            http_connection,
            (server.base_url, auth),
            jobs[40:],
            args.connections,
            args.seconds,
            during=measure,
        )
    (before, started), (after, ended) = window
    # The load generator's processes are this run's other Python processes (forkserver
    # children): everything under `bench` that is neither the server nor this process.
    load_pids = [
        pid
        for pid, usage in after.items()
        if pid != me and pid not in server_pids and "multiprocessing" in usage.command
    ]
    seconds = ended - started
    rate = side.requests / side.elapsed_s if side.elapsed_s else 0.0
    print(
        f"codes50, {args.backend} {args.scale}: {side.codes_per_s:.0f} codes/s "
        f"({rate:.0f} requests/s), window {seconds:.1f} s, {os.cpu_count()} cores"
    )
    print(report(split(before, after, server_pids, load_pids), seconds, rate * seconds))
    (busy_before, all_before), (busy_after, all_after) = machine
    print(
        f"machine: {100 * (busy_after - busy_before) / max(all_after - all_before, 1):.0f}% of "
        "all cores busy over the window (from /proc/stat, whoever spent it)"
    )
    # Each server process alone: a worker near 100% of a core is GIL-bound, whatever the rest.
    for pid in server_pids:
        if pid in before and pid in after:
            used = sum(split({pid: before[pid]}, {pid: after[pid]}, [pid], [])["server"])
            print(f"  server process {pid}: {100 * used / seconds:.1f}% of one core")


if __name__ == "__main__":
    main()
