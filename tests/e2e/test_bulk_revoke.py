"""`coupons revoke` against a real `coupons serve` process, on SQLite and on PostgreSQL.

Each backend gets a fresh database, org and API client made through the CLI, and a server on a
free port. The bulk command runs as its own process so it can be interrupted and killed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from coupons.client import BasicAuth, CouponClient, OAuth
from coupons.entrypoints.bulk_revoke.journal import Journal, JournalMismatch, RunSpec
from coupons.entrypoints.cli import app as cli_app
from tests.conftest import scratch_postgres
from tests.e2e.conftest import FUTURE

USERNAME, PASSWORD = "bulk-admin", "bulk-s3cret-for-tests"
COUPONS = [sys.executable, "-m", "coupons.entrypoints.cli"]
# The same command without the server's imports: starts in a third of the time.
REVOKE = [sys.executable, "-m", "coupons.entrypoints.bulk_revoke"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `coupons serve` process that tests may kill and start again on the same port."""

    db_url: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [*COUPONS, "serve", "--port", str(self.port), "--db", self.db_url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COUPONS_DB_POOL_SIZE": "8"},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, (self.workdir / "server.log").read_text()
            time.sleep(0.2)
        raise AssertionError("server did not start within 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def client(self) -> CouponClient:
        return CouponClient(self.url, BasicAuth(USERNAME, PASSWORD))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server process (SIGSTOP): requests in flight wait until it resumes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str | None,
) -> Iterator[Server]:
    """A fresh database with one org and client (made through the CLI), served on a free port."""
    workdir = tmp_path_factory.mktemp(f"bulk-{request.param}")
    with ExitStack() as cleanup:
        if request.param == "sqlite":
            db_url = f"sqlite:///{workdir / 'coupons.db'}"
        else:
            if postgres_admin_url is None:
                pytest.skip("PostgreSQL not reachable")
            db_url = cleanup.enter_context(scratch_postgres(postgres_admin_url, "coupons_bulk"))
        _cli("db", "upgrade", "--db", db_url)
        _cli("org", "create", "bulk-org", "--db", db_url)
        _cli(
            "client", "create", "--org", "bulk-org", "--username", USERNAME, "--password", PASSWORD,
            "--groups", "default,coupon_admin", "--db", db_url,
        )  # fmt: skip
        srv = Server(db_url=db_url, port=free_port(), workdir=workdir)
        srv.start()
        cleanup.callback(srv.kill)
        yield srv


@dataclass
class Given:
    series_id: int
    codes: list[str]
    redeemed: list[str]
    revoked_before: list[str]


def given_series(server: Server, count: int, redeemed: int = 0, revoked: int = 0) -> Given:
    """A series of `count` pool codes, the first `redeemed` redeemed, the next `revoked` revoked."""
    prefix = uuid.uuid4().hex[:6].upper()
    codes = [f"{prefix}{i:06d}" for i in range(count)]
    with server.client() as api:
        series = api.create_series(
            description="bulk",
            client_handling_type="DISC_CODE",
            valid_till=FUTURE,
            discount_type="ABS",
            discount_value=5,
        )
        for start in range(0, count, 10_000):
            api.add_codes(series.id, codes[start : start + 10_000])
        redeemed_codes: list[str] = []
        if redeemed:
            customer = api.create_customer(external_id=f"bulk-{prefix}")
            issued = api.issue_multiple(series.id, {"id": customer.id}, redeemed)
            redeemed_codes = [i.coupon_code for i in issued]
            api.redeem({"id": customer.id}, redeemed_codes)
        revoked_codes = [c for c in codes if c not in set(redeemed_codes)][:revoked]
        if revoked_codes:
            api.revoke(series_id=series.id, codes=revoked_codes)
    return Given(series.id, codes, redeemed_codes, revoked_codes)


def bulk_args(
    server: Server, series_id: int, codes_file: Path, *extra: str, full: bool = False
) -> list[str]:
    command = [*COUPONS, "revoke"] if full else REVOKE
    return [
        *command, "--series", str(series_id), "--codes-file", str(codes_file),
        "--url", server.url, "--username", USERNAME, "--password", PASSWORD, *extra,
    ]  # fmt: skip


def run_bulk(
    server: Server, series_id: int, codes_file: Path, *extra: str, full: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bulk_args(server, series_id, codes_file, *extra, full=full),
        capture_output=True,
        text=True,
        timeout=240,
    )


def invoke_bulk(
    server: Server, series_id: int, codes_file: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `coupons revoke` in this process (quicker, and measured by coverage)."""
    args = bulk_args(server, series_id, codes_file, *extra, full=True)[len(COUPONS) :]
    result = CliRunner().invoke(cli_app, args)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def start_bulk(
    server: Server, series_id: int, codes_file: Path, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        bulk_args(server, series_id, codes_file, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_batches(journal: Path, done: int, process: subprocess.Popen[str]) -> None:
    """Block until the journal records `done` finished batches (the run is mid-way)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count('"state":"done"') >= done:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError("bulk revoke made no progress")


def running_bulk(
    server: Server, tmp_path: Path, count: int, *, parallel: int, batches: int
) -> tuple[Given, Path, Path, subprocess.Popen[str]]:
    """A run over a new series of `count` codes, `batches` batches in: the series, the codes
    file, the run's journal and its process."""
    given = given_series(server, count)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    journal = tmp_path / "codes.results.csv.journal"
    process = start_bulk(server, given.series_id, codes_file, "--parallel", str(parallel))
    wait_for_batches(journal, batches, process)
    return given, codes_file, journal, process


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def series_counts(server: Server, series_id: int) -> dict[str, int]:
    with server.client() as api:
        counts = api.get_series(series_id).counts or {}
    return {state: n for state, n in counts.items() if n}


def write_codes(path: Path, codes: list[str]) -> Path:
    path.write_text("".join(f"{c}\n" for c in codes))
    return path


def test_revoking_ten_thousand_codes_reports_each_code_once_with_its_outcome(
    server: Server, tmp_path: Path
) -> None:
    # given 10,000 pool codes, 3 of them redeemed and 4 already revoked, listed in mixed case
    # with spaces, blank lines and 5 unknown codes
    given = given_series(server, 10_000, redeemed=3, revoked=4)
    unknown = [f"NO-SUCH-{i}" for i in range(5)]
    lines = [c.lower() if i % 2 else f"  {c} " for i, c in enumerate(given.codes)]
    for i, code in enumerate(unknown):
        lines.insert(1_000 * (i + 1), code)
    lines.insert(10, "")
    codes_file = write_codes(tmp_path / "codes.txt", lines)

    # when revoking them all
    started = time.monotonic()
    done = run_bulk(server, given.series_id, codes_file, "--reason", "bulk test", full=True)
    elapsed = time.monotonic() - started

    # then the run ends with 1 (some codes could not be revoked) and says why
    assert done.returncode == 1, done.stderr
    assert "3 redeemed" in done.stderr and "5 not_found" in done.stderr
    # and the result CSV has one row per code with the right outcome
    rows = read_results(tmp_path / "codes.results.csv")
    assert len(rows) == 10_005
    outcomes = {row["code"]: row["outcome"] for row in rows}
    assert len(outcomes) == 10_005
    assert Counter(outcomes.values()) == {
        "revoked": 9_993,
        "redeemed": 3,
        "already_revoked": 4,
        "not_found": 5,
    }
    assert {outcomes[c] for c in given.redeemed} == {"redeemed"}
    assert {outcomes[c] for c in given.revoked_before} == {"already_revoked"}
    assert {outcomes[c] for c in unknown} == {"not_found"}
    assert all(row["couponId"] for row in rows if row["outcome"] == "revoked")
    # and the summary table counts each outcome
    assert "9,993" in done.stdout and "10,005 of 10,005" in done.stdout
    # and the server agrees
    assert series_counts(server, given.series_id) == {"REVOKED": 9_997, "REDEEMED": 3}
    print(f"\n{server.db_url.split(':')[0]}: 10,005 codes in {elapsed:.1f} s")


def test_a_killed_run_resumes_and_revokes_every_code_exactly_once(
    server: Server, tmp_path: Path
) -> None:
    # given a run killed outright after a few batches
    given, codes_file, journal, process = running_bulk(
        server, tmp_path, 1_000, parallel=2, batches=4
    )
    with server.paused():  # so the run cannot finish before the kill lands
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    killed_at = journal.read_text().count('"state":"done"')
    # and a rerun refused as a whole (a wrong password): the journal stays, since the killed
    # run's keys may have done their work on the server
    refused = invoke_bulk(
        server, given.series_id, codes_file, "--parallel", "2", "--password", "wrong"
    )
    assert refused.returncode == 2
    assert "nothing was revoked" not in " ".join(refused.stderr.split())
    assert journal.exists()

    # when running the same command again
    done = run_bulk(server, given.series_id, codes_file, "--parallel", "2")

    # then it finishes, every code reported once as revoked by this run (no "already revoked":
    # unfinished batches were resent with their original keys and replayed)
    assert done.returncode == 0, done.stderr
    assert killed_at < 20
    rows = read_results(tmp_path / "codes.results.csv")
    assert sorted(row["code"] for row in rows) == given.codes
    assert {row["outcome"] for row in rows} == {"revoked"}
    assert series_counts(server, given.series_id) == {"REVOKED": 1_000}
    # and each coupon was revoked once, with one history entry
    with server.client() as api:
        coupon = api.get_coupon(int(rows[-1]["couponId"]))
    assert [h.action for h in coupon.history].count("REVOKE") == 1

    # when rerunning once more, then the journal answers alone with the same report
    again = invoke_bulk(server, given.series_id, codes_file, "--parallel", "2")
    assert again.returncode == 0 and "1,000 of 1,000" in again.stdout
    assert read_results(tmp_path / "codes.results.csv") == rows

    # when rerunning with another reason, then it refuses with 2 rather than mix two runs
    other = invoke_bulk(server, given.series_id, codes_file, "--reason", "other")
    assert other.returncode == 2 and "other arguments" in other.stderr


def test_a_second_run_of_the_same_command_while_the_first_runs_is_refused_with_2(
    server: Server, tmp_path: Path
) -> None:
    # given a run mid-way, held there
    given, codes_file, journal, first = running_bulk(server, tmp_path, 1_000, parallel=2, batches=2)
    with server.paused():
        before = journal.read_bytes()
        # when the same command is started again (another terminal, an overlapping cron job)
        second = run_bulk(server, given.series_id, codes_file, "--parallel", "2")
        # then it is refused before sending or writing anything
        assert second.returncode == 2, second.stderr
        assert "another run is using" in " ".join(second.stderr.split())
        assert journal.read_bytes()[: len(before)] == before
    _out, err = first.communicate(timeout=240)

    # and the first finishes alone: each batch sent under one key, each code revoked once
    assert first.returncode == 0, err
    records = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    sent = [r["batch"] for r in records if r.get("state") == "sent"]
    assert sorted(sent) == list(range(20))
    rows = read_results(tmp_path / "codes.results.csv")
    assert {row["outcome"] for row in rows} == {"revoked"} and len(rows) == 1_000


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_an_interrupted_run_stops_with_2_and_a_rerun_finishes_it(
    server: Server, tmp_path: Path, stop: signal.Signals
) -> None:
    # given a run interrupted mid-way (Ctrl-C, or `kill`/`timeout`): the server is paused
    # first, so the run cannot finish between the test seeing progress and the interrupt
    given, codes_file, _, process = running_bulk(server, tmp_path, 2_000, parallel=1, batches=3)
    with server.paused():
        assert process.poll() is None, "the run finished before it could be interrupted"
        process.send_signal(stop)
        time.sleep(0.5)  # the interrupt lands while a batch is in flight
    _, stderr = process.communicate(timeout=60)

    # then it says it did not finish, and its partial results are consistent
    assert process.returncode == 2, stderr
    assert "rerun the same command to resume" in stderr
    partial = read_results(tmp_path / "codes.results.csv")
    assert 0 < len(partial) < 2_000 and {row["outcome"] for row in partial} == {"revoked"}

    # when rerun, then every code is reported exactly once as revoked
    done = run_bulk(server, given.series_id, codes_file, "--parallel", "1")
    assert done.returncode == 0, done.stderr
    rows = read_results(tmp_path / "codes.results.csv")
    assert sorted(row["code"] for row in rows) == given.codes
    assert {row["outcome"] for row in rows} == {"revoked"}


def test_a_server_restart_mid_run_is_ridden_out_without_double_counting(
    server: Server, tmp_path: Path
) -> None:
    # given a run under way
    given, _, _, process = running_bulk(server, tmp_path, 1_500, parallel=2, batches=3)

    # when the server is killed and started again
    server.kill()
    server.start()
    _, stderr = process.communicate(timeout=180)

    # then the run finishes by itself with every code revoked exactly once
    assert process.returncode == 0, stderr
    rows = read_results(tmp_path / "codes.results.csv")
    assert sorted(row["code"] for row in rows) == given.codes
    assert {row["outcome"] for row in rows} == {"revoked"}
    assert series_counts(server, given.series_id) == {"REVOKED": 1_500}


def test_an_unreachable_server_ends_the_run_with_2_and_leaves_no_journal_to_trip_on(
    server: Server, tmp_path: Path
) -> None:
    # given codes of a real series, and a first try at a port where nothing listens
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    dead = Server(db_url="", port=free_port(), workdir=tmp_path)

    # when revoking there with a short retry budget (and a series id that is wrong, too)
    done = run_bulk(dead, 987_655, codes_file, "--retry-seconds", "1")

    # then the run stops with 2 and names the cause; no request reached a server, so nothing
    # was revoked and no journal ties the corrected command to these arguments
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "server unavailable" in said and "nothing was revoked" in said
    assert not (tmp_path / "codes.results.csv.journal").exists()
    # and the corrected command (the right server, another --series) just runs
    fixed = invoke_bulk(server, given.series_id, codes_file)
    assert fixed.returncode == 0, fixed.stderr
    assert series_counts(server, given.series_id) == {"REVOKED": 2}


def test_an_empty_codes_file_is_refused_as_the_server_refuses_it_and_nothing_is_written(
    server: Server, tmp_path: Path
) -> None:
    codes_file = write_codes(tmp_path / "codes.txt", [])

    done = invoke_bulk(server, 1, codes_file)

    assert done.returncode == 2
    assert "holds no codes: nothing to revoke" in " ".join(done.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.txt"]


def test_a_run_stopped_while_no_server_answers_ends_at_once_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    # given a run of several batches at a port where nothing listens, retrying for a minute
    codes_file = write_codes(tmp_path / "codes.txt", [f"S{i:05d}" for i in range(500)])
    dead = Server(db_url="", port=free_port(), workdir=tmp_path)
    process = start_bulk(dead, 1, codes_file, "--retry-seconds", "60", "--parallel", "4")
    time.sleep(3)  # every batch in flight is retrying now

    # when it is stopped (kill, as a service manager's stop does)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    # then it ends at once, not when the retries would have run out, and since nothing
    # reached a server, keeps no journal to tie the corrected command to this one
    assert process.returncode == 2, stderr
    assert time.monotonic() - started < 15
    assert "nothing was revoked" in " ".join(stderr.split())
    assert not (tmp_path / "codes.results.csv.journal").exists()


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://"])
def test_a_url_that_names_no_http_server_is_refused_before_anything_is_written(
    tmp_path: Path, url: str
) -> None:
    codes_file = write_codes(tmp_path / "codes.txt", ["A1"])

    done = CliRunner().invoke(
        cli_app,
        ["revoke", "--series", "1", "--codes-file", str(codes_file), "--url", url,
         "--username", "u", "--password", "p"],
    )  # fmt: skip

    assert done.exit_code == 2
    assert f"--url {url}" in " ".join(done.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.txt"]


def test_a_dry_run_reports_what_would_happen_and_changes_nothing(
    server: Server, tmp_path: Path
) -> None:
    # given a CSV of codes with one redeemed, one already revoked and one unknown
    given = given_series(server, 120, redeemed=1, revoked=1)
    codes_file = tmp_path / "codes.csv"
    with codes_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note", "code"])
        writer.writerows([["x", c] for c in [*given.codes, "UNKNOWN-1"]])

    # when dry-running with codes written in lower case
    done = invoke_bulk(server, given.series_id, codes_file, "--dry-run", "--case", "LOWER")

    # then each code is previewed, written per --case, and nothing changed on the server
    assert done.returncode == 1, done.stderr
    rows = read_results(tmp_path / "codes.dry-run.csv")
    assert Counter(row["outcome"] for row in rows) == {
        "would_revoke": 118,
        "redeemed": 1,
        "already_revoked": 1,
        "not_found": 1,
    }
    assert all(row["code"] == row["code"].lower() for row in rows)
    assert "dry run" in done.stdout
    assert series_counts(server, given.series_id) == {"AVAILABLE": 118, "REDEEMED": 1, "REVOKED": 1}


def test_a_dry_run_again_previews_the_coupons_as_they_are_now(
    server: Server, tmp_path: Path
) -> None:
    # given a dry run, then the real run of the same codes
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    assert invoke_bulk(server, given.series_id, codes_file, "--dry-run").returncode == 0
    assert invoke_bulk(server, given.series_id, codes_file).returncode == 0

    # when dry-running again, and again with other arguments
    again = invoke_bulk(server, given.series_id, codes_file, "--dry-run")
    other = invoke_bulk(server, given.series_id, codes_file, "--dry-run", "--reason", "leak")

    # then each preview asked the server afresh: the codes are revoked now
    assert again.returncode == other.returncode == 0, (again.stderr, other.stderr)
    rows = read_results(tmp_path / "codes.dry-run.csv")
    assert [row["outcome"] for row in rows] == ["already_revoked", "already_revoked"]


def test_codes_a_spreadsheet_would_run_are_written_as_text(server: Server, tmp_path: Path) -> None:
    # given codes that start like formulas (unknown to the server, as a leaked list may hold)
    given = given_series(server, 2)
    risky = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]
    codes_file = write_codes(tmp_path / "codes.txt", [*given.codes, *risky])

    # when dry-running with the codes written as they came
    done = invoke_bulk(server, given.series_id, codes_file, "--dry-run", "--case", "AS_IT_IS")

    # then the result file shows each such code behind a quote, as the server's exports do
    assert done.returncode == 1, done.stderr
    rows = read_results(tmp_path / "codes.dry-run.csv")
    assert [r["code"] for r in rows] == [*given.codes, *("'" + code for code in risky)]


def test_dry_run_and_real_run_agree_on_duplicates_across_batches_and_case(
    server: Server, tmp_path: Path
) -> None:
    # given 150 codes (three batches) where codes of the first batch come back in later
    # batches in another case or with spaces, plus a redeemed code and an unknown one twice
    given = given_series(server, 150, redeemed=1)
    lines = list(given.codes)
    lines += [given.codes[3].lower(), f"  {given.codes[3]} ", given.codes[60].lower()]
    lines += ["NO-SUCH-CODE", "no-such-code", given.redeemed[0].lower()]
    codes_file = write_codes(tmp_path / "codes.txt", lines)

    # when dry-running and then running for real, several batches in flight
    dry = invoke_bulk(server, given.series_id, codes_file, "--dry-run", "--parallel", "3")
    real = invoke_bulk(server, given.series_id, codes_file, "--parallel", "3")

    # then both report every line, and report it alike (would_revoke where revoked)
    assert dry.returncode == real.returncode == 1, (dry.stderr, real.stderr)
    dry_rows = read_results(tmp_path / "codes.dry-run.csv")
    real_rows = read_results(tmp_path / "codes.results.csv")
    assert [(r["line"], r["outcome"].replace("would_revoke", "revoked")) for r in dry_rows] == [
        (r["line"], r["outcome"]) for r in real_rows
    ]
    # and later duplicates are reported as duplicates, in both modes, not as already revoked
    by_line = {int(r["line"]): r for r in real_rows}
    assert [by_line[n]["outcome"] for n in range(151, 157)] == [
        "duplicate_in_file", "duplicate_in_file", "duplicate_in_file", "not_found",
        "duplicate_in_file", "duplicate_in_file",
    ]  # fmt: skip
    assert Counter(r["outcome"] for r in real_rows) == {
        "revoked": 149,
        "redeemed": 1,
        "duplicate_in_file": 5,
        "not_found": 1,
    }
    assert "would_revoke" in {r["outcome"] for r in dry_rows}
    assert "156 of 156" in dry.stdout and "156 of 156" in real.stdout
    assert series_counts(server, given.series_id) == {"REVOKED": 149, "REDEEMED": 1}


def test_the_result_csv_has_a_line_column_and_keeps_file_order_whatever_the_parallelism(
    server: Server, tmp_path: Path
) -> None:
    # given 400 codes (eight batches) with blank lines and one code too long to send
    given = given_series(server, 400)
    lines: list[str] = []
    for i, code in enumerate(given.codes):
        lines.append(code)
        if i % 97 == 0:
            lines.append("")
    lines.insert(200, "X" * 101)
    codes_file = write_codes(tmp_path / "codes.txt", lines)

    # when revoking with eight batches in flight, so they finish in any order
    done = invoke_bulk(server, given.series_id, codes_file, "--parallel", "8")

    # then one row per non-blank line, in file order, numbered by the file's own lines
    assert done.returncode == 1, done.stderr
    rows = read_results(tmp_path / "codes.results.csv")
    expected = [(str(n), code) for n, code in enumerate(lines, start=1) if code]
    assert [(r["line"], r["code"]) for r in rows] == expected
    assert list(rows[0]) == ["line", "code", "outcome", "errorCode", "couponId"]
    assert Counter(r["outcome"] for r in rows) == {"revoked": 400, "invalid": 1}
    assert series_counts(server, given.series_id) == {"REVOKED": 400}


def test_an_unknown_series_ends_the_run_with_2_and_the_servers_reason(
    server: Server, tmp_path: Path
) -> None:
    # given codes and a series id the org does not have
    codes_file = write_codes(tmp_path / "codes.txt", ["A1", "A2"])

    # when revoking, then the run could not finish: 2, with the server's code, and no
    # summary of counts that suggests part of it was done
    done = invoke_bulk(server, 987_654, codes_file)
    assert done.returncode == 2
    assert "707" in done.stderr
    assert "total" not in done.stdout and "duplicate_in_file" not in done.stdout, done.stdout


def test_a_code_holding_a_control_character_is_invalid_and_the_rest_is_revoked(
    server: Server, tmp_path: Path
) -> None:
    # given two codes, and between them one holding NUL and one a tab inside it
    given = given_series(server, 2)
    lines = [given.codes[0], "BAD\x00CODE", "BAD\tCODE", given.codes[1]]
    codes_file = write_codes(tmp_path / "codes.txt", lines)

    # when revoking
    done = invoke_bulk(server, given.series_id, codes_file)

    # then the run finishes: the two bad lines are invalid, never sent, and both codes revoked
    assert done.returncode == 1, done.stderr
    rows = read_results(tmp_path / "codes.results.csv")
    assert [r["outcome"] for r in rows] == ["revoked", "invalid", "invalid", "revoked"]
    assert series_counts(server, given.series_id) == {"REVOKED": 2}


def test_a_refused_run_says_the_cause_must_be_fixed_and_the_corrected_command_just_runs(
    server: Server, tmp_path: Path
) -> None:
    # given codes of a real series, and the record of an earlier run beside them
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    record = tmp_path / "codes.results.csv"
    record.write_text("line,code,outcome,errorCode,couponId\n1,EARLIER,revoked,,7\n")

    # when they are first sent with a series id the org does not have
    done = invoke_bulk(server, 987_655, codes_file)

    # then nothing was revoked, it says to fix the cause, and keeps no journal to resume
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "fix what it names" in said and "nothing was revoked" in said
    assert not (tmp_path / "codes.results.csv.journal").exists()
    # and writes no results: the earlier record is as it was, and no scratch file is left
    assert "no results file was written" in said
    assert record.read_text() == "line,code,outcome,errorCode,couponId\n1,EARLIER,revoked,,7\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.results.csv", "codes.txt"]
    # and the corrected command (another --series) runs without tripping on the first run
    fixed = invoke_bulk(server, given.series_id, codes_file)
    assert fixed.returncode == 0, fixed.stderr
    assert series_counts(server, given.series_id) == {"REVOKED": 2}


def _dotless_code(server: Server, also: str | None = None) -> tuple[Given, str]:
    """A series holding a code with a dotless i (and `also` with the same suffix)."""
    given = given_series(server, 1)
    odd = f"KI\u0131A-{uuid.uuid4().hex[:6]}"
    with server.client() as api:
        api.add_codes(given.series_id, [odd, *([f"{also}-{odd[5:]}"] if also else [])])
    return given, odd


@pytest.mark.parametrize("case", ["UPPER", "LOWER", "AS_IT_IS"])
def test_a_code_whose_case_changes_its_key_is_tied_to_its_line(
    server: Server, tmp_path: Path, case: str
) -> None:
    # "KI\u0131A" (a dotless i) comes back as "KIIA" in upper case, whose folded key is no
    # longer the line's
    given, odd = _dotless_code(server, also="Straße")
    codes_file = write_codes(tmp_path / "codes.txt", [odd, "STRASSE-" + odd[5:]])

    done = invoke_bulk(server, given.series_id, codes_file, "--case", case)

    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_results(tmp_path / "codes.results.csv")
    assert [r["outcome"] for r in rows] == ["revoked", "revoked"]
    assert all(r["couponId"] for r in rows)


@pytest.mark.parametrize("case", ["UPPER", "LOWER", "AS_IT_IS"])
def test_an_already_revoked_code_whose_case_changes_its_key_is_reported_already_revoked(
    server: Server, tmp_path: Path, case: str
) -> None:
    # the 682 check asked with the code as the server wrote it back ("KIIA"), which matches
    # no coupon: an already revoked code was reported not found
    given, odd = _dotless_code(server)
    codes_file = write_codes(tmp_path / "codes.txt", [odd])
    assert (
        invoke_bulk(
            server, given.series_id, codes_file, "--results", str(tmp_path / "a.csv")
        ).returncode
        == 0
    )

    again = invoke_bulk(server, given.series_id, codes_file, "--case", case)

    assert again.returncode == 0, again.stdout + again.stderr
    [row] = read_results(tmp_path / "codes.results.csv")
    assert (row["outcome"], row["errorCode"]) == ("already_revoked", "682")


@pytest.mark.parametrize("on_server", [False, True])
def test_results_naming_something_that_is_not_a_regular_file_are_refused(
    server: Server, tmp_path: Path, on_server: bool
) -> None:
    # /dev/null, a pipe: the finished file would be moved over it (as root, /dev/null too)
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    extra = ("--on-server",) if on_server else ()

    done = invoke_bulk(server, given.series_id, codes_file, "--results", str(fifo), *extra)

    assert done.returncode == 2
    assert "is not a regular file" in " ".join(done.stderr.split())
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert not (tmp_path / "results.fifo.journal").exists()
    assert series_counts(server, given.series_id) == {"AVAILABLE": 2}


@pytest.mark.parametrize("on_server", [False, True])
def test_results_naming_the_codes_file_itself_are_refused_and_the_file_kept(
    server: Server, tmp_path: Path, on_server: bool
) -> None:
    # given a codes file
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.csv", ["code", *given.codes])
    before = codes_file.read_text()

    # when the results are to be written over it
    extra = ["--results", str(tmp_path / "." / "codes.csv")]
    done = invoke_bulk(server, given.series_id, codes_file, *extra, *(["--on-server"] * on_server))

    # then nothing is sent and the file is as it was
    assert done.returncode == 2
    assert "must not be the codes file" in done.stderr
    assert codes_file.read_text() == before
    assert series_counts(server, given.series_id) == {"AVAILABLE": 2}


@pytest.mark.parametrize("on_server", [False, True])
@pytest.mark.parametrize("where", ["a folder", "in a missing folder"])
def test_results_that_cannot_be_written_are_refused_before_anything_is_sent(
    server: Server, tmp_path: Path, on_server: bool, where: str
) -> None:
    # given a codes file, and results to go where no file can be written
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    results = tmp_path if where == "a folder" else tmp_path / "nowhere" / "out.csv"

    # when the run starts
    done = invoke_bulk(
        server,
        given.series_id,
        codes_file,
        "--results",
        str(results),
        *(["--on-server"] * on_server),
    )

    # then it stops at once, saying why, and nothing is revoked
    assert done.returncode == 2
    assert "--results" in done.stderr and ("directory" in done.stderr or "folder" in done.stderr)
    assert series_counts(server, given.series_id) == {"AVAILABLE": 2}


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("codes.csv", b'code,note\nA-1,"oops\nA-2,x\n', 2),
        ("codes.txt", b"A-1\nA-\xff2\n", 2),
        # a lone carriage return, read as a line end, numbered later lines otherwise than an
        # editor does
        ("codes.txt", b"A-1\rA-2\nA-3\n", 1),
        ("codes.csv", b"code\r\nA-1\r\nA-2\rA-3\r\n", 3),
        # at the end of the file too, as a revoke job refuses it
        ("codes.txt", b"A-1\nA-2\r", 2),
    ],
)
def test_a_bad_codes_file_is_refused_naming_its_line_and_nothing_is_sent(
    server: Server, tmp_path: Path, name: str, content: bytes, line: int
) -> None:
    given = given_series(server, 2)
    codes_file = tmp_path / name
    codes_file.write_bytes(content)

    done = invoke_bulk(server, given.series_id, codes_file)

    assert done.returncode == 2
    assert f"{codes_file}, line {line}:" in done.stderr.replace("\n", "")
    assert series_counts(server, given.series_id) == {"AVAILABLE": 2}
    assert not list(tmp_path.glob("*.journal"))


