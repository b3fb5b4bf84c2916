"""Profile the server's HTTP hot path under the codes50 workload with py-spy.

Starts `coupons serve` on a loaded benchmark database, drives codes50 over HTTP, samples every
worker with `py-spy record` (raw collapsed stacks), and prints where the workers' time goes:
by layer (driver, SQLAlchemy, FastAPI/pydantic, ASGI server, project code...) and the top
functions by inclusive share. Needs the `bench` extra (py-spy) and ptrace rights.

    python -m bench.profile --backend sqlite --scale 1m --seconds 15
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import load
from bench.http_side import http_connection
from bench.server import Server
from bench.timing import run_side
from bench.workloads import make_jobs

# First matching fragment of a frame's file names the layer that frame belongs to.
LAYERS = (
    ("sqlite3", "driver (sqlite3)"),
    ("psycopg", "driver (psycopg)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("pydantic", "pydantic"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("anyio", "anyio (threadpool hop)"),
    ("uvicorn", "uvicorn"),
    ("httptools", "uvicorn"),
    ("h11", "uvicorn"),
    ("asyncio", "asyncio loop"),
    ("argon2", "argon2"),
    ("orjson", "orjson"),
    ("coupons/", "coupons (project)"),
)


def _layer(frame: str) -> str:
    for fragment, layer in LAYERS:
        if fragment in frame:
            return layer
    return "other"


def summarise(collapsed: Sequence[Path], top: int = 25) -> str:
    """Self time per layer and inclusive time per function, as text."""
    self_by_layer: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in collapsed:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            self_by_layer[_layer(frames[-1])] += count
            for frame in set(frames):
                inclusive[frame] += count
    lines = [f"{total} samples"]
    lines.append("self time by layer:")
    for layer, count in self_by_layer.most_common():
        lines.append(f"  {100 * count / total:5.1f}%  {layer}")
    lines.append(f"top {top} functions by inclusive time:")
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of threads holding the GIL: where Python spends CPU, no waiting",
    )
    args = parser.parse_args(argv)
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when it is not on PATH
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is missing: pip install -e '.[bench]'")

    layout = load.ensure(args.backend, args.scale, need_codes=100_000)
    jobs, _ = make_jobs(layout, "codes50", int(300 * args.seconds), random.Random())
    stem = f"profile-{args.backend}-{args.scale}-codes50"
    log = load.DATA_DIR / f"server-profile-{args.backend}.log"
    with Server(layout.url, args.workers, log) as server:
        # Warm every worker (secret verified once, modules imported) before sampling.
        run_side(http_connection, (server.base_url, (layout.username, layout.secret)),
                 jobs[:40], args.connections, 5)  # fmt: skip
        outputs = []
        recorders = []
        for pid in server.worker_pids():
            out = load.DATA_DIR / f"{stem}-{pid}.txt"
            outputs.append(out)
            recorders.append(
                subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
                     "--format", "raw", "--rate", "200", "--output", str(out), "--nonblocking",
                     *(["--gil"] if args.gil else [])],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        time.sleep(1)  # let py-spy attach
        side = run_side(
            http_connection,
            (server.base_url, (layout.username, layout.secret)),
            jobs[40:],
            args.connections,
            args.seconds - 2,
        )
        print(
            f"codes50 over HTTP while sampled: {side.codes_per_s:.0f} codes/s, "
            f"p50 {side.percentile(0.5):.1f} ms, p99 {side.percentile(0.99):.1f} ms"
        )
        for recorder in recorders:
            recorder.wait(timeout=args.seconds + 60)
    report = summarise([p for p in outputs if p.exists()])
    (load.DATA_DIR / f"{stem}.summary.txt").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
