"""Revoke jobs against real processes, on SQLite and PostgreSQL: `coupons revoke --on-server`,
a `coupons worker` killed with SIGKILL mid-job and restarted, and the memory of an upload."""

from __future__ import annotations

import base64
import csv
import io
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from coupons.adapters.db import create_db_engine
from coupons.client import CouponClient, RevokeJob
from coupons.entrypoints.cli import app as cli_app
from tests.conftest import scratch_postgres
from tests.e2e.test_bulk_revoke import (
    COUPONS,
    PASSWORD,
    USERNAME,
    Server,
    _cli,
    free_port,
    given_series,
    write_codes,
)


class JobServer(Server):
    """`coupons serve` without its own job worker, so tests choose who runs jobs."""

    def start(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [*COUPONS, "serve", "--port", str(self.port), "--db", self.db_url, "--no-jobs"],
            stdout=log,
            stderr=subprocess.STDOUT,
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


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str | None,
) -> Iterator[JobServer]:
    workdir = tmp_path_factory.mktemp(f"jobs-{request.param}")
    with ExitStack() as cleanup:
        if request.param == "sqlite":
            db_url = f"sqlite:///{workdir / 'coupons.db'}"
        else:
            if postgres_admin_url is None:
                pytest.skip("PostgreSQL not reachable")
            db_url = cleanup.enter_context(scratch_postgres(postgres_admin_url, "coupons_jobs"))
        _cli("db", "upgrade", "--db", db_url)
        _cli("org", "create", "bulk-org", "--db", db_url)
        _cli(
            "client", "create", "--org", "bulk-org", "--username", USERNAME, "--password", PASSWORD,
            "--groups", "default,coupon_admin", "--db", db_url,
        )  # fmt: skip
        srv = JobServer(db_url=db_url, port=free_port(), workdir=workdir)
        srv.start()
        cleanup.callback(srv.kill)
        yield srv


def start_worker(server: Server, *extra: str) -> subprocess.Popen[bytes]:
    log = (server.workdir / "worker.log").open("ab")
    return subprocess.Popen(
        [*COUPONS, "worker", "--db", server.db_url, "--poll-interval", "0.1", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(api: CouponClient, job_id: str, done: bool, at_least: int = 0) -> RevokeJob:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = api.revoke_job(job_id)
        if job.is_finished if done else job.processed >= at_least:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there: {job}")


def report_rows(api: CouponClient, job_id: str) -> list[list[str]]:
    body = b"".join(api.revoke_job_report(job_id)).decode()
    return list(csv.reader(io.StringIO(body)))[1:]


def test_a_worker_killed_mid_job_is_resumed_by_another_exactly_once(
    server: JobServer, tmp_path: Path
) -> None:
    # given 6,000 codes (2 redeemed, 3 revoked before) with unknown and repeated lines
    given = given_series(server, 6_000, redeemed=2, revoked=3)
    lines = [*given.codes, "NO-SUCH-1", given.codes[0], "NO-SUCH-2"]
    codes_file = write_codes(tmp_path / "codes.txt", lines)
    with server.client() as api:
        job = api.start_revoke_job(codes_file, series_id=given.series_id, reason="kill test")
        # when a worker with small chunks has done part of it and is killed with SIGKILL
        first = start_worker(server, "--chunk-size", "100", "--job-lease-seconds", "2")
        try:
            partway = wait_for(api, job.job_id, done=False, at_least=1_000)
        finally:
            first.kill()
            first.wait(timeout=30)
        stopped = api.revoke_job(job.job_id)
        assert partway.processed <= stopped.processed < stopped.total
        # and another worker starts once the dead one's lease has run out
        second = start_worker(server, "--chunk-size", "700", "--job-lease-seconds", "2")
        try:
            done = wait_for(api, job.job_id, done=True)
        finally:
            second.terminate()
            second.wait(timeout=30)
        # then the job finished with every line counted once
        assert done.state == "SUCCEEDED" and done.processed == done.total == 6_003
        assert (done.revoked_count, done.duplicate_count) == (5_995, 1)
        assert done.failed_by_code == {405: 2, 682: 5}
        rows = report_rows(api, job.job_id)
    assert [r[0] for r in rows] == [c.upper() for c in lines]
    assert Counter(r[1] for r in rows) == {
        "revoked": 5_995,
        "redeemed": 2,
        "already_revoked": 3,
        "not_found": 2,
        "duplicate_in_file": 1,
    }
    # and each coupon was revoked once: one history row per revoked line, under the job's id
    engine = create_db_engine(server.db_url, null_pool=True)
    with engine.connect() as conn:
        revokes = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT coupon_id) FROM coupon_history "
                "WHERE request_id = :job AND action = 'REVOKE'"
            ),
            {"job": job.job_id},
        ).one()
        finished = conn.execute(
            text(
                "SELECT count(*) FROM coupon_history WHERE request_id = :job AND coupon_id IS NULL"
            ),
            {"job": job.job_id},
        ).scalar_one()
    engine.dispose()
    assert tuple(revokes) == (5_995, 5_995)
    assert finished == 1