def test_the_client_speaks_every_endpoint_of_the_spec(server: Server) -> None:
    # given an OAuth client on the real server
    with CouponClient(server.url, OAuth(USERNAME, PASSWORD)) as api:
        # when walking the lifecycle through every endpoint
        assert api.health()["status"] == "ok"
        series = api.create_series(
            description="walk",
            client_handling_type="DISC_CODE",
            valid_till=FUTURE,
            discount_type="PERC",
            discount_value=10,
        )
        assert api.add_codes(series.id, ["w1", "w2", "W1"]).added == 2
        customer = api.create_customer(mobile="+1 555 0100", email="walk@example.com")
        assert api.lookup_customer(email="WALK@example.com").id == customer.id
        one = api.issue(series.id, {"id": customer.id})
        more = api.issue_multiple(series.id, {"mobile": "15550100"}, 2)
        redeemed = api.redeem({"id": customer.id}, [one.coupon_code], bill_amount=10)
        reactivated = api.reactivate([redeemed[0].redemption_id])
        revoked = api.revoke(series_id=series.id, codes=[more[0].coupon_code], code_case="LOWER")
        reinstated = api.reinstate(series_id=series.id, codes=[more[0].coupon_code])
        coupons = api.customer_coupons(customer.id, "ACTIVE")

        # then each answer is typed and consistent
        assert api.get_series(series.id).counts is not None
        assert reactivated[0].coupon_id == one.coupon_id
        assert revoked.changed[0].coupon_code == more[0].coupon_code.lower()
        assert reinstated.changed[0].coupon_id == more[0].coupon_id
        assert len(coupons) == 3
        actions = [h.action for h in api.get_coupon(more[0].coupon_id).history]
        assert actions[-2:] == ["REVOKE", "REINSTATE"]


