"""Revoke jobs against the client-side loop, on one server in one run; and 1M codes end to end.

For each backend: a fresh database, org and client; one `coupons serve` (with its in-process
job worker). Two series of N codes each round: one revoked by `coupons revoke` (the client
loop, 50 codes a request, `--parallel 4`), one by `coupons revoke --on-server` style upload
of the same kind of file as a job; rounds alternate (loop, job, job, loop) so a noisy neighbour
hits both alike. Codes per second = N / wall time from start to the last code done (for the
job: from the upload's first byte to the job's `finishedAt`, upload included). Then one
1,000,000-code job: upload time, run time, and the server's resident memory.

    python -m bench.jobs --backends sqlite,postgresql --codes 20000 --million

Prints a table and one JSON line per backend (`JOBS {...}`); goal: job >= 1.5x the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from coupons.adapters.db import create_db_engine
from coupons.adapters.tables import coupon_series, coupons
from coupons.client import BasicAuth, CouponClient

COUPONS = [sys.executable, "-m", "coupons.entrypoints.cli"]
USER, SECRET = "bench-jobs", "bench-jobs-secret-0123"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
GOAL = 1.5


def _cli(*args: str) -> None:
    subprocess.run([*COUPONS, *args], check=True, capture_output=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def database(backend: str, workdir: Path, pg_admin: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    name = f"coupons_bench_jobs_{uuid.uuid4().hex[:6]}"
    admin = create_engine(
        make_url(pg_admin).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def server(db_url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    log = (workdir / "server.log").open("ab")
    process = subprocess.Popen(
        [*COUPONS, "serve", "--port", str(port), "--db", db_url, "--no-worker"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def seed(db_url: str, count: int, prefix: str) -> int:
    """A DISC_CODE series of `count` AVAILABLE codes, inserted straight into the tables."""
    engine = create_db_engine(db_url, null_pool=True)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        org_id = conn.execute(text("SELECT id FROM orgs ORDER BY id LIMIT 1")).scalar_one()
        series_id = conn.execute(
            insert(coupon_series)
            .values(
                org_id=org_id,
                description=f"bench {prefix}",
                client_handling_type="DISC_CODE",
                valid_till=datetime(2099, 1, 1, tzinfo=UTC),
                discount_type="ABS",
                discount_value=5,
                created_at=now,
            )
            .returning(coupon_series.c.id)
        ).scalar_one()
        for start in range(0, count, 50_000):
            rows = [
                {
                    "org_id": org_id,
                    "series_id": series_id,
                    "code": f"{prefix}{i:07d}",
                    "code_norm": f"{prefix}{i:07d}".lower(),
                    "is_generic": False,
                    "state": "AVAILABLE",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(count, start + 50_000))
            ]
            conn.execute(insert(coupons), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE coupons"))
        assert conn.execute(
            select(coupons.c.id).where(coupons.c.series_id == series_id).limit(1)
        ).first()
    engine.dispose()
    return int(series_id)


def codes_file(workdir: Path, prefix: str, count: int) -> Path:
    path = workdir / f"{prefix}.txt"
    with path.open("w") as handle:
        handle.writelines(f"{prefix}{i:07d}\n" for i in range(count))
    return path


def run_loop(url: str, series_id: int, path: Path) -> float:
    command = [*COUPONS, "revoke", "--series", str(series_id), "--codes-file", str(path)]
    command += ["--url", url, "--username", USER, "--password", SECRET, "--parallel", "4"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def run_job(api: CouponClient, series_id: int | None, path: Path) -> tuple[float, float]:
    """(upload seconds, total seconds until the job finished)."""
    started = time.monotonic()
    job = api.start_revoke_job(path, series_id=series_id, reason="bench")
    uploaded = time.monotonic() - started
    while not job.is_finished:
        time.sleep(0.2)
        job = api.revoke_job(job.job_id)
    assert job.state == "SUCCEEDED" and job.failed_count == 0, job
    return uploaded, time.monotonic() - started


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_backend(
    backend: str, n: int, rounds: int, million: bool, pg_admin: str
) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend, "codes": n}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-jobs-")))
        db_url = stack.enter_context(database(backend, workdir, pg_admin))
        _cli("db", "upgrade", "--db", db_url)
        _cli("org", "create", "bench", "--db", db_url)
        _cli(
            "client", "create", "--org", "bench", "--username", USER, "--password", SECRET,
            "--db", db_url,
        )  # fmt: skip
        url, pid = stack.enter_context(server(db_url, workdir))
        api = stack.enter_context(CouponClient(url, BasicAuth(USER, SECRET), timeout=600))
        loop_s: list[float] = []
        job_s: list[float] = []
        for r in range(rounds):
            order = ("loop", "job") if r % 2 == 0 else ("job", "loop")
            for side in order:
                prefix = f"R{r}{side[0].upper()}{uuid.uuid4().hex[:4].upper()}"
                series_id = seed(db_url, n, prefix)
                path = codes_file(workdir, prefix, n)
                if side == "loop":
                    loop_s.append(run_loop(url, series_id, path))
                else:
                    job_s.append(run_job(api, series_id, path)[1])
        result["loop_codes_per_s"] = round(n * len(loop_s) / sum(loop_s))
        result["job_codes_per_s"] = round(n * len(job_s) / sum(job_s))
        result["ratio"] = round(result["job_codes_per_s"] / result["loop_codes_per_s"], 2)
        if million:
            big = 1_000_000
            series_id = seed(db_url, big, "MILLION")
            path = codes_file(workdir, "MILLION", big)
            before = rss_mb(pid)
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            uploaded, total = run_job(api, series_id, path)
            result.update(
                million_upload_s=round(uploaded, 1),
                million_total_s=round(total, 1),
                million_codes_per_s=round(big / total),
                million_rss_before_mb=round(before),
                million_rss_peak_mb=round(rss_mb(pid, "VmHWM")),
            )
    return result


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--codes", type=int, default=20_000, help="codes per side per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--million", action="store_true", help="also 1M codes end to end")
    parser.add_argument("--pg", default=os.environ.get("COUPONS_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args(argv)
    results = []
    for backend in args.backends.split(","):
        found = bench_backend(backend, args.codes, args.rounds, args.million, args.pg)
        results.append(found)
        print(
            f"{backend}: loop {found['loop_codes_per_s']:,} codes/s, job "
            f"{found['job_codes_per_s']:,} codes/s, ratio {found['ratio']} (goal {GOAL})"
        )
        print("JOBS " + json.dumps(found), flush=True)
    return results


if __name__ == "__main__":
    main()
