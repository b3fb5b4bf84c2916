"""Latency against table size: codes50 p50 on the largest scale against the smallest, side by side.

`bench.run` measures each scale with its own server, minutes apart, so on a shared machine
its per-scale medians drift with whatever else runs. Here a server per scale runs at once and
HTTP rounds alternate between them (ABBA: small, large, large, small, ...), so a noisy
neighbour hits both alike and the ratio holds. The small scale cannot feed a round from one
load: its revoked coupons are put back (`load.restore`) before each of its rounds. Every
request revokes 50 still-ISSUED codes of one series. Prints a table and one line:

    SCALE {"backend", "workload", "small", "large", "p50_small_ms", "p50_large_ms",
           "p50_ratio", "p99_small_ms", "p99_large_ms", "small_codes_per_s",
           "large_codes_per_s", "requests_small", "requests_large"}

    python -m bench.scale --backends sqlite,postgresql --small 10k --large 10m --duration 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench import load
from bench.database import RATE_CAP, chosen_backends, ready_database
from bench.http_side import http_connection
from bench.report import save_results
from bench.server import Server, warm_up
from bench.timing import Side, combine, run_side
from bench.workloads import make_jobs

WORKLOAD = "codes50"
TARGET = 1.3  # the p50 on the largest scale may be at most this much above the smallest's


def _jobs(layout: load.Layout, round_s: float, small: bool, rng: random.Random) -> list[Any]:
    """One round's requests: fresh ISSUED codes, the small scale's restored first."""
    if small:
        load.restore(layout)
    codes_left, _ = load.issued_left(layout)
    count = min(int(RATE_CAP[WORKLOAD] * round_s), int(0.8 * codes_left / 50 / 2))
    http_jobs, other_jobs = make_jobs(layout, WORKLOAD, count, rng)
    return http_jobs + other_jobs  # both halves are disjoint ISSUED codes: use them all


def measure(
    backend: str,
    small: str,
    large: str,
    *,
    connections: int,
    workers: int,
    duration_s: float,
    rounds: int,
    rng: random.Random,
    pg_admin_url: str,
) -> dict[str, Any]:
    """Alternate codes50 HTTP rounds between a server on each scale; one result dict."""
    layouts = {
        scale: ready_database(backend, scale, duration_s, pg_admin_url) for scale in (small, large)
    }
    sides: dict[str, list[Side]] = {small: [], large: []}
    with ExitStack() as stack:
        servers = {
            scale: stack.enter_context(
                Server(layout.url, workers, load.DATA_DIR / f"server-scale-{backend}-{scale}.log")
            )
            for scale, layout in layouts.items()
        }
        round_s = duration_s / rounds
        for scale, layout in layouts.items():
            warm_up(servers[scale], layout, _jobs(layout, 0.1, scale == small, rng)[0], connections)
        for r in range(2 * rounds):
            scale = (small, large, large, small)[r % 4]
            layout = layouts[scale]
            jobs = _jobs(layout, round_s, scale == small, rng)
            sides[scale].append(
                run_side(
                    http_connection,
                    (servers[scale].base_url, (layout.username, layout.secret)),
                    jobs,
                    connections,
                    round_s,
                )
            )
            print(f"[scale] {backend} round {r + 1}/{2 * rounds}: {scale}", flush=True)
    a, b = combine(sides[small]), combine(sides[large])
    if a.errors or b.errors or a.codes != 50 * a.requests or b.codes != 50 * b.requests:
        raise RuntimeError(f"requests failed or revoked less than asked: {a!r:.200} {b!r:.200}")
    p50_small, p50_large = a.percentile(0.5), b.percentile(0.5)
    result = {
        "backend": backend,
        "workload": WORKLOAD,
        "small": small,
        "large": large,
        "p50_small_ms": round(p50_small, 2),
        "p50_large_ms": round(p50_large, 2),
        "p50_ratio": round(p50_large / p50_small, 3) if p50_small else 0.0,
        "p99_small_ms": round(a.percentile(0.99), 2),
        "p99_large_ms": round(b.percentile(0.99), 2),
        "small_codes_per_s": round(a.codes_per_s, 1),
        "large_codes_per_s": round(b.codes_per_s, 1),
        "requests_small": a.requests,
        "requests_large": b.requests,
    }
    print("SCALE " + json.dumps(result), flush=True)
    return result


def print_table(results: Sequence[dict[str, Any]]) -> None:
    print(
        f"\n{'backend':<11} {'small':>6} {'large':>6} {'p50 small':>10} {'p50 large':>10} "
        f"{'ratio':>6} {'target':>7} {'p99 small':>10} {'p99 large':>10}"
    )
    for r in results:
        print(
            f"{r['backend']:<11} {r['small']:>6} {r['large']:>6} {r['p50_small_ms']:>10.1f} "
            f"{r['p50_large_ms']:>10.1f} {r['p50_ratio']:>6.2f} {TARGET:>7.1f} "
            f"{r['p99_small_ms']:>10.1f} {r['p99_large_ms']:>10.1f}"
        )


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--small", default="10k")
    parser.add_argument("--large", default="10m")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per scale")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per scale")
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    results = [
        measure(
            backend,
            args.small,
            args.large,
            connections=args.connections,
            workers=args.workers,
            duration_s=args.duration,
            rounds=args.rounds,
            rng=rng,
            pg_admin_url=args.pg_admin_url,
        )
        for backend in chosen_backends(args.backends, args.pg_admin_url)
    ]
    save_results("scale", results)
    print_table(results)
    return results


if __name__ == "__main__":
    main()