@pytest.mark.parametrize("changed", ["--username", "--url"])
def test_a_rerun_as_another_api_client_or_to_another_server_is_refused_rather_than_resumed(
    server: Server, tmp_path: Path, changed: str
) -> None:
    # Keys are kept per client: resent by another, they would not replay the first answers.
    # Against another server address (staging, then production) the first server's report
    # was replayed and nothing was sent.
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    assert invoke_bulk(server, given.series_id, codes_file).returncode == 0
    value = (
        "someone-else" if changed == "--username" else server.url.replace("127.0.0.1", "localhost")
    )

    other = invoke_bulk(server, given.series_id, codes_file, changed, value)

    assert other.returncode == 2
    assert "belongs to a run with other arguments" in " ".join(other.stderr.split())


@pytest.mark.parametrize(
    "content",
    [b"garbage{\n", b'{"batch":0,"state":"sent","key":"k"}\n', b"\xff\xfe\x00x\n", b"[1]\n"],
)
def test_a_file_that_is_no_journal_of_this_command_is_refused_not_taken_for_one(
    tmp_path: Path, content: bytes
) -> None:
    # taken as a journal, its batches were reported for arguments it never named
    path = tmp_path / "r.csv.journal"
    path.write_bytes(content)

    with pytest.raises(JournalMismatch, match="is not a journal this command can resume"):
        Journal(path, RunSpec(1, "codes.txt", "abc", None, "UPPER", False))
    assert path.read_bytes() == content


