"""The physical limit of a codes50 revoke: the same SQL with no Python service in the way.

The raw side (`bench.raw_side`) runs the service's own repository code, so it measures the
framework's overhead, not how close the service comes to what the machine can do. The anchor
sends the statements one codes50 request sends, in the same transactions and order, from the
leanest client there is:

- PostgreSQL: `pgbench` (C, ships with PostgreSQL) with a script of exactly those statements
  (`-M prepared`, as psycopg prepares a statement from its fifth use), one client per
  connection of the HTTP side. The codes come from a pool of still-ISSUED coupons, one
  request's worth per row of a scratch table that the script reads with `\\gset`: the only
  statement the service does not send (a primary-key read, inside the write transaction,
  taking no lock).
- SQLite: the same statements through the standard library's `sqlite3` (statements prepared
  once and cached), same pragmas and checkpointing as the service, writers queued on a
  blocking `flock`, one process per connection (as the raw side), no SQLAlchemy; see
  `bench.anchor_sqlite`.

A measurement is made of rounds: pick a pool of ISSUED coupons, run, then put every coupon
the anchor revoked back to ISSUED, so the anchor leaves the database as it found it (its
history rows stay, as the HTTP side's do). The first round is short and sizes the next from
its rate; small scales run several rounds, like the refilled HTTP rounds. Codes counted are
coupons actually revoked (the restore's row count).

    python -m bench.anchor --backend postgresql --scale 1m --duration 8
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import load
from bench.load import Layout
from bench.timing import Side, combine
from bench.workloads import CODES_PER_REQUEST, REASON, statement_shapes
from coupons.adapters.repos.history import HISTORY_FENCE
from coupons.adapters.repos.revoke_batch import REVOKE_PG_SQL

PGBENCH = os.environ.get("PGBENCH", "pgbench")
JOBS_TABLE = "bench_anchor_jobs"
JOBS_SEQUENCE = "bench_anchor_next"
CALIBRATION_PER_CONNECTION = 8  # requests of the first, short round that sizes the next
MAX_ROUNDS = 100
N = CODES_PER_REQUEST


@dataclass(frozen=True, slots=True)
class PoolJob:
    """One request's worth of ISSUED coupons of one series: codes as sent, ids in id order."""

    series_id: int
    norms: tuple[str, ...]
    ids: tuple[int, ...]


def pick_pool(layout: Layout, jobs: int, rng: random.Random) -> list[PoolJob]:
    """Up to `jobs` requests of 50 still-ISSUED coupons (none reserved for customers)."""
    conn = load._connect_raw(layout.url)
    marker = "?" if layout.backend == "sqlite" else "%s"
    pool: list[PoolJob] = []
    try:
        cur = conn.cursor()
        for series_id in rng.sample(layout.series_ids, len(layout.series_ids)):
            cur.execute(
                f"SELECT id, code_norm, customer_id FROM coupons WHERE series_id = {marker} "
                "AND state = 'ISSUED'",
                (series_id,),
            )
            rows = [(i, norm) for i, norm, owner in cur.fetchall() if not layout.is_reserved(owner)]
            rng.shuffle(rows)
            for start in range(0, len(rows) - N + 1, N):
                chunk = rows[start : start + N]
                ids = tuple(sorted(i for i, _ in chunk))
                pool.append(PoolJob(series_id, tuple(norm for _, norm in chunk), ids))
                if len(pool) >= jobs:
                    return pool
    finally:
        conn.close()
    return pool


def restore(layout: Layout, pool: Sequence[PoolJob]) -> int:
    """Put the pool's revoked coupons back to the state they were revoked from; how many."""
    ids = [i for job in pool for i in job.ids]
    conn = load._connect_raw(layout.url)
    try:
        cur = conn.cursor()
        if layout.backend == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "UPDATE coupons SET state = revoked_from, revoked_from = NULL "
                "WHERE id = ? AND state = 'REVOKED' AND revoked_from IS NOT NULL",
                [(i,) for i in ids],
            )
            restored = conn.total_changes
            cur.execute("COMMIT")
            return int(restored)
        cur.execute(
            "UPDATE coupons SET state = revoked_from, revoked_from = NULL "
            "WHERE id = ANY(%s) AND state = 'REVOKED' AND revoked_from IS NOT NULL",
            (ids,),
        )
        return int(cur.rowcount)
    finally:
        conn.close()


def measure(
    layout: Layout,
    *,
    connections: int,
    duration_s: float,
    rng: random.Random,
    advisory_lock: bool = True,
) -> Side:
    """Run the anchor for about `duration_s` (several rounds where one pool cannot feed it)."""
    rounds: list[Side] = []
    tps = 0.0  # unknown until the first round: it is short, and sizes the next
    while len(rounds) < MAX_ROUNDS:
        ran = sum(r.elapsed_s for r in rounds)
        if ran >= 0.95 * duration_s:
            break
        wanted = CALIBRATION_PER_CONNECTION * connections
        if tps:
            wanted = max(wanted, int(1.1 * tps * (duration_s - ran)))
        pool = pick_pool(layout, wanted, rng)
        if len(pool) < connections:
            raise RuntimeError(f"anchor: too few ISSUED coupons left in {layout.url}")
        try:
            if layout.backend == "postgresql":
                part = _pgbench_round(layout, pool, connections, advisory_lock)
            else:
                from bench.anchor_sqlite import sqlite_round

                part = sqlite_round(layout, pool, connections, duration_s - ran)
        finally:
            part_codes = restore(layout, pool)
        part.codes = part_codes
        rounds.append(part)
        if part.elapsed_s <= 0 or part.requests == 0:
            break
        tps = part.requests / part.elapsed_s
    return combine(rounds)


