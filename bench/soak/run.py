"""Sustained mixed load (issue / redeem / revoke) against a real multi-worker server.

Starts `coupons serve --workers 2` on a fresh database (a temporary SQLite file unless `--db`
is given), seeds one org, client, series and a few hundred customers, then sends requests at a
fixed rate for N minutes. Each minute it reports requests, errors (5xx, connection failures,
or any answer the scenario does not expect), p50/p99 latency and the server's RSS; at the end,
RSS growth from the first to the last minute. Exits non-zero when any error was seen.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

USERNAME = "soak-admin"
SECRET = "soak-secret-not-for-production"
CUSTOMERS = 300
console = Console()


@dataclass
class Minute:
    """What happened in one minute of the run."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    rss_mb: float = 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, db: str) -> str:
    command = [sys.executable, "-c", "from coupons.entrypoints.cli import main; main()"]
    done = subprocess.run([*command, *args, "--db", db], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _rss_mb(group: int) -> float:
    """Resident memory of every process in the server's process group, in MiB."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            if pgrp != group:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024


class Scenario:
    """The mixed workload: issue to a random customer, then redeem or revoke what was issued."""

    def __init__(self, client: httpx.Client, series_id: int, customers: list[int]) -> None:
        self.client = client
        self.series_id = series_id
        self.customers = customers
        self.issued: deque[tuple[str, int]] = deque(maxlen=5000)
        self.lock = threading.Lock()

    def pick(self) -> str:
        with self.lock:
            have = len(self.issued)
        if have < 20:
            return "issue"
        return random.choices(["issue", "redeem", "revoke"], weights=[50, 25, 25])[0]

    def run(self, op: str) -> bool:
        """Send one request; True when the answer is what the scenario expects."""
        if op == "issue":
            customer = random.choice(self.customers)
            body = {"seriesId": self.series_id, "customer": {"id": customer}}
            response = self.client.post("/v2/coupon/issue", json=body)
            if response.status_code != 200:
                return False
            with self.lock:
                self.issued.append((response.json()["entity"]["couponCode"], customer))
            return True
        with self.lock:
            if not self.issued:
                return True
            code, customer = self.issued.popleft()
        if op == "redeem":
            body = {
                "customer": {"id": customer},
                "transactionNumber": f"soak-{code}",
                "billAmount": 10,
                "redemptionRequestList": [{"code": code}],
            }
            response = self.client.post("/v2/coupon/redeem", json=body)
            return response.status_code == 200
        response = self.client.post(
            "/v2/coupon/revoke", json={"couponSeriesId": self.series_id, "couponCodes": [code]}
        )
        return response.status_code == 200 and response.json()["entity"]["failedCount"] == 0


def _seed(client: httpx.Client) -> tuple[int, list[int]]:
    series = client.post(
        "/v2/coupon/series",
        json={
            "description": "soak",
            "clientHandlingType": "DISC_CODE",
            "validTill": "2099-12-31",
            "discountType": "ABS",
            "discountValue": 5,
        },
    )
    series.raise_for_status()
    series_id = int(series.json()["entity"]["id"])
    customers = []
    for i in range(CUSTOMERS):
        made = client.post("/v2/customers", json={"externalId": f"soak-{i}"})
        made.raise_for_status()
        customers.append(int(made.json()["entity"]["id"]))
    return series_id, customers


def _report(minutes: list[Minute], first: int = 1) -> Table:
    table = Table(title="soak: per minute")
    for column in ("minute", "requests", "errors", "p50 ms", "p99 ms", "RSS MiB", "mix"):
        table.add_column(column, justify="right")
    for index, m in enumerate(minutes, start=first):
        lat = sorted(m.latencies)
        p50 = statistics.median(lat) * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        mix = " ".join(f"{k}={v}" for k, v in sorted(m.by_op.items()))
        table.add_row(
            str(index),
            str(len(lat)),
            str(m.errors),
            f"{p50:.1f}",
            f"{p99:.1f}",
            f"{m.rss_mb:.1f}",
            mix,
        )
    return table


def soak(minutes: float, rate: float, db: str | None, workers: int) -> int:
    """Run the soak; returns the number of errors seen."""
    tmp = tempfile.mkdtemp(prefix="coupons-soak-")
    db = db or f"sqlite:///{tmp}/soak.db"
    _cli("db", "upgrade", db=db)
    _cli("org", "create", "soak", db=db)
    _cli(
        "client",
        "create",
        "--org",
        "soak",
        "--username",
        USERNAME,
        "--password",
        SECRET,
        "--groups",
        "default,coupon_admin",
        db=db,
    )
    port = _free_port()
    log = Path(tmp) / "server.log"
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from coupons.entrypoints.cli import main; main()",
                "serve",
                "--db",
                db,
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = httpx.Client(
            base_url=base,
            auth=(USERNAME, SECRET),
            timeout=30,
            limits=httpx.Limits(max_connections=32),
        )
        series_id, customers = _seed(client)
        scenario = Scenario(client, series_id, customers)
        console.print(f"soak: {minutes} min at {rate}/s, {workers} workers, db {db}")
        results: list[Minute] = []
        lock = threading.Lock()

        def one(op: str, bucket: Minute) -> None:
            started = time.perf_counter()
            try:
                ok = scenario.run(op)
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                bucket.latencies.append(elapsed)
                bucket.by_op[op] = bucket.by_op.get(op, 0) + 1
                bucket.errors += 0 if ok else 1

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            sent = 0
            while (now := time.monotonic() - start) < minutes * 60:
                index = int(now // 60)
                while len(results) <= index:
                    if results:
                        results[-1].rss_mb = _rss_mb(server.pid)
                        console.print(_report(results[-1:], first=len(results)))
                    results.append(Minute())
                due = int(now * rate)
                for _ in range(due - sent):
                    pool.submit(one, scenario.pick(), results[index])
                sent = max(sent, due)
                time.sleep(0.005)
        results[-1].rss_mb = _rss_mb(server.pid)
        console.print(_report(results))
        errors = sum(m.errors for m in results)
        growth = results[-1].rss_mb - results[0].rss_mb
        console.print(
            f"total requests {sum(len(m.latencies) for m in results)}, errors {errors}, "
            f"RSS {results[0].rss_mb:.1f} -> {results[-1].rss_mb:.1f} MiB ({growth:+.1f})"
        )
        return errors
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20, help="requests per second")
    parser.add_argument("--db", default=None, help="database URL (default: temporary SQLite)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.exit(1 if soak(args.minutes, args.rate, args.db, args.workers) else 0)
