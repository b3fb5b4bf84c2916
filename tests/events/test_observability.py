"""GET /metrics and the JSON logs: what operators see."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coupons.entrypoints import job_worker
from coupons.entrypoints.http.metrics import configure_logging
from coupons.entrypoints.job_worker import JobWorkerOptions
from tests.conftest import PASSWORD, Backend
from tests.e2e.conftest import Api
from tests.events.conftest import subscribe
from tests.reliability.live import ServerProcess


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_by_route_template_and_committed_changes_by_kind(
    api: Api, client: TestClient
) -> None:
    # given a coupon to revoke, and the counters before
    series_id = api.series(codes=["MET1"])
    coupon = api.issue(series_id, api.customer("555-0301"))
    before = _samples(client)
    body = {"couponSeriesId": series_id, "couponCodes": ["MET1"]}

    # when it is revoked in a dry run, then for real, and read back
    api.ok(api.revoke(body, dryRun="true"))
    api.ok(api.revoke(body))
    api.coupon(coupon["couponId"])
    after = _samples(client)

    # then one committed revoke is counted (not the dry run), and routes appear as templates
    changes = "coupons_state_changes_total"
    assert _value(after, changes, kind="revoke") - _value(before, changes, kind="revoke") == 1
    requests = "coupons_http_requests_total"
    revoke = {"method": "POST", "route": "/v2/coupon/revoke", "status": "200"}
    assert _value(after, requests, **revoke) - _value(before, requests, **revoke) == 2
    read = {"method": "GET", "route": "/v2/coupon/{couponId}", "status": "200"}
    assert _value(after, requests, **read) - _value(before, requests, **read) == 1
    latency = "coupons_http_request_duration_seconds_count"
    assert _value(after, latency, method="POST", route="/v2/coupon/revoke") >= 2


def test_the_changes_of_a_revoke_job_and_its_undo_are_counted_too(
    api: Api, client: TestClient, backend: Backend
) -> None:
    # given three issued coupons, and the counters before
    from tests.e2e.test_revoke_jobs import JOBS, accepted, job_of, upload

    def finished(api: Api, job_id: str) -> None:
        deadline = time.monotonic() + 20
        while job_of(api, job_id)["state"] != "SUCCEEDED":
            assert time.monotonic() < deadline, job_of(api, job_id)
            time.sleep(0.05)

    series_id = api.series(codes=["MJ1", "MJ2", "MJ3"])
    api.issue_many(series_id, api.customer("555-0303"), 3)
    before = _samples(client)
    changes = "coupons_state_changes_total"

    # when a job revokes them, run by the worker `coupons serve` starts beside the API (with
    # its own connections), and then undoes them
    worker, thread = job_worker.start_in_background(
        backend.url, JobWorkerOptions(poll_interval=0.05)
    )
    try:
        job = accepted(upload(api, "MJ1\nMJ2\nMJ3\n", couponSeriesId=series_id))
        finished(api, job["jobId"])
        undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
        finished(api, undo["jobId"])
    finally:
        worker.stop()
        thread.join(timeout=20)
    after = _samples(client)

    # then /metrics counts three revokes and three reinstates
    assert _value(after, changes, kind="revoke") - _value(before, changes, kind="revoke") == 3
    delta = _value(after, changes, kind="reinstate") - _value(before, changes, kind="reinstate")
    assert delta == 3


def test_outbox_lag_is_reported_per_subscription(api: Api, client: TestClient) -> None:
    # given a subscription with an undelivered event and no worker running
    hook = subscribe(api, "http://127.0.0.1:9/never")
    api.issue(api.series(codes=["LAG1"]), api.customer("555-0302"))

    # then its lag is a number of seconds, labelled with the subscription
    samples = _samples(client)
    lag = _value(samples, "coupons_outbox_lag_seconds", webhook=str(hook["id"]), status="ACTIVE")
    assert (
        "coupons_outbox_lag_seconds",
        (("status", "ACTIVE"), ("webhook", str(hook["id"]))),
    ) in samples
    assert 0 <= lag < 60


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    yield stream
    configure_logging("INFO")


def test_every_log_line_is_json_with_the_request_id_and_no_secret(
    api: Api, log_lines: io.StringIO
) -> None:
    # when a request with a known id fails authentication, and one succeeds
    api.client.get(
        "/v2/webhooks", headers={"X-Request-Id": "req-obs-1"}, auth=("acme-admin", "wrong-pass-7Q")
    )
    created = api.post(
        "/v2/webhooks", {"url": "https://example.test/x"}, headers={"X-Request-Id": "req-obs-2"}
    )
    secret = api.ok(created)["secret"]

    # then each line is JSON carrying its request id, and no credential appears
    lines = [orjson.loads(line) for line in log_lines.getvalue().splitlines()]
    assert {line["request_id"] for line in lines} >= {"req-obs-1", "req-obs-2"}
    assert all(line.get("request_id") for line in lines)
    text = log_lines.getvalue()
    assert PASSWORD not in text and "wrong-pass-7Q" not in text and secret not in text


def test_metrics_need_no_credentials(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert "coupons_http_requests_total" in response.text


def test_the_access_log_of_an_unmatched_request_names_its_path(
    api: Api, log_lines: io.StringIO
) -> None:
    # when a path no route serves is requested, and a known one
    api.get("/v2/no-such-thing", headers={"X-Request-Id": "req-obs-404"})
    api.get("/v2/events", headers={"X-Request-Id": "req-obs-200"})

    # then the unmatched request's line carries the path (its metric label stays bounded)
    lines = {
        line["request_id"]: line
        for line in map(orjson.loads, log_lines.getvalue().splitlines())
        if line.get("event") == "request"
    }
    assert lines["req-obs-404"]["route"] == "unmatched"
    assert lines["req-obs-404"]["path"] == "/v2/no-such-thing"
    assert lines["req-obs-404"]["status"] == 404
    assert lines["req-obs-200"]["route"] == "/v2/events" and "path" not in lines["req-obs-200"]


def test_every_line_coupons_serve_writes_is_json_the_servers_own_too(tmp_path: Path) -> None:
    # the ASGI server's start and stop lines came out in its console format, among the JSON
    server = ServerProcess(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "serve.log", workers=2)
    server.start()
    try:
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
    finally:
        server.stop()

    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if line.strip()]
    events = [orjson.loads(line) for line in lines]  # each one parses
    assert any(e.get("logger", "").startswith("uvicorn") for e in events)
    assert any(e.get("event") == "request" and e.get("route") == "/health" for e in events)
    assert all({"event", "level", "timestamp"} <= e.keys() for e in events)


def test_the_servers_own_lines_follow_the_log_level(tmp_path: Path) -> None:
    # at WARNING, the start and stop lines (info) had still been written
    server = ServerProcess(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "serve.log")
    server.start({"COUPONS_LOG_LEVEL": "warning"})
    try:
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
    finally:
        server.stop()

    text = (tmp_path / "serve.log").read_text()
    assert "Started server process" not in text and "Shutting down" not in text
    assert '"route": "/health"' not in text  # the request line is info too


def test_a_console_request_is_counted_under_its_whole_path(client: TestClient) -> None:
    # The console is an app mounted at /console: its routes know only the path below it
    before = _samples(client)

    assert client.get("/console/signin").status_code == 200

    after = _samples(client)
    requests = "coupons_http_requests_total"
    signin = {"method": "GET", "route": "/console/signin", "status": "200"}
    assert _value(after, requests, **signin) - _value(before, requests, **signin) == 1
    assert _value(after, requests, method="GET", route="/signin", status="200") == 0


def test_a_made_up_method_is_counted_as_other_not_under_a_label_of_its_own(
    client: TestClient,
) -> None:
    before = _samples(client)

    # when requests come with methods nobody uses
    for method in ("FOOBAR", "X-PROBE-1", "X-PROBE-2"):
        assert client.request(method, "/health").status_code == 405

    # then they are counted together, and no series is named after any of them
    after = _samples(client)
    requests = "coupons_http_requests_total"
    other = {"method": "other", "route": "/health", "status": "405"}
    assert _value(after, requests, **other) - _value(before, requests, **other) == 3
    assert not any("FOOBAR" in key or "X-PROBE" in key for key in map(str, after))


def test_a_console_static_file_is_counted_under_its_mount(client: TestClient) -> None:
    before = _samples(client)

    assert client.get("/console/static/console.css").status_code == 200

    after = _samples(client)
    static = {"method": "GET", "route": "/console/static", "status": "200"}
    assert (
        _value(after, "coupons_http_requests_total", **static)
        - _value(before, "coupons_http_requests_total", **static)
        == 1
    )


def test_a_log_line_goes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    # (a stream bound when logging was set up may be closed since: a test runner's capture;
    # the stall watch's thread died writing to one, and with it every later cut)
    import sys
    import threading

    import structlog

    # given logging set up while stderr was a stream that is closed since
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO")
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)

    # when a background thread logs
    thread = threading.Thread(target=lambda: structlog.get_logger("t").warning("still here"))
    thread.start()
    thread.join()

    # then the line reaches stderr as it is now
    assert '"event": "still here"' in now.getvalue()
