"""Bulk loader for the revoke benchmark: N coupons through the real schema, kept per scale.

The schema comes from the project's own migration (`coupons.adapters.migrate.upgrade`); the
org and API client from the `coupons` command line, exactly as an operator would make them.
Series, customers and coupons are then bulk-inserted: SQLite with `executemany` in one big
transaction, journal and sync off, and the coupon indexes rebuilt afterwards from their own
DDL; PostgreSQL with `COPY`. A database is named by backend and scale and reused by later runs
while it still holds enough ISSUED coupons (every run consumes some: a revoked code is never
offered again, because the pickers below only hand out codes that are still ISSUED).

Layout of coupon number i (0-based), deterministic so runs are comparable:
- series i // 10,000 (so 10k has 1 series, 1M 100, 10M 1,000), all valid for a year;
- code: a 9-character code from an odd-multiplier permutation of i (unique, not sorted by id);
- state from a hash of i: 5% AVAILABLE (never issued), 5% REDEEMED, 90% ISSUED;
- customer i % (N / 10), so each customer holds ~10 coupons spread over series (~9 ISSUED).
  Customers whose index is a multiple of 10 are reserved for the customer-mode workload; the
  code pickers never hand out their coupons, so workloads consume disjoint coupons.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coupons.adapters import migrate
from coupons.adapters.db import normalize_url

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
LAYOUT_VERSION = 1
PER_SERIES = 10_000
ORG = "bench"
RESERVED_EVERY = 10  # every 10th customer is kept for the customer-mode workload
SCALES = {"tiny": 2_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE_PREFIX = "coupons_bench_"

# 32 symbols so a code is three 15-bit table look-ups (the loader makes 10M of them).
_SYMBOLS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ0"
_TRIPLES = [_SYMBOLS[n >> 10] + _SYMBOLS[(n >> 5) & 31] + _SYMBOLS[n & 31] for n in range(1 << 15)]
_MASK45 = (1 << 45) - 1
_MULT = 0x5DEECE66D  # odd, so i -> i * _MULT mod 2**45 is a bijection: codes never collide


def code_for(i: int) -> str:
    """The benchmark code of coupon number `i` (upper case, 9 characters)."""
    x = (i * _MULT + 0xB) & _MASK45
    return _TRIPLES[x >> 30] + _TRIPLES[(x >> 15) & 0x7FFF] + _TRIPLES[x & 0x7FFF]


def state_for(i: int) -> str:
    """AVAILABLE 5%, REDEEMED 5%, ISSUED 90%, scattered by a multiplicative hash."""
    r = (((i * 2654435761) & 0xFFFFFFFF) >> 8) % 20
    return "AVAILABLE" if r == 0 else "REDEEMED" if r == 1 else "ISSUED"


@dataclass(frozen=True)
class Layout:
    """What a loaded benchmark database holds and how to reach it."""

    backend: str
    scale: str
    coupons: int
    url: str
    org_id: int
    series_ids: list[int]
    first_customer_id: int
    customers: int
    username: str
    secret: str
    version: int = LAYOUT_VERSION

    def is_reserved(self, customer_id: int) -> bool:
        """Whether a customer belongs to the customer-mode workload."""
        return (customer_id - self.first_customer_id) % RESERVED_EVERY == 0


def scale_count(scale: str) -> int:
    """Coupons for a scale name such as `10k`, `1m` or a plain number."""
    return SCALES.get(scale.lower()) or int(scale)


def database_url(backend: str, scale: str, pg_admin_url: str = DEFAULT_PG_ADMIN) -> str:
    """Where the benchmark database of a backend and scale lives."""
    if backend == "sqlite":
        return f"sqlite:///{DATA_DIR / f'sqlite-{scale}.db'}"
    return (
        make_url(pg_admin_url).set(database=f"{PG_DATABASE_PREFIX}{scale}").render_as_string(False)
    )


def _sidecar(backend: str, scale: str) -> Path:
    return DATA_DIR / f"{backend}-{scale}.json"


def _cli(*args: str, url: str) -> str:
    """Run a `coupons` command as an operator would (in-process: same code, no start-up
    cost); return the last line it prints."""
    from coupons.entrypoints import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.app([*args, "--db", url], standalone_mode=False)
    return out.getvalue().strip().splitlines()[-1]


# --- reuse ----------------------------------------------------------------------------------


def _connect_raw(url: str):  # type: ignore[no-untyped-def]
    """A plain DB-API connection (sqlite3 or psycopg) to the benchmark database."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", timeout=30)
        conn.isolation_level = None
        return conn
    import psycopg

    return psycopg.connect(_libpq(url), autocommit=True)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def issued_left(layout: Layout) -> tuple[int, int]:
    """ISSUED coupons left for the code workloads and for the customer workload."""
    conn = _connect_raw(layout.url)
    try:
        cur = conn.cursor()
        reserved = f"(customer_id - {layout.first_customer_id}) % {RESERVED_EVERY} = 0"
        cur.execute(f"SELECT {reserved}, count(*) FROM coupons WHERE state = 'ISSUED' GROUP BY 1")
        counts = {bool(flag): int(count) for flag, count in cur.fetchall()}
        return counts.get(False, 0), counts.get(True, 0)
    finally:
        conn.close()


