"""A client that hangs up half-way through an upload is no server fault: no 500 counted, no
traceback logged, nothing of the upload kept."""

from __future__ import annotations

import socket
import time

import httpx
import structlog
from fastapi import FastAPI

from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.e2e.test_revoke_jobs import JOBS
from tests.reliability.live import threaded_server


def server_errors(base_url: str) -> float:
    """5xx answers the metrics have counted for the jobs route."""
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("coupons_http_requests_total{")
        and "/v2/coupon/revoke/jobs" in line
        and 'status="5' in line
    )


def hang_up_half_way(base_url: str, path: str, headers: dict[str, str], body: bytes) -> None:
    """POST `body` to `path` but send only its first half, then close the connection, and
    give the server a moment to notice."""
    host, port = base_url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.5)
    time.sleep(1.0)  # the server notices and gives up reading


def test_an_upload_cut_off_half_way_is_no_server_fault(
    app: FastAPI, api: Api, backend: Backend
) -> None:
    series_id = api.series(codes=["GONE-1"])
    body = b"".join(b"GONE-%06d\n" % n for n in range(20_000))
    with structlog.testing.capture_logs() as logs, threaded_server(app) as base_url:
        before = server_errors(base_url)
        # when a client sends the head and half the file, then hangs up
        hang_up_half_way(
            base_url,
            f"{JOBS}?couponSeriesId={series_id}",
            {"Authorization": api.creds.headers["Authorization"], "Content-Type": "text/plain"},
            body,
        )
        after = server_errors(base_url)

    # then nothing counts as a server error and nothing was logged as one
    assert after == before
    assert not [e for e in logs if e["log_level"] == "error"], logs
    assert any(e["event"] == "client went away before its request was read" for e in logs)
    # and no job is left of it
    assert api.ok(api.get(JOBS))["jobs"] == []