def test_a_journal_torn_by_a_kill_resumes_from_its_last_whole_record(tmp_path: Path) -> None:
    # given a journal whose last record was cut short mid-write
    spec = RunSpec(1, "codes.txt", "abc", None, "UPPER", False)
    path = tmp_path / "r.csv.journal"
    first = Journal(path, spec)
    key = first.key_for(0)
    first.finish(0, [(1, "A", "revoked", "", "1")])
    first.key_for(1)
    first.close()
    with path.open("a") as handle:
        handle.write('{"batch":1,"state":"do')

    # when the rerun opens it
    again = Journal(path, spec)

    # then batch 0 counts as done, batch 1 keeps its key, and new records start on a new line
    assert again.done == {0} and 1 in again.keys and key not in again.keys.values()
    again.finish(1, [(2, "B", "revoked", "", "2")])
    again.close()
    reopened = Journal(path, spec)
    with path.open("rb") as reader:
        assert reopened.rows_of(0, reader) == [(1, "A", "revoked", "", "1")]
        assert reopened.rows_of(1, reader) == [(2, "B", "revoked", "", "2")]
        assert reopened.rows_of(2, reader) is None
    reopened.close()


def refused_offline(codes_file: Path, *extra: str) -> Result:
    """A run refused before it sends anything (no server listens at its address)."""
    return CliRunner().invoke(
        cli_app,
        ["revoke", "--series", "1", "--codes-file", str(codes_file), "--username", "u",
         "--password", "p", "--url", "http://127.0.0.1:9", *extra],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("coupon,note", "no 'code' column"),
        ("code, Code ", "more than one 'code' column"),
        # a header Rich would read as markup: its closing tag had no opening one (a traceback)
        ("id,[/b]", "no 'code' column (header: ['id', '[/b]'])"),
    ],
)
def test_a_csv_without_one_code_column_is_refused_with_2(
    tmp_path: Path, header: str, says: str
) -> None:
    # given a CSV whose header has no `code` column, or two (as the server refuses both)
    codes_file = tmp_path / "codes.csv"
    codes_file.write_text(f"{header}\nA1,x\n")

    # when revoking, then the run stops before sending anything, naming the problem
    result = refused_offline(codes_file)
    assert result.exit_code == 2
    assert says in result.output


