"""A coupon revoked and redeemed at the same moment ends in one state, and both answers say so."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Credentials
from tests.e2e.conftest import Api

ROUNDS = 6


def race(
    first: Callable[[], httpx.Response], second: Callable[[], httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """Send two requests from two threads released at the same instant."""
    start = threading.Barrier(2)
    answers: list[httpx.Response | None] = [None, None]

    def run(index: int, call: Callable[[], httpx.Response]) -> None:
        start.wait()
        answers[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers[0] is not None and answers[1] is not None
    return answers[0], answers[1]


def test_concurrent_revoke_and_redeem_of_one_coupon_agree_on_the_winner(
    api: Api, app: FastAPI, acme_admin: Credentials, acme_agent: Credentials
) -> None:
    # Given coupons issued to one customer
    series_id = api.series()
    customer_id = api.customer("555-0101")
    issued = api.issue_many(series_id, customer_id, ROUNDS)
    revoker = Api(TestClient(app, raise_server_exceptions=False), acme_admin)
    redeemer = Api(TestClient(app, raise_server_exceptions=False), acme_agent)

    for coupon in issued:
        # When one client revokes and another redeems the same coupon at the same moment
        code = coupon["couponCode"]
        revoke_answer, redeem_answer = race(
            partial(revoker.revoke, {"couponSeriesId": series_id, "couponCodes": [code]}),
            partial(redeemer.redeem, customer_id, code),
        )
        answers = {"revoke": revoke_answer, "redeem": redeem_answer}

        # Then exactly one of them won, and each answer tells the truth about which
        revoked: dict[str, Any] = api.ok(answers["revoke"])
        state = api.coupon(coupon["couponId"])["state"]
        if revoked["revokedCoupons"]:
            assert state == "REVOKED"
            assert answers["redeem"].status_code == 400
            assert answers["redeem"].json()["errors"][0]["code"] == 682
        else:
            assert state == "REDEEMED"
            assert answers["redeem"].status_code == 200, answers["redeem"].text
            assert [g["errorCode"] for g in revoked["failedToRevoke"]] == [405]
        actions = [h["action"] for h in api.coupon(coupon["couponId"])["history"]]
        assert actions in (["ISSUE", "REVOKE"], ["ISSUE", "REDEEM"])
