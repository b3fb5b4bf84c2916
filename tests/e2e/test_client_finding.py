"""The client's finding calls offline: pages and cursors, the trail walked to its end, and
CSV exports streamed to a file, retried only before the first byte."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from coupons.client import (
    BasicAuth,
    CouponApiError,
    CouponApiUnavailable,
    CouponClient,
    RetryPolicy,
    Revocation,
)
from tests.e2e.test_client import Recorder, failure, ok

ROW = {
    "requestId": "r-1",
    "at": "2026-11-26T04:17:33.512044Z",
    "actor": "pos-1",
    "reason": "leak",
    "revokedCount": 50,
    "reinstatedCount": 2,
    "jobId": None,
}


def test_iter_revocations_follows_next_cursor_to_the_last_page() -> None:
    server = Recorder(
        ok({"revocations": [ROW], "nextCursor": "c1"}),
        ok({"revocations": [{**ROW, "requestId": "r-2", "jobId": "job_7"}], "nextCursor": None}),
    )

    with server.client() as client:
        rows = list(client.iter_revocations(actor="pos-1", since="2026-11-01"))

    assert [r.request_id for r in rows] == ["r-1", "r-2"]
    assert rows[0] == Revocation("r-1", ROW["at"], "pos-1", "leak", 50, 2, None)  # type: ignore[arg-type]
    assert rows[1].job_id == "job_7"
    first, second = server.requests
    assert first.url.params["actor"] == "pos-1" and "after" not in first.url.params
    assert second.url.params["after"] == "c1" and second.url.params["limit"] == "1000"


def test_pages_of_coupons_and_series_carry_their_cursor() -> None:
    coupon = {
        "couponId": 5,
        "couponCode": "A",
        "seriesId": 3,
        "state": "ISSUED",
        "issuedToUserId": 9,
    }
    series = {
        "id": 3, "description": "s", "clientHandlingType": "DISC_CODE", "genericCode": None,
        "validTill": "2030-01-01T00:00:00Z", "discountType": "ABS", "discountValue": 5,
        "expired": False, "counts": {"ISSUED": 1},
    }  # fmt: skip
    server = Recorder(
        ok({"coupons": [coupon], "nextCursor": "n"}),
        ok({"coupons": [], "nextCursor": None}),
        ok({"series": [series], "nextCursor": None}),
    )

    with server.client() as client:
        page = client.series_coupons(3, state="ISSUED", limit=1)
        found = client.search_coupons(code_prefix="abc", after="n")
        listed = client.list_series()

    assert page.items[0].coupon_code == "A" and page.next_cursor == "n"
    assert found.items == [] and found.next_cursor is None
    assert listed.items[0].counts == {"ISSUED": 1}
    assert server.requests[0].url.path == "/v2/coupon/series/3/coupons"
    assert server.requests[1].url.params["codePrefix"] == "abc"


def test_export_csv_streams_to_the_file_and_retries_a_refused_connection_first() -> None:
    server = Recorder(
        httpx.ConnectError("refused"),
        httpx.Response(200, content=b"couponId\r\n1\r\n", headers={"content-type": "text/csv"}),
    )
    out = io.BytesIO()

    with server.client() as client:
        written = client.export_csv("/v2/coupon/series/3/coupons.csv", out, {"state": "ISSUED"})

    assert (written, out.getvalue()) == (13, b"couponId\r\n1\r\n")
    assert len(server.sleeps) == 1
    assert server.requests[1].url.params["state"] == "ISSUED"


def test_export_csv_raises_the_envelopes_error_and_gives_up_after_its_attempts() -> None:
    refused = Recorder(failure(404, 707, "coupon series id is invalid"))
    down = Recorder(*[httpx.ConnectError("refused")] * 3)

    with refused.client() as client, pytest.raises(CouponApiError) as error:
        client.export_csv("/v2/coupon/series/9/coupons.csv", io.BytesIO())
    with down.client(attempts=3) as client, pytest.raises(CouponApiUnavailable):
        client.export_csv("/v2/coupon/series/9/coupons.csv", io.BytesIO())

    assert (error.value.code, error.value.http_status) == (707, 404)


JOB = {
    "jobId": "job_2",
    "kind": "REINSTATE",
    "state": "QUEUED",
    "dryRun": True,
    "createdBy": "ops",
    "createdAt": "2026-12-06T10:00:00Z",
    "total": 2,
    "processed": 0,
    "revokedCount": 0,
    "failedCount": 0,
    "undoOfJobId": "job_1",
}


@pytest.mark.parametrize(
    ("dry_run", "reason", "params"),
    [
        (False, None, {}),
        (True, None, {"dryRun": "true"}),
        (True, "leak fixed", {"dryRun": "true", "reason": "leak fixed"}),
    ],
)
def test_undo_revoke_job_sends_its_preview_and_reason_only_when_asked(
    dry_run: bool, reason: str | None, params: dict[str, str]
) -> None:
    server = Recorder(ok(JOB))

    with server.client() as client:
        job = client.undo_revoke_job("job_1", reason=reason, dry_run=dry_run)

    [sent] = server.requests
    assert (sent.method, sent.url.path) == ("POST", "/v2/coupon/revoke/jobs/job_1/undo")
    assert dict(sent.url.params) == params
    assert (job.job_id, job.dry_run, job.undo_of_job_id) == ("job_2", True, "job_1")


def _down_client(
    server: Recorder, retry: RetryPolicy, stop: threading.Event | None
) -> CouponClient:
    return CouponClient(
        "http://coupons.test",
        BasicAuth("u", "p"),
        transport=httpx.MockTransport(server),
        retry=retry,
        sleep=server.sleeps.append,
        stop=stop,
    )


def test_export_csv_retries_for_its_time_and_stops_when_told() -> None:
    # it counted tries only: under `for_seconds` (tries without end) it never gave up
    out_of_time = Recorder(*[httpx.ConnectError("refused")] * 50)
    stopped = Recorder(*[httpx.ConnectError("refused")] * 50)
    stop = threading.Event()
    stop.set()

    with (
        _down_client(out_of_time, RetryPolicy(attempts=sys.maxsize, deadline=0.0), None) as late,
        _down_client(stopped, RetryPolicy.for_seconds(3600), stop) as told,
    ):
        for client in (late, told):
            with pytest.raises(CouponApiUnavailable):
                client.export_csv("/v2/coupon/series/9/coupons.csv", io.BytesIO())

    assert len(out_of_time.requests) == len(stopped.requests) == 1


class _CutShort(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"line,code\r\n"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def test_a_job_report_cut_short_is_the_clients_own_error() -> None:
    # (the server cuts a report short when its database goes away mid-stream): httpx's own
    # error escaped, and `bulk-revoke --on-server` printed a traceback
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_CutShort())

    client = CouponClient(
        "http://coupons.test", BasicAuth("u", "p"), transport=httpx.MockTransport(server)
    )

    with client, pytest.raises(CouponApiUnavailable):
        b"".join(client.revoke_job_report("job_1"))
