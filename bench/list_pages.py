"""Page latency against table size: `GET /v2/coupon/series/{id}/coupons`, small scale against
large, both served at once, requests alternating (A, B, B, A, ...) so a noisy neighbour hits
both alike.

Each request asks for one page (`limit`, default 100) of a random series, starting at a random
coupon of it (a cursor built from a random id of the series: the walk's cost must not depend
on where it is). Reuses the revoke benchmark's databases (`bench.load`) and server
(`bench.run.Server`); pages change nothing, so a database serves any number of runs. Prints a
table and one line per backend:

    PAGES {"backend", "small", "large", "limit", "state", "p50_small_ms", "p50_large_ms",
           "p50_ratio", "p99_small_ms", "p99_large_ms", "requests"}

    python -m bench.list_pages --backends sqlite,postgresql --small 10k --large 10m
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import random
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode

from bench import load
from bench.database import chosen_backends
from bench.report import save_results
from bench.server import Server
from coupons.domain.paging import encode_cursor
from coupons.services.finding import SERIES_COUPONS

TARGET = 1.3  # the p50 at the large scale may be at most this much above the small one's
# Its own PostgreSQL databases: loading one (which drops it first) must never pull a database
# from under a revoke benchmark running at the same time.
PG_PREFIX = "coupons_pages_"


class Pager:
    """One keep-alive connection to a server, asking for pages of random series."""

    def __init__(self, server: Server, layout: load.Layout, limit: int, state: str | None):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        token = base64.b64encode(f"{layout.username}:{layout.secret}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.limit = limit
        self.state = state
        self.ranges = _id_ranges(layout)

    def path(self, rng: random.Random) -> str:
        series_id, (low, high) = rng.choice(list(self.ranges.items()))
        query: dict[str, Any] = {"limit": self.limit}
        start = rng.randint(low, high)
        if start > low:
            query["after"] = encode_cursor(SERIES_COUPONS, (start - 1,))
        if self.state:
            query["state"] = self.state
        return f"/v2/coupon/series/{series_id}/coupons?{urlencode(query)}"

    def get(self, path: str) -> float:
        """One request's latency in ms; the page must be a successful answer."""
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status} {body[:200]!r}")
        return took


def _id_ranges(layout: load.Layout) -> dict[int, tuple[int, int]]:
    """Each series' lowest and highest coupon id, read once from the database."""
    conn = load._connect_raw(layout.url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT series_id, MIN(id), MAX(id) FROM coupons GROUP BY series_id")
        return {int(s): (int(lo), int(hi)) for s, lo, hi in cur.fetchall()}
    finally:
        conn.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    backend: str,
    small: str,
    large: str,
    *,
    requests: int,
    limit: int,
    state: str | None,
    rng: random.Random,
    pg_admin_url: str,
) -> dict[str, Any]:
    """Alternate page requests between a server on each scale; one result dict."""
    layouts = {s: load.ensure(backend, s, pg_admin_url=pg_admin_url) for s in (small, large)}
    timings: dict[str, list[float]] = {small: [], large: []}
    with ExitStack() as stack:
        pagers = {}
        for scale, layout in layouts.items():
            log = load.DATA_DIR / f"server-pages-{backend}-{scale}.log"
            server = stack.enter_context(Server(layout.url, 1, log))
            pagers[scale] = Pager(server, layout, limit, state)
        for pager in pagers.values():  # warm: the secret is verified once, statements compiled
            for _ in range(20):
                pager.get(pager.path(rng))
        order = [small, large, large, small]
        for i in range(requests * 2):
            scale = order[i % 4]
            pager = pagers[scale]
            timings[scale].append(pager.get(pager.path(rng)))
    p50 = {s: statistics.median(t) for s, t in timings.items()}
    return {
        "backend": backend,
        "small": small,
        "large": large,
        "limit": limit,
        "state": state,
        "p50_small_ms": round(p50[small], 2),
        "p50_large_ms": round(p50[large], 2),
        "p50_ratio": round(p50[large] / p50[small], 3),
        "p99_small_ms": round(_percentile(timings[small], 0.99), 2),
        "p99_large_ms": round(_percentile(timings[large], 0.99), 2),
        "requests": requests,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--small", default="10k")
    parser.add_argument("--large", default="10m")
    parser.add_argument("--requests", type=int, default=400, help="per scale")
    parser.add_argument("--limit", type=int, default=100, help="page size")
    parser.add_argument("--state", default=None, help="also filter by this state")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    args = parser.parse_args(argv)
    load.PG_DATABASE_PREFIX = PG_PREFIX
    rng = random.Random(args.seed)
    results = []
    for backend in chosen_backends(args.backends, args.pg_admin_url):
        result = measure(
            backend,
            args.small,
            args.large,
            requests=args.requests,
            limit=args.limit,
            state=args.state,
            rng=rng,
            pg_admin_url=args.pg_admin_url,
        )
        results.append(result)
        print("PAGES " + json.dumps(result))
    print(f"{'backend':<11} {'p50 small':>10} {'p50 large':>10} {'ratio':>6} {'p99 s/l':>14}")
    for r in results:
        verdict = "met" if r["p50_ratio"] <= TARGET else "MISSED"
        print(
            f"{r['backend']:<11} {r['p50_small_ms']:>8} ms {r['p50_large_ms']:>7} ms "
            f"{r['p50_ratio']:>6} {r['p99_small_ms']:>6}/{r['p99_large_ms']:<6} {verdict}"
        )
    save_results("pages", results)
    return results


if __name__ == "__main__":
    main()
