"""CSV exports from a real `coupons serve` process, on SQLite and on PostgreSQL: a 150,000-row
export streams without growing the server's memory, and the `coupons export` and
`coupons revocations` commands write what the API serves."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from coupons.adapters import migrate
from coupons.adapters.sql_uow import Database
from coupons.adapters.tables import coupon_series
from coupons.client import BasicAuth, CouponClient
from coupons.entrypoints.cli import app as cli_app
from coupons.services import admin
from tests.conftest import scratch_postgres
from tests.e2e.test_bulk_revoke import free_port

ROWS = 150_000
USERNAME, PASSWORD = "export-admin", "export-s3cret-for-tests"
# "A few MB": what streaming may add to the server while 150,000 rows go out.
MAX_GROWTH_MB = 5.0
# Long codes, so the export (about 12 MB) is well above what streaming may add: a server that
# held the whole answer would fail the check.
PADDING = "-" + "X" * 40


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1)) / 1024


@dataclass
class Served:
    url: str
    pid: int
    big_series: int
    small_series: int

    def client(self) -> CouponClient:
        return CouponClient(self.url, BasicAuth(USERNAME, PASSWORD))


def _seed(db_url: str) -> tuple[int, int]:
    """An org, an admin client, a series of 150,000 coupons and one of 2,000."""
    db = Database.from_url(db_url)
    try:

        def people(uow):  # type: ignore[no-untyped-def]
            admin.create_org(uow, "exports")
            admin.create_client(
                uow, org="exports", username=USERNAME, password=PASSWORD,
                groups="default,coupon_admin",
            )  # fmt: skip
            uow.commit()

        db.run(people)
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            org_id = 1
            ids = []
            for description in ("big", "small"):
                result = conn.execute(
                    insert(coupon_series).values(
                        org_id=org_id, description=description, client_handling_type="DISC_CODE",
                        valid_till=now + timedelta(days=30), discount_type="ABS",
                        discount_value=5, created_at=now,
                    )
                )  # fmt: skip
                assert result.inserted_primary_key is not None
                ids.append(int(result.inserted_primary_key[0]))
        rows = [
            (org_id, series_id, f"=S{series_id}-{i:06}{PADDING}")
            for series_id, count in zip(ids, (ROWS, 2_000), strict=True)
            for i in range(count)
        ]
        _insert_coupons(db, rows, now)
        return ids[0], ids[1]
    finally:
        db.dispose()


def _insert_coupons(db: Database, rows: list[tuple[int, int, str]], now: datetime) -> None:
    """AVAILABLE coupons, fast: COPY on PostgreSQL, one executemany on SQLite."""
    columns = "org_id, series_id, code, code_norm, is_generic, state, created_at, updated_at"
    # SQLite keeps naive UTC text; both stores take the same instant.
    at: object = now if db.backend == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    values = [(o, s, code, code.lower(), False, "AVAILABLE", at, at) for o, s, code in rows]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.backend == "postgresql":
            with cursor.copy(f"COPY coupons ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.execute("BEGIN")  # the engine's connections autocommit otherwise
            cursor.executemany(f"INSERT INTO coupons ({columns}) VALUES (?,?,?,?,?,?,?,?)", values)
        raw.commit()
    finally:
        raw.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str | None,
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp(f"exports-{request.param}")
    with _database(request.param, workdir, postgres_admin_url) as db_url:
        migrate.upgrade(db_url)
        big, small = _seed(db_url)
        port = free_port()
        log = (workdir / "server.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "coupons.entrypoints.cli", "serve", "--port", str(port),
             "--db", db_url, "--no-worker"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "COUPONS_LOG_LEVEL": "WARNING"},
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, (workdir / "server.log").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
            yield Served(url, process.pid, big, small)
        finally:
            process.terminate()
            process.wait(timeout=20)


def _database(backend: str, workdir: Path, admin_url: str | None):  # type: ignore[no-untyped-def]
    from contextlib import nullcontext

    if backend == "sqlite":
        return nullcontext(f"sqlite:///{workdir / 'exports.db'}")
    if admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    return scratch_postgres(admin_url, "coupons_exports")


def test_a_150000_row_export_streams_without_growing_the_server(served: Served) -> None:
    # Given a served process that has already streamed a smaller export (warm)
    with served.client() as client:
        for _ in range(2):
            client.export_csv(f"/v2/coupon/series/{served.small_series}/coupons.csv", io.BytesIO())
    baseline = rss_mb(served.pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(served.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    # When 150,000 rows are streamed to a client that reads as they come
    lines = 0
    formulas = 0
    size = 0
    try:
        with httpx.stream(
            "GET", f"{served.url}/v2/coupon/series/{served.big_series}/coupons.csv",
            auth=(USERNAME, PASSWORD), timeout=120,
        ) as response:  # fmt: skip
            assert response.status_code == 200
            for line in response.iter_lines():
                lines += 1
                size += len(line) + 2
                formulas += ",'=S" in line
    finally:
        done.set()
        sampler.join()

    # Then every row arrived, each code neutralised, and the server grew by a few MB at most
    assert lines == ROWS + 1
    assert formulas == ROWS
    print(f"RSS {baseline:.1f} MB, peak {peak:.1f} MB streaming {ROWS} rows, {size / 2**20:.1f} MB")
    assert size > 2 * MAX_GROWTH_MB * 2**20
    assert peak - baseline < MAX_GROWTH_MB, f"RSS {baseline:.1f} -> peak {peak:.1f} MB"


def test_the_export_command_writes_the_series_and_the_trail(served: Served, tmp_path: Path) -> None:
    # Given a revoke of two codes of the small series
    with served.client() as client:
        client.revoke(
            series_id=served.small_series,
            codes=[f"=S{served.small_series}-00000{i}{PADDING}" for i in (1, 2)],
            reason="@export test",
        )
    auth = ["--url", served.url, "--username", USERNAME, "--password", PASSWORD]
    runner = CliRunner()
    out = tmp_path / "small.csv"

    # When the series and the trail are exported, and the trail shown as a table
    exported = runner.invoke(
        cli_app, ["export", "series", str(served.small_series), "--out", str(out), *auth]
    )
    wide = {"COLUMNS": "250"}  # one table row a line
    trail = runner.invoke(cli_app, ["revocations", "--since", "2000-01-01", *auth], env=wide)
    trail_csv = runner.invoke(cli_app, ["revocations", "--csv", *auth])
    trail_file = tmp_path / "trail.csv"
    trail_out = runner.invoke(cli_app, ["export", "revocations", "--out", str(trail_file), *auth])
    history_file = tmp_path / "history.csv"
    history_out = runner.invoke(
        cli_app, ["export", "history", "--since", "2000-01-01", "--out", str(history_file), *auth]
    )
    missing = runner.invoke(cli_app, ["export", "series", "999999", "--out", str(out), *auth])

    # Then the file holds every coupon, the table and the CSV show the revoke
    assert exported.exit_code == 0, exported.output
    rows = list(csv.reader(out.open(newline="")))
    assert len(rows) == 2_001
    assert sum(r[3] == "REVOKED" for r in rows[1:]) == 2
    assert trail.exit_code == 0, trail.output
    assert "@export test" in trail.output and USERNAME in trail.output
    (row,) = list(csv.reader(io.StringIO(trail_csv.stdout, newline="")))[1:]
    assert row[2:5] == [USERNAME, "'@export test", "2"]
    assert trail_out.exit_code == 0, trail_out.output
    assert list(csv.reader(trail_file.open(newline="")))[1][2:5] == row[2:5]
    assert history_out.exit_code == 0, history_out.output
    revokes = [r for r in csv.reader(history_file.open(newline="")) if r[5] == "REVOKE"]
    assert [(r[3], r[9], r[11]) for r in revokes[-2:]] == [
        (str(served.small_series), USERNAME, "'@export test")
    ] * 2
    assert missing.exit_code == 1
    assert "707" in missing.output
    assert len(list(csv.reader(out.open(newline="")))) == 2_001  # a failed export keeps the file
    assert not out.with_name(out.name + ".partial").exists()  # and leaves nothing beside it


def test_the_export_command_writes_a_customers_coupons(served: Served, tmp_path: Path) -> None:
    # Given a customer holding three coupons of the small series, one of them revoked
    with served.client() as client:
        customer = client.create_customer(mobile=f"+1555{served.pid % 10_000_000:07}")
        issued = client.issue_multiple(served.small_series, {"id": customer.id}, 3)
        client.revoke(series_id=served.small_series, codes=[issued[0].coupon_code])
    auth = ["--url", served.url, "--username", USERNAME, "--password", PASSWORD]
    runner = CliRunner()
    every, revoked = tmp_path / "all.csv", tmp_path / "revoked.csv"

    # When the customer's coupons are exported, all and then only the revoked one
    args = ["export", "customer", str(customer.id), "--out"]
    all_run = runner.invoke(cli_app, [*args, str(every), *auth])
    revoked_run = runner.invoke(cli_app, [*args, str(revoked), "--status", "revoked", *auth])
    unknown = runner.invoke(cli_app, ["export", "customer", "999999", "--out", "-", *auth])

    # Then each file holds the header and the customer's coupons, formulas neutralised
    assert all_run.exit_code == 0, all_run.output
    rows = list(csv.reader(every.open(newline="")))
    assert rows[0] == ["couponId", "couponCode", "seriesId", "state", "issuedToUserId"]
    assert sorted(int(r[0]) for r in rows[1:]) == sorted(c.coupon_id for c in issued)
    assert all(r[1].startswith("'=") and r[4] == str(customer.id) for r in rows[1:])
    assert revoked_run.exit_code == 0, revoked_run.output
    (only,) = list(csv.reader(revoked.open(newline="")))[1:]
    assert (int(only[0]), only[3]) == (issued[0].coupon_id, "REVOKED")
    # and an unknown customer is an error naming its code, not an empty file
    assert unknown.exit_code == 1
    assert "701" in unknown.output


def test_an_export_to_a_pipe_closed_early_ends_quietly(served: Served) -> None:
    # `coupons export series N --out - | head -1`: the reader hangs up after one line
    command = [
        sys.executable, "-m", "coupons.entrypoints.cli", "export", "series",
        str(served.big_series), "--out", "-", "--url", served.url,
        "--username", USERNAME, "--password", PASSWORD,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    errors = process.stderr.read().decode()
    process.wait(timeout=60)

    # then the line came, and the command ended without an error of its own
    assert first.startswith(b"couponId,")
    assert process.returncode == 0, errors
    assert "Broken pipe" not in errors and "Traceback" not in errors