# --- PostgreSQL: pgbench ---------------------------------------------------------------------


def _list(template: str, count: int = N) -> str:
    return ", ".join(template.format(k) for k in range(1, count + 1))


def pgbench_script(*, advisory_lock: bool = True) -> str:
    """The statements of one codes50 request as the service sends them (psycopg renders
    SQLAlchemy's `%(name)s` as `$n`; here pgbench's `:name` does), plus the job read."""
    # The history insert takes a shared advisory lock keyed below the event ids it is about
    # to allocate (readers use it to tell which ids may still commit); without the lock, the
    # same statement with the fence left out.
    statements = [
        "BEGIN;",
        # Not sent by the service: this request's codes from the pool.
        f"SELECT * FROM {JOBS_TABLE} WHERE id = (SELECT nextval('{JOBS_SEQUENCE}')) \\gset",
        # No client lookup: the service reads a client row at most once a second per worker
        # (services/auth.py), so a busy client's requests send none.
        "SELECT coupon_series.id, coupon_series.org_id, coupon_series.description, "
        "coupon_series.client_handling_type, coupon_series.generic_code, "
        "coupon_series.generic_code_norm, coupon_series.valid_till, "
        "coupon_series.discount_type, coupon_series.discount_value, coupon_series.created_at "
        "FROM coupon_series WHERE coupon_series.id = :series_id::BIGINT "
        "AND coupon_series.org_id = :org_id::BIGINT;",
        "SELECT coupons.id, coupons.series_id, coupons.code, coupons.state, "
        "coupons.customer_id, coupons.revoked_from, coupons.pin FROM coupons "
        "WHERE coupons.org_id = :org_id::BIGINT "
        "AND coupons.code_norm = ANY (CAST(:norms AS VARCHAR[])) "
        "AND coupons.series_id + 0 = :series_id::BIGINT ORDER BY coupons.id FOR UPDATE;",
        # The revoke's writes: the service's own statement (guarded UPDATE, trail row and
        # history as one CTE). pgbench sets no NULL, so the trail rows carry job id '0', and
        # a random numeric request id.
        "\\set request_id random(1, 9000000000000000)",
        revoke_statement(advisory_lock=advisory_lock) + ";",
        "COMMIT;",
    ]
    return "\n".join(statements) + "\n"


def revoke_statement(*, advisory_lock: bool = True) -> str:
    """The service's revoke write (`adapters/repos/revoke_batch.py`), without the history
    fence when `advisory_lock` is off."""
    if advisory_lock:
        return REVOKE_PG_SQL
    without = REVOKE_PG_SQL.replace(HISTORY_FENCE.removeprefix("WITH "), "").replace(
        "FROM fence, ", "FROM "
    )
    if without == REVOKE_PG_SQL:
        raise RuntimeError("the revoke statement's fence is no longer where the anchor expects")
    return without


def _array(values: Sequence[object]) -> str:
    """A PostgreSQL array literal of plain values (no quotes or commas inside them)."""
    return "{" + ",".join(f'"{v}"' for v in values) + "}"


# The script's per-request variables after the codes and ids: `at`, then text arrays.
_ARRAYS = ("ids", "norms")


