"""Spec §4: `GET /v2/coupon/{id}` shows the coupon and every state change in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import Api, error_code


def parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def test_a_pool_coupon_revoked_before_issue_shows_only_the_revoke(api: Api) -> None:
    # given a code revoked straight from the pool, and one still in the pool
    series_id = api.series(codes=["POOL1"])
    revoked = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["POOL1"]}))
    coupon_id = revoked["revokedCoupons"][0]["couponId"]

    # when it is read
    entity = api.coupon(coupon_id)

    # then it has one entry, the revoke from AVAILABLE, and no customer
    assert entity["issuedToUserId"] is None
    assert [h["action"] for h in entity["history"]] == ["REVOKE"]


def test_an_issued_coupon_shows_its_issue_with_actor_request_id_and_time(
    api: Api, agent: Api
) -> None:
    # given a coupon issued by the agent under a known request id
    series_id = api.series(codes=["Hist1"])
    customer_id = api.customer("5550100")
    before = datetime.now(UTC) - timedelta(seconds=5)
    issued = agent.ok(
        agent.post(
            "/v2/coupon/issue",
            {"seriesId": series_id, "customer": {"id": customer_id}},
            headers={"X-Request-Id": "issue-req-1"},
        )
    )

    # when the coupon is read
    entity = api.coupon(issued["couponId"])

    # then it carries the spec's fields and one ISSUE entry by the agent
    assert {k: entity[k] for k in ("couponId", "couponCode", "seriesId", "state")} == {
        "couponId": issued["couponId"],
        "couponCode": "Hist1",
        "seriesId": series_id,
        "state": "ISSUED",
    }
    assert entity["issuedToUserId"] == customer_id
    [entry] = entity["history"]
    assert entry["action"] == "ISSUE"
    assert entry["actor"] == "acme-agent"
    assert entry["requestId"] == "issue-req-1"
    assert entry["reason"] is None
    assert before <= parse(entry["at"]) <= datetime.now(UTC) + timedelta(seconds=5)


def test_history_lists_every_state_change_in_order_with_reasons(api: Api, agent: Api) -> None:
    # given a coupon issued, redeemed, reactivated, revoked with a reason, and reinstated
    series_id = api.series(codes=["LIFE1"])
    customer_id = api.customer("5550100")
    coupon_id = api.issue(series_id, customer_id)["couponId"]
    redemption = agent.ok(agent.redeem(customer_id, "LIFE1"))["redemptions"][0]["redemptionId"]
    agent.ok(agent.request("PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redemption]}))
    agent.ok(
        agent.revoke(
            {"couponSeriesId": series_id, "couponCodes": ["life1"], "reason": "fraud check"},
        )
    )
    api.ok(
        api.post(
            "/v2/coupon/reinstate",
            {"couponSeriesId": series_id, "couponCodes": ["LIFE1"], "reason": "cleared"},
            headers={"X-Request-Id": "reinstate-1"},
        )
    )

    # when it is read
    entity = api.coupon(coupon_id)

    # then every change is listed in order, with who did it and why
    history = entity["history"]
    assert [h["action"] for h in history] == [
        "ISSUE",
        "REDEEM",
        "REACTIVATE",
        "REVOKE",
        "REINSTATE",
    ]
    assert [h["actor"] for h in history] == [
        "acme-admin",
        "acme-agent",
        "acme-agent",
        "acme-agent",
        "acme-admin",
    ]
    assert history[3]["reason"] == "fraud check"
    assert history[4]["reason"] == "cleared"
    assert history[4]["requestId"] == "reinstate-1"
    assert len({h["requestId"] for h in history}) == 5
    times = [parse(h["at"]) for h in history]
    assert times == sorted(times)
    assert entity["state"] == "ISSUED"


def test_each_generic_coupon_has_its_own_history(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="GEN1")
    alice = api.customer("5550100")
    bob = api.customer("5550200")
    first = api.issue(series_id, alice)
    second = api.issue(series_id, bob)

    api.ok(
        api.revoke(
            {"couponSeriesId": series_id, "couponCodes": ["GEN1"], "customer": {"id": alice}}
        )
    )

    assert [h["action"] for h in api.coupon(first["couponId"])["history"]] == ["ISSUE", "REVOKE"]
    assert [h["action"] for h in api.coupon(second["couponId"])["history"]] == ["ISSUE"]


def test_a_read_only_client_can_read_a_coupon(api: Api, viewer: Api) -> None:
    series_id = api.series(codes=["VIEW1"])
    coupon_id = api.issue(series_id, api.customer("5550100"))["couponId"]

    assert viewer.coupon(coupon_id)["couponCode"] == "VIEW1"


def test_an_unknown_coupon_gets_a_404(api: Api) -> None:
    response = api.get("/v2/coupon/987654321")

    assert response.status_code == 404
    assert error_code(response) == 682
