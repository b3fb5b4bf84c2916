"""Dry runs change nothing yet answer exactly as the real call; every revoke leaves history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api, error_code


def world_state(api: Api, series_id: int, coupons: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "counts": api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"],
        "coupons": [api.coupon(c["couponId"]) for c in coupons],
    }


def send(
    client: Api, body: Any, *, headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    """A revoke call with query parameters and extra headers."""
    return client.post("/v2/coupon/revoke", body, params=params, headers=headers or {})


@pytest.fixture
def mixed(api: Api) -> dict[str, Any]:
    """Alice holds an issued, a redeemed and a revoked coupon; one pool code is never issued."""
    series_id = api.series(codes=["KEEP1", "USED1", "GONE1", "POOL1"])
    alice = api.customer("555-0101")
    coupons = api.issue_many(series_id, alice, 3)
    assert api.redeem(alice, "USED1").status_code == 200
    api.ok(send(api, {"couponCodes": ["GONE1"]}))
    return {"series": series_id, "alice": alice, "coupons": coupons}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            lambda m: {
                "couponSeriesId": m["series"],
                "couponCodes": ["keep1", "used1", "gone1", "pool1", "nope1"],
                "reason": "fraud",
            },
            id="codes",
        ),
        pytest.param(lambda m: {"customer": {"id": m["alice"]}}, id="customer"),
    ],
)
def test_a_dry_run_answers_exactly_as_the_real_call_and_changes_nothing(
    api: Api, mixed: dict[str, Any], body: Any
) -> None:
    # Given the world before
    before = world_state(api, mixed["series"], mixed["coupons"])

    # When the request is first dry-run, then sent for real
    dry = send(api, body(mixed), dryRun="true", couponCodeCase="lower")
    after_dry = world_state(api, mixed["series"], mixed["coupons"])
    real = send(api, body(mixed), couponCodeCase="lower")

    # Then the dry run changed nothing and answered byte for byte what the real call answered
    assert after_dry == before
    assert dry.status_code == real.status_code == 200
    assert dry.content == real.content
    assert api.ok(real)["totalCount"] > 0
    assert world_state(api, mixed["series"], mixed["coupons"]) != before


def test_a_dry_run_of_a_failing_request_answers_the_same_error(api: Api) -> None:
    response = send(api, {"couponSeriesId": 10**9, "couponCodes": ["X"]}, dryRun="true")

    assert response.status_code == 400
    assert error_code(response) == 707


def test_each_revoked_coupon_gets_one_history_entry_with_actor_request_id_reason_and_time(
    agent: Api, api: Api
) -> None:
    # Given two issued coupons and a never-issued code
    series_id = api.series(codes=["ONE1", "TWO1", "POOL1"])
    customer_id = api.customer("555-0101")
    issued = api.issue_many(series_id, customer_id, 2)

    # When the agent revokes all three with a reason and its own request id
    started = datetime.now(UTC)
    entity = agent.ok(
        send(
            agent,
            {
                "couponSeriesId": series_id,
                "couponCodes": ["one1", "two1", "pool1"],
                "reason": "ordered by support ticket 42",
            },
            headers={"X-Request-Id": "req-revoke-42"},
        )
    )
    finished = datetime.now(UTC)

    # Then each revoked coupon has exactly one REVOKE entry telling who, which request, why, when
    assert len(entity["revokedCoupons"]) == 3
    for revoked in entity["revokedCoupons"]:
        history = api.coupon(revoked["couponId"])["history"]
        revokes = [h for h in history if h["action"] == "REVOKE"]
        assert len(revokes) == 1
        [entry] = revokes
        assert entry["actor"] == "acme-agent"
        assert entry["requestId"] == "req-revoke-42"
        assert entry["reason"] == "ordered by support ticket 42"
        assert entry["toState"] == "REVOKED"
        at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
        assert started.replace(microsecond=0) <= at <= finished
    from_states = {
        r["couponCode"]: api.coupon(r["couponId"])["history"][-1]["fromState"]
        for r in entity["revokedCoupons"]
    }
    assert from_states == {"ONE1": "ISSUED", "TWO1": "ISSUED", "POOL1": "AVAILABLE"}
    assert {c["couponId"] for c in issued} <= {r["couponId"] for r in entity["revokedCoupons"]}


def test_a_code_that_failed_gets_no_history_entry(api: Api, mixed: dict[str, Any]) -> None:
    used = mixed["coupons"][1]
    before = api.coupon(used["couponId"])["history"]

    api.ok(send(api, {"couponCodes": ["USED1"]}))

    assert api.coupon(used["couponId"])["history"] == before


def test_a_read_only_client_cannot_revoke(viewer: Api, api: Api) -> None:
    series_id = api.series(codes=["KEEP1"])

    response = viewer.revoke({"couponSeriesId": series_id, "couponCodes": ["KEEP1"]})

    assert response.status_code == 403
    assert error_code(response) == 9011
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 1