def test_a_worker_stopped_with_sigterm_gives_its_job_back_at_once(
    server: JobServer, tmp_path: Path
) -> None:
    # given a job being run by a worker whose lease (120 s) would outlast the test
    given = given_series(server, 3_000)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    with server.client() as api:
        job = api.start_revoke_job(codes_file, series_id=given.series_id, reason="term test")
        first = start_worker(server, "--chunk-size", "100", "--job-lease-seconds", "120")
        try:
            wait_for(api, job.job_id, done=False, at_least=300)
        finally:
            # when it is stopped the polite way
            first.terminate()
            code = first.wait(timeout=30)
        # then it exits cleanly, its last chunk committed and the lease given back
        stopped = api.revoke_job(job.job_id)
        engine = create_db_engine(server.db_url, null_pool=True)
        with engine.connect() as conn:
            claimed_by, lease_until = conn.execute(
                text("SELECT claimed_by, lease_until FROM revoke_jobs WHERE id = :id"),
                {"id": job.job_id},
            ).one()
        engine.dispose()
        assert code == 0
        assert claimed_by is None and lease_until is None
        assert 300 <= stopped.processed < stopped.total and stopped.processed % 100 == 0
        # and another worker finishes it at once, not after the 120 s lease
        second = start_worker(server, "--chunk-size", "500")
        started = time.monotonic()
        try:
            done = wait_for(api, job.job_id, done=True)
        finally:
            second.terminate()
            second.wait(timeout=30)
    assert time.monotonic() - started < 60
    assert done.state == "SUCCEEDED" and done.processed == done.total == 3_000
    assert done.revoked_count == 3_000


