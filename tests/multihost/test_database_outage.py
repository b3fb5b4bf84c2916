"""The database going away under load (spec §10): 503s with `Retry-After`, never a 500,
nothing half-written, and recovery without a restart once the database is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.e2e.conftest import Api
from tests.multihost.cluster import Cluster
from tests.multihost.conftest import TOKEN_SECRET, ServiceDatabase
from tests.multihost.load import SCRIPT, Load
from tests.reliability.live import threaded_server

COUPONS = 60
RECOVERY_SECONDS = 5.0


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def health(base_url: str) -> httpx.Response:
    return httpx.get(f"{base_url}/health", timeout=10)


def test_a_database_restart_under_load_gives_503s_with_retry_after_and_recovers_by_itself(
    cluster: Cluster, service_database: ServiceDatabase
) -> None:
    # given a server on the throwaway cluster, and coupons issued to a customer
    app = create_app(Settings(database_url=service_database.url, token_secret=TOKEN_SECRET))
    with threaded_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        api = Api(http, service_database.admin)
        series_id = api.series()
        customer_id = api.customer("+1 555 0100")
        issued = api.issue_many(series_id, customer_id, COUPONS)
        ids = {c["couponCode"].upper(): int(c["couponId"]) for c in issued}
        codes = list(ids)

        # when revokes, reinstates and redeems run from four threads with idempotency keys,
        # and PostgreSQL stops in the middle of them
        load = Load([base_url], service_database.admin, series_id, customer_id, codes)
        threads = load.start()
        load.wait_for_steps(20)
        cluster.stop("fast")
        wait_until(lambda: load.seen.statuses[503] >= 8, 15, "503s while the database is down")
        down = health(base_url)

        # and starts again, with the server left running
        cluster.start()
        back_in = wait_until(lambda: health(base_url).status_code == 200, 30, "health back")
        steps = load.steps_done
        serving_in = back_in + wait_until(
            lambda: load.steps_done >= steps + 10, 30, "requests succeeding again"
        )
        for thread in threads:
            thread.join(60)

        # then while it was down requests and /health got 503 with 9023 and Retry-After
        assert down.status_code == 503
        assert down.json()["errors"][0]["code"] == 9023
        assert down.headers["Retry-After"].isdigit()
        assert load.seen.bad_503s == []
        # and never anything but 200 or 503 (no 500)
        assert set(load.seen.statuses) == {200, 503}, load.seen.statuses
        assert load.seen.unexpected == []
        # and the service recovered by itself within seconds of the database returning
        assert serving_in < RECOVERY_SECONDS, serving_in
        # and every step was acknowledged once and applied once: each coupon's history is
        # its issue plus exactly the script, in order
        assert all(load.seen.acknowledged.get(code) == list(SCRIPT) for code in codes)
        for code in codes:
            coupon = api.coupon(ids[code])
            assert coupon["state"] == "REDEEMED"
            assert [h["action"] for h in coupon["history"]] == [
                "ISSUE",
                *(action.upper() for action in SCRIPT),
            ]


CUT_OFF_LIMIT_S = 2  # the URL's stall_timeout in the test below
# The stall limit, the watch's half-second scan, then one fresh connection attempt that
# meets the same silence (`connect_timeout`, 5 s), with room for a loaded machine.
CUT_OFF_ANSWER_S = 14.0


def test_a_database_cut_off_mid_request_gives_503s_within_seconds_and_a_retry_applies_once(
    cluster: Cluster, service_database: ServiceDatabase
) -> None:
    # given a server whose statements may go 2 s without an answer, and three issued coupons
    url = f"{service_database.url}?stall_timeout={CUT_OFF_LIMIT_S}"
    app = create_app(Settings(database_url=url, token_secret=TOKEN_SECRET))
    with threaded_server(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        api = Api(http, service_database.admin)
        series_id = api.series()
        customer_id = api.customer("+1 555 0101")
        issued = api.issue_many(series_id, customer_id, 3)
        code = issued[0]["couponCode"]
        key = {"Idempotency-Key": "cut-off-revoke-1"}
        body = {"couponCodes": [code], "reason": "leaked"}

        # when the database stops answering without closing a connection (a network cut)
        cluster.freeze()
        answers: dict[str, tuple[httpx.Response, float]] = {}

        def call(name: str, send: Callable[[httpx.Client], httpx.Response]) -> None:
            started = time.monotonic()
            with httpx.Client(base_url=base_url, timeout=60) as own:
                answers[name] = (send(own), time.monotonic() - started)

        calls = {
            "health": lambda c: c.get("/health"),
            "revoke": lambda c: c.post(
                "/v2/coupon/revoke", json=body, headers={**api.creds.headers, **key}
            ),
            "list": lambda c: c.get("/v2/coupon/series", headers=api.creds.headers),
        }
        threads = [threading.Thread(target=call, args=item) for item in calls.items()]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            cluster.thaw()

        # then each of them, /health too, got 9023 with Retry-After within seconds
        for name, (response, took) in answers.items():
            assert response.status_code == 503, (name, response.text)
            assert response.json()["errors"][0]["code"] == 9023, name
            assert response.headers["Retry-After"].isdigit(), name
            assert CUT_OFF_LIMIT_S <= took < CUT_OFF_ANSWER_S, (name, took)
        assert set(answers) == set(calls)

        # and once the database answers again, the service does too, without a restart
        wait_until(lambda: health(base_url).status_code == 200, RECOVERY_SECONDS, "health back")
        # and the revoke retried with its key applies once
        retried = api.revoke_with(body, key)
        assert retried.status_code == 200, retried.text
        assert [c["couponCode"] for c in retried.json()["entity"]["revokedCoupons"]] == [code]
        history = api.coupon(int(issued[0]["couponId"]))["history"]
        assert [h["action"] for h in history] == ["ISSUE", "REVOKE"]
        # and nothing else changed
        for other in issued[1:]:
            assert api.coupon(int(other["couponId"]))["state"] == "ISSUED"
