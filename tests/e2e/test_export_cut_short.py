"""An export whose database goes away after the answer began ends the body early, so the
client sees an incomplete download, and the server logs one warning, no traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from coupons.domain import errors
from coupons.entrypoints.http import finding_routes
from coupons.services import finding
from tests.e2e.conftest import Api
from tests.reliability.live import threaded_server


def test_an_export_cut_short_by_the_database_ends_early_with_one_warning(
    app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given a series of 9 coupons, exported 2 rows a page, whose later pages meet an outage
    series_id = api.series(codes=[f"CUT-{n}" for n in range(9)])
    monkeypatch.setattr(finding_routes, "EXPORT_PAGE", 2)
    real = finding.series_coupons

    def failing(*args: Any) -> Any:
        if args[-1] is not None:  # a page after the first (it has a cursor)
            raise errors.DatabaseUnavailable(2)
        return real(*args)

    monkeypatch.setattr(finding, "series_coupons", failing)

    # when a client downloads it over a real connection
    path = f"/v2/coupon/series/{series_id}/coupons.csv"
    with (
        structlog.testing.capture_logs() as logs,
        threaded_server(app) as base_url,
        httpx.Client(base_url=base_url, headers=api.creds.headers, timeout=20) as http,
        http.stream("GET", path) as answer,
    ):
        status = answer.status_code
        with pytest.raises(httpx.RemoteProtocolError):
            answer.read()

    # then the answer began well and its body ended early, never looking whole
    assert status == 200
    # and the server logged the cut once as a warning, with no error or traceback of its own
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "export cut short: the database became unavailable"
    ]
    assert not [e for e in logs if e["log_level"] == "error"]
    assert "Traceback" not in caplog.text