def test_coupons_revoke_on_server_uploads_watches_and_downloads_the_report(
    server: JobServer, tmp_path: Path
) -> None:
    given = given_series(server, 300, redeemed=1)
    codes_file = write_codes(tmp_path / "codes.txt", [*given.codes, "NOPE"])
    args = [
        "revoke", "--on-server", "--series", str(given.series_id), "--codes-file",
        str(codes_file), "--url", server.url, "--username", USERNAME, "--password", PASSWORD,
        "--reason", "cli job",
    ]  # fmt: skip
    worker = start_worker(server)
    try:
        result = CliRunner().invoke(cli_app, args)
        # a rerun of the same command watches the same job (its idempotency key) again
        again = CliRunner().invoke(cli_app, args)
        # and once that job has been undone, a rerun says so instead of reporting success
        with server.client() as api:
            undo = api.undo_revoke_job(result.stderr.split()[1].rstrip(":"))
            while not api.revoke_job(undo.job_id).is_finished:
                time.sleep(0.1)
        undone = CliRunner().invoke(cli_app, args)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert undone.exit_code == 2, undone.output
    assert f"was undone by job {undo.job_id}" in " ".join(undone.stderr.split())
    assert result.exit_code == 1, result.output
    assert "299" in result.stdout and "301 of 301" in result.stdout
    rows = list(csv.DictReader((tmp_path / "codes.results.csv").open()))
    assert Counter(r["outcome"] for r in rows) == {"revoked": 299, "redeemed": 1, "not_found": 1}
    assert again.exit_code == 1 and result.stderr.split()[1] == again.stderr.split()[1]
    with server.client() as api:
        # the newest is the undo, then the job the command made
        listed = [j.job_id for j in api.revoke_jobs()]
        assert listed[:2] == [undo.job_id, result.stderr.split()[1].rstrip(":")]
        # and the client pages the list: one job a page, every job once
        seen, after = [], None
        while True:
            page = api.revoke_job_page(limit=1, after=after)
            seen += [j.job_id for j in page.items]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert seen == [j.job_id for j in api.revoke_jobs()]


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_million_code_upload_does_not_grow_the_server_by_more_than_a_few_tens_of_mb(
    server: JobServer, tmp_path: Path
) -> None:
    # given a 1,000,000-line codes file (about 12 MB) and a warmed-up server
    codes_file = tmp_path / "million.txt"
    with codes_file.open("w") as handle:
        handle.writelines(f"MILLION{i:07d}\n" for i in range(1_000_000))
    assert server.process is not None
    pid = server.process.pid
    with server.client() as api:
        api.revoke_jobs()
        # Reset the peak to now: start-up (migrations, imports) peaked higher than serving.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = rss_kib(pid, "VmRSS")
        # when it is uploaded as a dry run (streamed from disk by the client)
        job = api.start_revoke_job(codes_file, dry_run=True)
        peak = rss_kib(pid, "VmHWM")
        assert job.total == 1_000_000
        api.cancel_revoke_job(job.job_id)
    # then the server's peak resident memory grew by less than 40 MB
    grown_mb = (peak - before) / 1024
    print(f"\nserver RSS before {before / 1024:.0f} MB, peak {peak / 1024:.0f} MB")
    assert grown_mb < 40, f"the upload grew the server by {grown_mb:.0f} MB"


def test_fifty_stalled_uploads_leave_every_other_call_answering_at_once(server: JobServer) -> None:
    # given fifty uploads that sent their headers and a first line, then stopped sending
    series_id = given_series(server, 3).series_id
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    head = (
        f"POST /v2/coupon/revoke/jobs?couponSeriesId={series_id}&dryRun=true HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Basic {token}\r\nContent-Type: text/plain\r\n"
        "Content-Length: 1000000\r\n\r\nK-001\n"
    ).encode()
    with ExitStack() as stalled:
        for _ in range(50):
            connection = stalled.enter_context(socket.create_connection(("127.0.0.1", server.port)))
            connection.sendall(head)
        time.sleep(1.0)

        # when other callers come meanwhile, one of them with an upload of its own
        health = httpx.get(f"{server.url}/health", timeout=10)
        with server.client() as api:
            listed = api.revoke_jobs()
        upload = httpx.post(
            f"{server.url}/v2/coupon/revoke/jobs",
            params={"couponSeriesId": series_id, "dryRun": "true"},
            content=b"K-001\nK-002\n",
            headers={"Authorization": f"Basic {token}", "Content-Type": "text/plain"},
            timeout=10,
        )

    # then they were answered at once (forty stalled uploads used to take every worker
    # thread, and these calls waited for as long as the uploads did; uploads queued behind
    # stalled ones waited too)
    assert health.status_code == 200
    assert isinstance(listed, list)
    assert upload.status_code == 202, upload.text


