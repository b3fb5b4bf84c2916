"""Two retries of one request racing with the same Idempotency-Key apply it once."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Credentials
from tests.e2e.conftest import Api

ROUNDS = 20


def test_the_same_key_sent_twice_at_once_revokes_once_and_answers_alike(
    app: FastAPI, api: Api, acme_admin: Credentials
) -> None:
    # Given issued coupons, and two clients that will send the same keyed revoke at once
    series_id = api.series()
    customer_id = api.customer("5550177")
    coupons = api.issue_many(series_id, customer_id, ROUNDS)
    clients = [Api(TestClient(app, raise_server_exceptions=False), acme_admin) for _ in range(2)]

    for round_number, coupon in enumerate(coupons):
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []
        body = {"couponSeriesId": series_id, "couponCodes": [coupon["couponCode"]]}
        headers = {"Idempotency-Key": f"race-{round_number}"}

        def send(
            client: Api,
            body: dict[str, object] = body,
            headers: dict[str, str] = headers,
            barrier: threading.Barrier = barrier,
            answers: list[httpx.Response] = answers,
        ) -> None:
            barrier.wait()
            answers.append(client.post("/v2/coupon/revoke", body, headers=headers))

        # When both are sent together
        racers = [threading.Thread(target=send, args=(c,)) for c in clients]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=30)

        # Then both succeed with the same bytes, and the coupon was revoked exactly once
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert answers[0].content == answers[1].content
        assert answers[0].json()["entity"]["revokedCoupons"][0]["couponId"] == coupon["couponId"]
        history = api.coupon(coupon["couponId"])["history"]
        assert [h["action"] for h in history] == ["ISSUE", "REVOKE"], round_number


def race(
    clients: list[Api],
    method: str,
    path: str,
    body: dict[str, Any],
    key: str,
    header: str = "Idempotency-Key",
) -> list[Any]:
    """Send one request from each client at the same moment, each with `key` in `header`;
    their answers."""
    barrier = threading.Barrier(len(clients))
    answers: list[httpx.Response] = []

    def send(client: Api) -> None:
        barrier.wait()
        answers.append(client.request(method, path, json=body, headers={"Idempotency-Key": key}))

    racers = [threading.Thread(target=send, args=(c,)) for c in clients]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    return answers


def test_a_redeem_and_a_reactivate_sent_twice_at_once_apply_once_and_answer_alike(
    app: FastAPI, api: Api, acme_admin: Credentials
) -> None:
    # Given issued coupons, and two clients that will send the same keyed calls at once
    series_id = api.series()
    customer_id = api.customer("5550178")
    coupons = api.issue_many(series_id, customer_id, ROUNDS // 2)
    clients = [Api(TestClient(app, raise_server_exceptions=False), acme_admin) for _ in range(2)]

    for n, coupon in enumerate(coupons):
        # When a redeem is sent twice at once, then a reactivate of what it redeemed
        redeem = {
            "customer": {"id": customer_id},
            "transactionNumber": f"T-{n}",
            "billAmount": 10,
            "redemptionRequestList": [{"code": coupon["couponCode"]}],
        }
        redeemed = race(clients, "POST", "/v2/coupon/redeem", redeem, f"redeem-race-{n}")
        # Then neither is told the redeem failed: both get the one answer, which happened once
        assert [a.status_code for a in redeemed] == [200, 200], [a.text for a in redeemed]
        assert redeemed[0].content == redeemed[1].content
        [redemption] = redeemed[0].json()["entity"]["redemptions"]
        reactivate = {"redemptionIds": [redemption["redemptionId"]]}
        again = race(clients, "PATCH", "/v2/coupon/reactivate", reactivate, f"reactivate-race-{n}")
        assert [a.status_code for a in again] == [200, 200], [a.text for a in again]
        assert again[0].content == again[1].content
        history = api.coupon(coupon["couponId"])["history"]
        assert [h["action"] for h in history] == ["ISSUE", "REDEEM", "REACTIVATE"], n


def test_two_revokes_sent_at_once_under_one_request_id_get_a_trail_row_each(
    app: FastAPI, api: Api, acme_admin: Credentials, acme_agent: Credentials
) -> None:
    # Given coupons, and two clients that will send revokes under one X-Request-Id at once
    series_id = api.series(codes=[f"RID-{n}" for n in range(2 * (ROUNDS // 2))])
    clients = [
        Api(TestClient(app, raise_server_exceptions=False), creds)
        for creds in (acme_admin, acme_agent)
    ]
    for n in range(ROUNDS // 2):
        request_id = f"shared-at-once-{n}"
        barrier = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def send(
            client: Api,
            code: str,
            barrier: threading.Barrier = barrier,
            answers: list[httpx.Response] = answers,
            request_id: str = request_id,
        ) -> None:
            barrier.wait()
            body = {"couponSeriesId": series_id, "couponCodes": [code]}
            answers.append(client.revoke_with(body, {"X-Request-Id": request_id}))

        codes = [f"RID-{2 * n}", f"RID-{2 * n + 1}"]
        racers = [
            threading.Thread(target=send, args=pair) for pair in zip(clients, codes, strict=True)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=30)

        # Then both revoked, under two ids (one of them the client's), one trail row each
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        ids = {a.headers["x-request-id"] for a in answers}
        assert request_id in ids and len(ids) == 2
    rows = api.ok(api.get("/v2/coupon/revocations", params={"limit": 1000}))["revocations"]
    assert len(rows) == len({r["requestId"] for r in rows}) == 2 * (ROUNDS // 2)
