"""This checkout against an earlier commit: codes50 over HTTP, two servers, rounds alternating.

A change worth 5-10% cannot be seen in `bench.run`'s separate runs on a shared machine: the
same code measured twice drifts by more than that. Here the working tree and a baseline
commit (checked out beside it with `git worktree`) each get a server, at once, on the same
database, and short HTTP rounds alternate between them (ABBA), so whatever else the machine
does hits both alike. Every request revokes 50 still-ISSUED codes of one series; the revoked
coupons are put back (`load.restore`) before every fourth round and at the end. Prints each
round and one line:

    AB {"backend", "scale", "baseline", "current_codes_per_s", "baseline_codes_per_s",
        "ratio", "pair_ratios", "current_p50_ms", "baseline_p50_ms"}

`ratio` is the median, over ABBA pairs, of current / baseline throughput.

    python -m bench.ab --baseline HEAD~3 --backend sqlite --rounds 6 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import load
from bench.database import RATE_CAP, ready_database
from bench.http_side import http_connection
from bench.server import Server, warm_up
from bench.timing import Side, combine, run_side
from bench.workloads import make_jobs

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = "codes50"


def pair_ratios(current: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """current / baseline of each round pair (rounds alternate, so pair i ran side by side)."""
    if len(current) != len(baseline):
        raise ValueError("each side needs the same number of rounds")
    return [c / b if b else 0.0 for c, b in zip(current, baseline, strict=True)]


def order(rounds: int) -> list[str]:
    """ABBA: current, baseline, baseline, current, ... (`rounds` of each)."""
    return [("current", "baseline", "baseline", "current")[r % 4] for r in range(2 * rounds)]


@contextmanager
def checked_out(revision: str) -> Iterator[Path]:
    """The project's sources at `revision`, in a temporary worktree removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )


def measure(
    backend: str,
    scale: str,
    baseline: str,
    *,
    connections: int,
    workers: int,
    rounds: int,
    round_s: float,
    rng: random.Random,
    pg_admin_url: str,
) -> dict[str, Any]:
    """Alternate HTTP rounds between a server of this checkout and one of `baseline`."""
    layout = ready_database(backend, scale, 2 * rounds * round_s, pg_admin_url)
    speeds: dict[str, list[float]] = {"current": [], "baseline": []}
    sides: dict[str, list[Side]] = {"current": [], "baseline": []}
    with ExitStack() as stack:
        sources = stack.enter_context(checked_out(baseline))
        servers = {
            "current": stack.enter_context(
                Server(layout.url, workers, load.DATA_DIR / f"server-ab-{backend}-current.log")
            ),
            # The baseline's own package comes first on its path; the venv is shared.
            "baseline": stack.enter_context(
                Server(
                    layout.url,
                    workers,
                    load.DATA_DIR / f"server-ab-{backend}-baseline.log",
                    env={"PYTHONPATH": str(sources / "src")},
                )
            ),
        }
        try:
            for server in servers.values():
                warm_up(server, layout, _jobs(layout, 0.1, rng)[0], connections)
            for r, name in enumerate(order(rounds), 1):
                if r % 4 == 1:
                    load.restore(layout)  # a quad revokes up to ~300,000 codes at 25,000/s
                side = run_side(
                    http_connection,
                    (servers[name].base_url, (layout.username, layout.secret)),
                    _jobs(layout, round_s, rng),
                    connections,
                    round_s,
                )
                if not side.requests or side.errors or side.codes != 50 * side.requests:
                    raise RuntimeError(f"{name}: requests failed or revoked less than asked")
                sides[name].append(side)
                speeds[name].append(side.codes / side.elapsed_s if side.elapsed_s else 0.0)
                print(f"[ab] round {r}/{2 * rounds}: {name} {speeds[name][-1]:,.0f} codes/s")
        finally:
            load.restore(layout)
    ratios = pair_ratios(speeds["current"], speeds["baseline"])
    current, base = combine(sides["current"]), combine(sides["baseline"])
    result = {
        "backend": backend,
        "scale": scale,
        "baseline": baseline,
        "current_codes_per_s": round(statistics.median(speeds["current"]), 1),
        "baseline_codes_per_s": round(statistics.median(speeds["baseline"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        "pair_ratios": [round(x, 3) for x in ratios],
        "current_p50_ms": round(current.percentile(0.5), 2),
        "baseline_p50_ms": round(base.percentile(0.5), 2),
    }
    print("AB " + json.dumps(result), flush=True)
    return result


def _jobs(layout: load.Layout, round_s: float, rng: random.Random) -> list[Any]:
    count = int(RATE_CAP[WORKLOAD] * round_s)
    first, second = make_jobs(layout, WORKLOAD, count, rng)
    return first + second  # disjoint ISSUED codes: use both halves


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a commit, branch or tag")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="rounds per side")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    return measure(
        args.backend,
        args.scale,
        args.baseline,
        connections=args.connections,
        workers=args.workers,
        rounds=args.rounds,
        round_s=args.seconds,
        rng=random.Random(args.seed),
        pg_admin_url=args.pg_admin_url,
    )


if __name__ == "__main__":
    main()
