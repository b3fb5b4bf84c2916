"""Revoke benchmark: the HTTP service against the raw database limit, per backend and scale.

For each backend and scale: load (or reuse) the database, start `coupons serve --workers N` as
in production, and for each workload run the same number of concurrent connections twice, one
after the other: once as HTTP requests to the server, once as the raw statements of those
requests straight through the driver (see bench/service_calls.py). Both sides are bounded by a
request count and a duration, and consume disjoint ISSUED coupons. Prints a table and one
`RESULT {...}` line per result, saves JSON and a chart under bench/results/.

    python -m bench.run --backends sqlite,postgresql --scales 10k,1m --duration 5

This module is the run and its command line; the pieces live beside it: `database` (backends,
ready databases), `server` (the server under test), `timing` (the timed loop and its
figures), `http_side` and `raw_side` (the two load generators), `service_calls` (the only
calls into the service's repositories), `report` (table, chart, JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import anchor, load
from bench.database import RATE_CAP, chosen_backends, job_counts, ready_database
from bench.http_side import http_connection
from bench.load import Layout
from bench.raw_side import raw_connection, same_sql
from bench.report import RESULT_KEYS, RESULTS_DIR, chart, print_table, save_results
from bench.server import RssSampler, Server, warm_up
from bench.timing import Side, combine, run_side
from bench.workloads import WORKLOADS, Caller, make_jobs

__all__ = ["RATE_CAP", "main", "measure"]

MAX_ROUNDS = 100  # bounds the refilled rounds of small scales
ANCHORED = ("codes50",)  # workloads measured against their physical limit (bench.anchor)


def _short(http_rounds: Sequence[Side], raw_rounds: Sequence[Side], duration_s: float) -> bool:
    """Whether either side has yet to run for `duration_s` in all (and is still revoking)."""
    ran = min(sum(s.elapsed_s for s in http_rounds), sum(s.elapsed_s for s in raw_rounds))
    return ran < duration_s and http_rounds[-1].codes > 0 and raw_rounds[-1].codes > 0


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
    with_anchor: bool = True,
) -> list[dict[str, Any]]:
    """Every workload at one backend and scale; one result dict per workload.

    codes50 is also measured against its physical limit (`bench.anchor`), before and after
    the HTTP and raw rounds, each time for half the duration."""
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
            anchored = with_anchor and workload in ANCHORED
            limits = [_anchor(layout, connections, duration_s / 2, rng)] if anchored else []
            # The anchor mirrors today's statements; say so when the service moved on.
            differ = anchor.differences(service_sql, backend) if anchored else []
            mirrored = not differ if anchored else None
            for service_says, anchor_says in differ:
                print(f"[run] anchor differs from the service (bench.anchor):\n  service: "
                      f"{service_says}\n  anchor:  {anchor_says}")  # fmt: skip
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
                            http_connection,
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
                        raw_connection,
                        (layout.url, caller),
                        raw_share,
                        connections,
                        round_s,
                    )
                )
                if r + 1 >= rounds and not (refill and _short(http_rounds, raw_rounds, duration_s)):
                    break
            if anchored:
                limits.append(_anchor(layout, connections, duration_s / 2, rng))
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
                **_limit_fields(http, limits),
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
                "limit_sql_mirrors_service": mirrored,
            }
            print("RESULT " + json.dumps({k: result[k] for k in RESULT_KEYS}), flush=True)
            results.append(result)
    return results


def _anchor(layout: Layout, connections: int, duration_s: float, rng: random.Random) -> Side:
    """One anchor measurement (its scratch table gone afterwards), with a progress line."""
    try:
        side = anchor.measure(layout, connections=connections, duration_s=duration_s, rng=rng)
    finally:
        if layout.backend == "postgresql":
            anchor.drop_jobs(layout)
    print(f"[run] anchor: {side.codes_per_s:.0f} codes/s ({side.requests} requests)", flush=True)
    return side


def _limit_fields(http: Side, limits: Sequence[Side]) -> dict[str, Any]:
    """The anchor's figures for a result (None where the workload has no anchor)."""
    if not limits:
        return {key: None for key in LIMIT_KEYS}
    limit = combine(limits)
    return {
        "limit_codes_per_s": round(limit.codes_per_s, 1),
        "limit_ratio": round(http.codes_per_s / limit.codes_per_s, 3) if limit.codes_per_s else 0,
        "limit_before_codes_per_s": round(limits[0].codes_per_s, 1),
        "limit_after_codes_per_s": round(limits[-1].codes_per_s, 1),
        "limit_p50_ms": round(limit.percentile(0.50), 2),
        "limit_p99_ms": round(limit.percentile(0.99), 2),
        "limit_requests": limit.requests,
        "limit_codes": limit.codes,
        "limit_errors": limit.errors,
    }


LIMIT_KEYS = (
    "limit_codes_per_s", "limit_ratio", "limit_before_codes_per_s", "limit_after_codes_per_s",
    "limit_p50_ms", "limit_p99_ms", "limit_requests", "limit_codes", "limit_errors",
)  # fmt: skip


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
        "--no-anchor", action="store_true", help="skip the physical-limit anchor of codes50"
    )
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
                with_anchor=not args.no_anchor,
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