def test_a_codes_file_that_is_a_pipe_or_missing_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    # a pipe would be read empty the second time the run reads it: a silent "0 of 0"
    fifo = tmp_path / "codes.fifo"
    os.mkfifo(fifo)
    for path, says in (
        (fifo, "is not a regular file"),
        (tmp_path / "missing.txt", "no such file"),
        (tmp_path, "is a directory"),
    ):
        result = CliRunner().invoke(
            cli_app,
            ["revoke", "--series", "1", "--codes-file", str(path), "--username", "u",
             "--password", "p", "--url", "http://127.0.0.1:9"],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert says in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.fifo"]


def _direct_loop(server: Server, given: Given, parallel: int) -> float:
    """Seconds a bare httpx loop of 50-code revokes takes, `parallel` requests in flight."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [given.codes[i : i + 50] for i in range(0, len(given.codes), 50)]
    with httpx.Client(base_url=server.url, auth=(USERNAME, PASSWORD), timeout=60) as http:

        def send(chunk: list[str]) -> None:
            body = {"couponSeriesId": given.series_id, "couponCodes": chunk}
            response = http.post("/v2/coupon/revoke", json=body)
            assert response.json()["entity"]["failedCount"] == 0

        started = time.monotonic()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(send, chunks))
        return time.monotonic() - started


@pytest.mark.skipif(not os.environ.get("COUPONS_BENCH"), reason="set COUPONS_BENCH=1 to measure")
def test_bulk_revoke_keeps_up_with_a_direct_loop_of_50_code_requests(
    server: Server, tmp_path: Path
) -> None:
    # given the command's fixed cost (start-up on an empty file)
    empty = write_codes(tmp_path / "empty.txt", [])
    started = time.monotonic()
    assert run_bulk(server, 1, empty, full=True).returncode == 0
    startup = time.monotonic() - started
    count, ratios, repeats = 10_000, [], 2
    for parallel in (1, 4):
        # given 2 x repeats + 1 series of 10,000 codes
        given = [given_series(server, count) for _ in range(2 * repeats + 1)]
        direct_s: list[float] = []
        command_s: list[float] = []
        # when they are revoked alternately by a bare loop and by the whole command (start-up,
        # file scan, journal and result CSV included), loop first and last, so that load from
        # elsewhere on the machine hits both sides alike
        for i, series in enumerate(given):
            if i % 2 == 0:
                direct_s.append(_direct_loop(server, series, parallel))
                continue
            codes_file = write_codes(tmp_path / f"codes-{parallel}-{i}.txt", series.codes)
            started = time.monotonic()
            done = run_bulk(server, series.series_id, codes_file, "--parallel", str(parallel),
                            full=True)  # fmt: skip
            command_s.append(time.monotonic() - started)
            assert done.returncode == 0, done.stderr
        direct = sum(direct_s) / len(direct_s)
        command = sum(command_s) / len(command_s)

        # Start-up is a fixed cost; the rate once running is what scales to big files.
        ratios.append(direct / (command - startup))
        print(
            f"\n{server.db_url.split(':')[0]} parallel={parallel}: direct loop "
            f"{count / direct:,.0f} codes/s; coupons revoke {count / command:,.0f} codes/s "
            f"whole (ratio {direct / command:.2f}), {count / (command - startup):,.0f} codes/s "
            f"after its {startup:.1f} s start-up (ratio {ratios[-1]:.2f}); "
            f"mean of {repeats} command runs against {repeats + 1} loop runs"
        )

    # then, once started, the command reaches at least 80% of the bare loop's throughput
    assert min(ratios) >= 0.8


def test_a_run_refused_mid_way_keeps_what_it_did_and_the_rerun_reports_it_as_revoked(
    server: Server, tmp_path: Path
) -> None:
    # given a run whose series is ended early while it is going
    given, codes_file, journal, process = running_bulk(
        server, tmp_path, 5_000, parallel=1, batches=3
    )

    def set_valid_till(valid_till: str) -> None:
        response = httpx.patch(
            f"{server.url}/v2/coupon/series/{given.series_id}",
            json={"validTill": valid_till},
            auth=(USERNAME, PASSWORD),
        )
        assert response.status_code == 200, response.text

    set_valid_till("2020-01-01")
    _, stderr = process.communicate(timeout=120)

    # then it stops with 2 and says what it did: not "nothing was revoked", and the journal and
    # a results file of what was done are kept
    assert process.returncode == 2, stderr
    said = " ".join(stderr.split())
    assert "712" in said and "nothing was revoked" not in said
    assert journal.exists()
    first = read_results(tmp_path / "codes.results.csv")
    revoked_first = {row["code"] for row in first if row["outcome"] == "revoked"}
    assert 150 <= len(revoked_first) < 5_000

    # when the campaign is extended again and the same command runs
    set_valid_till(FUTURE)
    done = run_bulk(server, given.series_id, codes_file, "--parallel", "1")

    # then every code is reported once as revoked, those of the first run included
    assert done.returncode == 0, done.stderr
    rows = read_results(tmp_path / "codes.results.csv")
    assert sorted(row["code"] for row in rows) == given.codes
    assert {row["outcome"] for row in rows} == {"revoked"}
    assert series_counts(server, given.series_id) == {"REVOKED": 5_000}


def test_a_real_run_starts_afresh_over_a_dry_runs_journal_of_the_same_results(
    server: Server, tmp_path: Path
) -> None:
    # a preview's journal holds nothing to resume: it refused the real run ("other arguments")
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    out = str(tmp_path / "out.csv")
    assert (
        invoke_bulk(server, given.series_id, codes_file, "--dry-run", "--results", out).returncode
        == 0
    )

    real = invoke_bulk(server, given.series_id, codes_file, "--results", out)

    assert real.returncode == 0, real.stderr
    assert [row["outcome"] for row in read_results(Path(out))] == ["revoked", "revoked"]


def test_a_csv_value_past_the_readers_limit_is_refused_with_2(tmp_path: Path) -> None:
    codes_file = tmp_path / "codes.csv"
    codes_file.write_text("code,note\nA1," + "x" * 140_000 + "\n")

    result = refused_offline(codes_file)

    # (its line is past the 64 KiB any line may have, which the scan meets first)
    assert result.exit_code == 2, result.output
    assert "line 2: longer than 65536 bytes" in " ".join(result.output.split())


def test_a_batch_whose_check_fails_after_its_revoke_keeps_its_journal(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the revoke was applied; a failed 682 check (the server gone by then) was taken for a
    # batch that never reached it: "nothing was revoked", and the journal was deleted
    from coupons.client import CouponApiUnavailable
    from coupons.entrypoints.bulk_revoke import calls

    def gone(*args: object, **kwargs: object) -> dict[str, object]:
        failure = CouponApiUnavailable(0, "ConnectError: refused", None)
        failure.delivered = False
        raise failure

    monkeypatch.setattr(calls, "tell_revoked_from_unknown", gone)
    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", [*given.codes, "UNKNOWN-1"])

    done = invoke_bulk(server, given.series_id, codes_file, "--retry-seconds", "0")

    assert done.returncode == 2
    assert "nothing was revoked" not in done.stderr
    assert (tmp_path / "codes.results.csv.journal").exists()
    assert series_counts(server, given.series_id) == {"REVOKED": 2}


def test_a_retry_time_that_is_not_a_number_is_refused_with_2(tmp_path: Path) -> None:
    # `nan` passed the option's range, and no deadline would ever end its retries
    codes_file = write_codes(tmp_path / "codes.txt", ["A1"])

    result = refused_offline(codes_file, "--retry-seconds", "nan")

    assert result.exit_code == 2, result.output
    assert "--retry-seconds must be a number of seconds" in result.output


def test_the_journal_stays_locked_while_the_results_are_written_from_it(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # released before, a second run with the same --results could truncate it mid-read
    from coupons.entrypoints.bulk_revoke import command
    from coupons.entrypoints.bulk_revoke.journal import JournalBusy

    given = given_series(server, 2)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    journal = tmp_path / "codes.results.csv.journal"
    second: list[str] = []
    original = getattr(command, "write_results")  # noqa: B009 - the name the run calls

    def write_results(*args: Any, **kwargs: Any) -> Any:
        try:
            Journal(journal, RunSpec(1, "other.txt", "x", None, "UPPER", False)).close()
            second.append("taken")
        except JournalBusy:
            second.append("busy")
        except JournalMismatch:  # it got in: only the header told it off
            second.append("taken")
        return original(*args, **kwargs)

    monkeypatch.setattr(command, "write_results", write_results)

    assert invoke_bulk(server, given.series_id, codes_file).returncode == 0
    assert second == ["busy"]