def _load_jobs(layout: Layout, pool: Sequence[PoolJob]) -> None:
    """The pool as one row per request, read by the script in order (a fresh sequence)."""
    import psycopg

    at = datetime.now(UTC).isoformat()
    columns = ", ".join(
        ["id int PRIMARY KEY", "series_id bigint"]
        + [f"c{k} text" for k in range(1, N + 1)]
        + [f"i{k} bigint" for k in range(1, N + 1)]
        + [f"{name} text" for name in ("at", *_ARRAYS)]
    )
    with psycopg.connect(load._libpq(layout.url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {JOBS_TABLE}")
        conn.execute(f"CREATE UNLOGGED TABLE {JOBS_TABLE} ({columns})")
        conn.execute(f"DROP SEQUENCE IF EXISTS {JOBS_SEQUENCE}")
        conn.execute(f"CREATE SEQUENCE {JOBS_SEQUENCE}")
        with conn.cursor() as cur, cur.copy(f"COPY {JOBS_TABLE} FROM STDIN") as copy:
            for number, job in enumerate(pool, start=1):
                copy.write_row(
                    [
                        number,
                        job.series_id,
                        *job.norms,
                        *job.ids,
                        at,
                        _array(job.ids),
                        _array(job.norms),
                    ]
                )
        conn.execute(f"ANALYZE {JOBS_TABLE}")


def drop_jobs(layout: Layout) -> None:
    """Remove the anchor's scratch table and sequence from the benchmark database."""
    import psycopg

    with psycopg.connect(load._libpq(layout.url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {JOBS_TABLE}")
        conn.execute(f"DROP SEQUENCE IF EXISTS {JOBS_SEQUENCE}")


def _pgbench_round(
    layout: Layout, pool: Sequence[PoolJob], clients: int, advisory_lock: bool
) -> Side:
    """One pgbench run: every client sends its share of the pool, one request after another."""
    per_client = len(pool) // clients
    _load_jobs(layout, pool[: per_client * clients])
    variables = {
        "org_id": layout.org_id,
        "actor": layout.username,
        "reason": REASON,
        "job_id": 0,
    }
    if shutil.which(PGBENCH) is None:
        raise RuntimeError(f"{PGBENCH} not found (it ships with PostgreSQL); or run --no-anchor")
    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as folder:
        script = Path(folder) / "codes50.sql"
        script.write_text(pgbench_script(advisory_lock=advisory_lock))
        command = [
            PGBENCH, "--no-vacuum", "--protocol=prepared",
            f"--client={clients}", f"--jobs={min(clients, os.cpu_count() or 1)}",
            f"--transactions={per_client}", f"--file={script}",
            "--log", f"--log-prefix={Path(folder) / 'tx'}",
            *(f"--define={name}={value}" for name, value in variables.items()),
            load._libpq(layout.url),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        output = done.stdout + done.stderr
        processed = re.search(r"actually processed: (\d+)", output)
        tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.M)
        if processed is None or tps is None:
            raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output[-3000:]}")
        latencies = [
            int(line.split()[2]) / 1000
            for log in Path(folder).glob("tx*")
            for line in log.read_text().splitlines()
        ]
    requests = int(processed.group(1))
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return Side(
        requests=requests,
        errors=int(failed.group(1)) if failed else 0,
        elapsed_s=requests / float(tps.group(1)) if float(tps.group(1)) else 0.0,
        latencies_ms=latencies,
    )


# --- keeping the anchor honest ---------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\(\w+\)s|(?<![:\w]):[a-z_]\w*|\?")
_CAST = re.compile(r"CAST\(\? AS [\w\[\]]+\)")
_IN = re.compile(r"IN \((?:\?(?:::\w+)?(?:, )?)+\)")
_TRANSACTION = {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}


def _shape(statement: str) -> str:
    """A statement with every parameter a `?` (casts of parameters dropped), lists folded."""
    [text] = statement_shapes([_PLACEHOLDER.sub("?", " ".join(statement.rstrip(";").split()))])
    return _IN.sub("IN (...)", _CAST.sub("?", text))


def statements(backend: str, *, advisory_lock: bool = True) -> list[str]:
    """The anchor's statements of one request, transaction control and the job read left out."""
    if backend == "postgresql":
        sent = pgbench_script(advisory_lock=advisory_lock).splitlines()
        sent = [s for s in sent if JOBS_TABLE not in s and not s.startswith("\\")]
    else:
        from bench.anchor_sqlite import STATEMENTS

        sent = list(STATEMENTS)
    return [s for s in (_shape(s) for s in sent) if s not in _TRANSACTION]


def differences(service_statements: Sequence[str], backend: str) -> list[tuple[str, str]]:
    """Where the service's statements of one codes50 request (captured) and the anchor's
    differ, as (service, anchor) pairs; empty while the anchor mirrors the service."""
    service = [s for s in map(_shape, service_statements) if s not in _TRANSACTION]
    anchor = statements(backend)
    width = max(len(service), len(anchor))
    pairs = zip(service + [""] * width, anchor + [""] * width, strict=False)
    return [(a, b) for a, b in list(pairs)[:width] if a != b]


# --- command line ------------------------------------------------------------------------


def summary(side: Side) -> dict[str, Any]:
    """The figures of one anchor measurement, for a results dict."""
    return {
        "codes_per_s": round(side.codes_per_s, 1),
        "requests": side.requests,
        "codes": side.codes,
        "errors": side.errors,
        "p50_ms": round(side.percentile(0.50), 2),
        "p99_ms": round(side.percentile(0.99), 2),
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Both PostgreSQL variants, with the history insert's advisory lock and without."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per variant")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the variants")
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    layout = load.ensure(args.backend, args.scale, pg_admin_url=args.pg_admin_url)
    variants = [True, False] if args.backend == "postgresql" else [True]
    sides: dict[bool, list[Side]] = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]  # ABBA
            for lock in order:
                sides[lock].append(
                    measure(
                        layout,
                        connections=args.connections,
                        duration_s=args.duration / args.rounds,
                        rng=rng,
                        advisory_lock=lock,
                    )
                )
    finally:
        if args.backend == "postgresql":
            drop_jobs(layout)
    results = []
    for lock in variants:
        result = {
            "backend": args.backend,
            "scale": args.scale,
            "variant": "stdlib sqlite3"
            if args.backend == "sqlite"
            else "history lock"
            if lock
            else "no lock",
            **summary(combine(sides[lock])),
        }
        print(f"ANCHOR {result}", flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
