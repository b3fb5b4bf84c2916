"""Two retries of one request racing with the same Idempotency-Key apply it once."""

from __future__ import annotations

import threading

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