def restore(layout: Layout) -> int:
    """Put every revoked coupon back in the state it was revoked from, as loaded (the loader
    makes no REVOKED coupons). For scales too small to feed a whole run from one load; run it
    only while nothing else writes. Returns how many coupons came back."""
    conn = _connect_raw(layout.url)
    try:
        cur = conn.cursor()
        cur.execute(
            "UPDATE coupons SET state = revoked_from, revoked_from = NULL "
            "WHERE state = 'REVOKED' AND revoked_from IS NOT NULL"
        )
        restored = int(cur.rowcount)
    finally:
        conn.close()
    vacuum(layout)
    return restored


# The tables a revoke writes. Each revoke and each restore leaves a dead row version per
# coupon in PostgreSQL; where autovacuum is off (a shared test server, say), a day of runs
# piled up over a million of them, so a figure depended on how many runs came before it.
_WRITTEN = ("coupons", "coupon_history", "revocations")


def vacuum(layout: Layout) -> None:
    """Clear PostgreSQL's dead row versions before a measurement, as autovacuum would between
    bursts; SQLite keeps none (it rewrites rows in place)."""
    if layout.backend != "postgresql":
        return
    conn = _connect_raw(layout.url)
    try:
        conn.execute(f"VACUUM {', '.join(_WRITTEN)}")
    finally:
        conn.close()