@pytest.mark.parametrize("megabytes", [3, 6])
def test_a_client_that_writes_a_too_large_body_before_reading_gets_the_413(
    server: JobServer, megabytes: int
) -> None:
    # given a request whose whole body is written before the answer is read, as most HTTP
    # libraries do
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    body = b"[" + b"1," * (megabytes * 512 * 1024) + b"1]"
    head = (
        f"POST /v2/coupon/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            connection.sendall(head + body)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk

        # then it reads the 413 envelope, not a reset connection
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":9013' in answer


def _read_all(connection: socket.socket) -> bytes:
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def test_a_codes_file_over_its_limit_written_before_reading_gets_the_413(
    server: JobServer,
) -> None:
    # given an upload declared at 65 MiB, written whole before the answer is read
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    body = b"K-001\n" * (65 * 1024 * 1024 // 6 + 1)
    head = (
        "POST /v2/coupon/revoke/jobs?couponSeriesId=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Basic {token}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head + body)
        answer = _read_all(connection)

    # then it reads the 413 envelope, not a reset connection
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":9013' in answer


def test_a_chunked_body_sent_after_100_continue_past_the_limit_gets_the_413(
    server: JobServer,
) -> None:
    # given a client that waits for 100 Continue, then writes 5 MiB in chunks before reading
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    head = (
        "POST /v2/coupon/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    piece = b"1," * 32 * 1024
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head)
        assert connection.recv(65536).startswith(b"HTTP/1.1 100")
        connection.sendall(chunk * 80 + b"0\r\n\r\n")
        answer = _read_all(connection)

    # then it reads the 413 envelope, not a reset connection
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":9013' in answer


def test_a_server_stopped_mid_job_gives_the_job_back_at_once(
    server: JobServer, tmp_path: Path
) -> None:
    # given a big job run by the job worker of a second `coupons serve` on the same database
    # (one worker process on SQLite, two on PostgreSQL: uvicorn stops the two ways apart)
    workers = 1 if server.db_url.startswith("sqlite") else 2
    given = given_series(server, 20_000)
    codes_file = write_codes(tmp_path / "codes.txt", given.codes)
    if server.db_url.startswith("postgresql"):
        # What autovacuum does within a minute of the load (the test server runs without
        # it): planned on no statistics, each chunk's lookup scans the whole org.
        _execute(server.db_url, "ANALYZE coupons")
    port = free_port()
    log = (tmp_path / "serving.log").open("ab")
    serving = subprocess.Popen(
        [*COUPONS, "serve", "--port", str(port), "--db", server.db_url,
         "--workers", str(workers), "--no-worker"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/health"):
            assert time.monotonic() < deadline and serving.poll() is None, "serve did not start"
            time.sleep(0.2)
        with server.client() as api:
            job = api.start_revoke_job(codes_file, series_id=given.series_id, reason="deploy")

            # when that server is stopped (SIGTERM, as a service manager does) mid-job
            partway = wait_for(api, job.job_id, done=False, at_least=500)
            serving.terminate()
            serving.wait(timeout=60)
            stopped = api.revoke_job(job.job_id)
            assert not stopped.is_finished, "the job ended before the server was stopped"
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait(timeout=30)

    # then it gave its lease back on the way out
    holder = _execute(
        server.db_url, f"SELECT claimed_by FROM revoke_jobs WHERE id = '{job.job_id}'"
    )
    assert holder is None
    assert partway.processed <= stopped.processed
    # and a worker started now takes it up well within the 30 s lease it would have waited
    # out (timed to its first chunk: the rest of the run depends on how loaded the machine is)
    started = time.monotonic()
    worker = start_worker(server)
    try:
        with server.client() as api:
            wait_for(api, job.job_id, done=False, at_least=stopped.processed + 1)
            taken_up = time.monotonic() - started
            done = wait_for(api, job.job_id, done=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert done.state == "SUCCEEDED" and done.revoked_count == 20_000
    assert taken_up < 20


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _execute(db_url: str, sql: str) -> object:
    """Run one statement on the database; the first column of its first row, if any."""
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()