def existing(backend: str, scale: str) -> Layout | None:
    """The loaded database of this backend and scale, if its sidecar and contents agree."""
    path = _sidecar(backend, scale)
    if not path.exists():
        return None
    try:
        layout = Layout(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    if layout.version != LAYOUT_VERSION:
        return None
    try:
        if migrate.current_revision(layout.url) != migrate.head_revision():
            return None  # built by an older schema: load again rather than time a migration
    except Exception:
        return None
    try:
        conn = _connect_raw(layout.url)
    except Exception:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM coupons")
        (count,) = cur.fetchone()
        # Another checkout (a second worktree, for `bench.ab`) keeps its own sidecar but
        # loads the same PostgreSQL database: once it has reloaded it, this sidecar's client
        # is gone, and every request of a run would be refused.
        marker = "?" if layout.backend == "sqlite" else "%s"
        cur.execute(f"SELECT count(*) FROM api_clients WHERE username = {marker}",
                    (layout.username,))  # fmt: skip
        (ours,) = cur.fetchone()
    except Exception:
        return None
    finally:
        conn.close()
    return layout if count == layout.coupons and ours == 1 else None


def ensure(
    backend: str,
    scale: str,
    *,
    need_codes: int = 0,
    need_customer_coupons: int = 0,
    pg_admin_url: str = DEFAULT_PG_ADMIN,
    log: bool = True,
) -> Layout:
    """A loaded database with at least this many ISSUED coupons left; loads one if needed."""
    layout = existing(backend, scale)
    if layout is not None:
        codes, customers = issued_left(layout)
        if codes >= need_codes and customers >= need_customer_coupons:
            if log:
                print(f"[load] reusing {backend}/{scale}: {codes} + {customers} ISSUED left")
            vacuum(layout)
            return layout
        if log:
            print(f"[load] {backend}/{scale} has only {codes} + {customers} ISSUED left: reload")
    return load(backend, scale, pg_admin_url=pg_admin_url, log=log)


# --- loading --------------------------------------------------------------------------------


def load(
    backend: str, scale: str, *, pg_admin_url: str = DEFAULT_PG_ADMIN, log: bool = True
) -> Layout:
    """(Re)build the benchmark database of a backend and scale from scratch."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    n = scale_count(scale)
    url = database_url(backend, scale, pg_admin_url)
    started = time.perf_counter()
    _sidecar(backend, scale).unlink(missing_ok=True)
    drop(backend, url, pg_admin_url, create=True)
    migrate.upgrade(url)
    org_id = int(_cli("org", "create", ORG, url=url))
    username = f"bench-{os.getpid()}-{secrets.token_hex(3)}"  # one load's own
    secret = _cli("client", "create", "--org", ORG, "--username", username, url=url)
    schema_s = time.perf_counter() - started
    conn = _connect_raw(url)
    try:
        if backend == "sqlite":
            series_ids, first_customer = _load_sqlite(conn, org_id, n)
        else:
            series_ids, first_customer = _load_postgres(conn, org_id, n)
    finally:
        conn.close()
    layout = Layout(
        backend=backend,
        scale=scale,
        coupons=n,
        url=url,
        org_id=org_id,
        series_ids=series_ids,
        first_customer_id=first_customer,
        customers=_customer_count(n),
        username=username,
        secret=secret,
    )
    # Written last: a crash mid-load leaves no sidecar, so the next run rebuilds.
    _sidecar(backend, scale).write_text(json.dumps(asdict(layout), indent=1))
    if log:
        took = time.perf_counter() - started
        print(
            f"[load] {backend}/{scale}: {n} coupons in {took:.1f}s "
            f"(schema, org and client via CLI {schema_s:.1f}s)"
        )
    return layout


def _customer_count(n: int) -> int:
    return max(1, n // 10)


def drop(backend: str, url: str, pg_admin_url: str, *, create: bool = False) -> None:
    """Remove a benchmark database (and make an empty one again with `create`)."""
    if backend == "sqlite":
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = make_url(url).database
    engine = create_engine(normalize_url(pg_admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _series_rows(org_id: int, n: int, now: datetime) -> list[tuple[object, ...]]:
    valid_till = now + timedelta(days=365)
    count = max(1, -(-n // PER_SERIES))
    return [
        (org_id, f"bench series {s}", "DISC_CODE", valid_till, "ABS", 5, now) for s in range(count)
    ]


def _coupon_rows(
    org_id: int, n: int, series_ids: Sequence[int], first_customer: int, stamp: str
) -> Iterator[tuple[object, ...]]:
    """(org, series, code, code_norm, state, customer, created, updated) per coupon."""
    customers = _customer_count(n)
    for i in range(n):
        code = code_for(i)
        state = state_for(i)
        customer = None if state == "AVAILABLE" else first_customer + i % customers
        yield (org_id, series_ids[i // PER_SERIES], code, code.lower(), state, customer, stamp)


def _sqlite_stamp(moment: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime writes and reads back (naive UTC).
    return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _load_sqlite(conn: sqlite3.Connection, org_id: int, n: int) -> tuple[list[int], int]:
    now = _now()
    stamp = _sqlite_stamp(now)
    cur = conn.cursor()
    # Nobody else uses the file while it is built: no journal, no fsync, big cache.
    cur.execute("PRAGMA journal_mode=OFF")
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA cache_size=-1000000")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("BEGIN")
    cur.executemany(
        "INSERT INTO coupon_series (org_id, description, client_handling_type, valid_till, "
        "discount_type, discount_value, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(*r[:3], _sqlite_stamp(r[3]), *r[4:6], stamp) for r in _series_rows(org_id, n, now)],  # type: ignore[arg-type]
    )
    series_ids = [
        r[0]
        for r in cur.execute("SELECT id FROM coupon_series WHERE org_id = ? ORDER BY id", (org_id,))
    ]
    customers = _customer_count(n)
    cur.executemany(
        "INSERT INTO customers (org_id, external_id, created_at) VALUES (?, ?, ?)",
        ((org_id, f"cust-{c}", stamp) for c in range(customers)),
    )
    (first_customer,) = cur.execute(
        "SELECT min(id) FROM customers WHERE org_id = ?", (org_id,)
    ).fetchone()
    # Index maintenance during a random-order insert dominates; rebuild them afterwards from
    # the schema's own DDL, which is the same index a normal insert would have maintained.
    indexes = cur.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'coupons' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    cur.executemany(
        "INSERT INTO coupons (org_id, series_id, code, code_norm, is_generic, state, "
        "customer_id, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
        ((*r, r[-1]) for r in _coupon_rows(org_id, n, series_ids, first_customer, stamp)),
    )
    for _, sql in indexes:
        cur.execute(sql)
    cur.execute("COMMIT")
    cur.execute("ANALYZE")
    # Back to the service's own journal mode before anyone else opens the file.
    cur.execute("PRAGMA journal_mode=WAL")
    return series_ids, int(first_customer)


def _load_postgres(conn, org_id: int, n: int) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    now = _now()
    stamp = now.isoformat()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO coupon_series (org_id, description, client_handling_type, "
            "valid_till, discount_type, discount_value, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _series_rows(org_id, n, now),
        )
        cur.execute("SELECT id FROM coupon_series WHERE org_id = %s ORDER BY id", (org_id,))
        series_ids = [r[0] for r in cur.fetchall()]
        customers = _customer_count(n)
        with cur.copy("COPY customers (org_id, external_id, created_at) FROM STDIN") as copy:
            for chunk in _chunks(range(customers), 50_000):
                copy.write("".join(f"{org_id}\tcust-{c}\t{stamp}\n" for c in chunk))
        cur.execute("SELECT min(id) FROM customers WHERE org_id = %s", (org_id,))
        (first_customer,) = cur.fetchone()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'coupons' "
            "AND indexname <> 'pk_coupons'"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        with cur.copy(
            "COPY coupons (org_id, series_id, code, code_norm, is_generic, state, customer_id, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            lines: list[str] = []
            for org, series, code, norm, state, customer, at in _coupon_rows(
                org_id, n, series_ids, first_customer, stamp
            ):
                owner = "\\N" if customer is None else customer
                lines.append(f"{org}\t{series}\t{code}\t{norm}\tf\t{state}\t{owner}\t{at}\t{at}\n")
                if len(lines) >= 50_000:
                    copy.write("".join(lines))
                    lines.clear()
            copy.write("".join(lines))
        cur.execute("SET maintenance_work_mem = '512MB'")
        for _, ddl in indexes:
            cur.execute(ddl)
    conn.execute("VACUUM ANALYZE coupons")
    conn.execute("ANALYZE")
    return series_ids, int(first_customer)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- picking work ---------------------------------------------------------------------------


def pick_codes(layout: Layout, count: int, rng: random.Random) -> list[tuple[int, str]]:
    """`count` random (series id, code) pairs still ISSUED and not reserved for customers,
    taken from randomly chosen series (whole series are read, so pairs group by series)."""
    conn = _connect_raw(layout.url)
    marker = "?" if layout.backend == "sqlite" else "%s"
    picked: list[tuple[int, str]] = []
    try:
        cur = conn.cursor()
        for series_id in rng.sample(layout.series_ids, len(layout.series_ids)):
            cur.execute(
                f"SELECT code, customer_id FROM coupons WHERE series_id = {marker} "
                "AND state = 'ISSUED'",
                (series_id,),
            )
            codes = [c for c, owner in cur.fetchall() if not layout.is_reserved(owner)]
            rng.shuffle(codes)
            picked.extend((series_id, c) for c in codes[: count - len(picked)])
            if len(picked) >= count:
                break
    finally:
        conn.close()
    return picked


def pick_customers(layout: Layout, count: int, rng: random.Random) -> list[tuple[str, int]]:
    """`count` reserved customers (external id, ISSUED coupons) that still hold coupons."""
    conn = _connect_raw(layout.url)
    marker = "?" if layout.backend == "sqlite" else "%s"
    reserved = list(range(0, layout.customers, RESERVED_EVERY))
    rng.shuffle(reserved)
    picked: list[tuple[str, int]] = []
    try:
        cur = conn.cursor()
        for chunk in _chunks(reserved, 500):
            ids = [layout.first_customer_id + c for c in chunk]
            cur.execute(
                "SELECT customer_id, count(*) FROM coupons WHERE state = 'ISSUED' AND "
                f"customer_id IN ({', '.join([marker] * len(ids))}) GROUP BY customer_id",
                ids,
            )
            for customer_id, held in cur.fetchall():
                picked.append((f"cust-{customer_id - layout.first_customer_id}", int(held)))
            if len(picked) >= count:
                break
    finally:
        conn.close()
    return picked[:count]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m bench.load --backend sqlite --scale 1m [--force]`"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scale", default="10k", help="10k, 1m, 10m or a number of coupons")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--force", action="store_true", help="rebuild even if one exists")
    args = parser.parse_args(argv)
    if args.force:
        load(args.backend, args.scale, pg_admin_url=args.pg_admin_url)
    else:
        ensure(args.backend, args.scale, pg_admin_url=args.pg_admin_url)


if __name__ == "__main__":
    main()
