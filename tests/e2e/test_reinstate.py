"""Reinstate: revoked coupons return to exactly the state they had before revoke."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api, error_code


def reinstate(api: Api, body: Any, **params: str) -> httpx.Response:
    return api.post("/v2/coupon/reinstate", body, params=params)


def revoke_as(api: Api, request_id: str, body: Any) -> dict[str, Any]:
    entity: dict[str, Any] = api.ok(
        api.post("/v2/coupon/revoke", body, headers={"X-Request-Id": request_id})
    )
    return entity


def view(api: Api, coupon_id: int) -> tuple[str, int | None]:
    coupon = api.coupon(coupon_id)
    return coupon["state"], coupon["issuedToUserId"]


@pytest.fixture
def revoked(api: Api) -> dict[str, Any]:
    """One issued and one never-issued coupon of Alice's series, both revoked in one call."""
    series_id = api.series(codes=["HERS1", "POOL1"])
    alice = api.customer("555-0101")
    hers = api.issue(series_id, alice)
    entity = revoke_as(
        api, "revoke-1", {"couponSeriesId": series_id, "couponCodes": ["HERS1", "POOL1"]}
    )
    ids = {c["couponCode"]: c["couponId"] for c in entity["revokedCoupons"]}
    assert ids["HERS1"] == hers["couponId"]
    return {"series": series_id, "alice": alice, "hers": ids["HERS1"], "pool": ids["POOL1"]}


def test_reinstating_codes_restores_each_coupons_earlier_state_and_customer(
    api: Api, revoked: dict[str, Any]
) -> None:
    # When both codes are reinstated
    entity = api.ok(
        reinstate(
            api,
            {"couponSeriesId": revoked["series"], "couponCodes": ["hers1", "pool1"]},
            couponCodeCase="lower",
        )
    )

    # Then the issued one is Alice's again and the pool code is back in the pool
    assert entity == {
        "totalCount": 2,
        "failedCount": 0,
        "reinstatedCoupons": [
            {
                "couponId": revoked["hers"],
                "couponCode": "hers1",
                "issuedToUserId": revoked["alice"],
            },
            {"couponId": revoked["pool"], "couponCode": "pool1", "issuedToUserId": None},
        ],
        "failedToReinstate": [],
    }
    assert view(api, revoked["hers"]) == ("ISSUED", revoked["alice"])
    assert view(api, revoked["pool"]) == ("AVAILABLE", None)
    counts = api.ok(api.get(f"/v2/coupon/series/{revoked['series']}"))["counts"]
    assert (counts["ISSUED"], counts["AVAILABLE"], counts["REVOKED"]) == (1, 1, 0)
    last = api.coupon(revoked["pool"])["history"][-1]
    assert (last["action"], last["fromState"], last["toState"]) == (
        "REINSTATE",
        "REVOKED",
        "AVAILABLE",
    )


def test_a_reinstated_pool_code_can_be_issued_again(api: Api, revoked: dict[str, Any]) -> None:
    api.ok(reinstate(api, {"couponSeriesId": revoked["series"], "couponCodes": ["POOL1"]}))

    issued = api.issue(revoked["series"], api.customer("555-0102"))

    assert issued["couponId"] == revoked["pool"]


def test_reinstating_a_customer_restores_their_revoked_coupons_only(
    api: Api, revoked: dict[str, Any]
) -> None:
    # Given Bob's revoked coupon in the same series
    bob = api.customer("555-0102")
    bobs = api.issue(revoked["series"], bob)
    api.ok(api.revoke({"couponCodes": [bobs["couponCode"]]}))

    # When Alice's coupons are reinstated
    entity = api.ok(reinstate(api, {"customer": {"id": revoked["alice"]}}))

    # Then hers is ISSUED to her again; Bob's and the pool code stay revoked
    assert [c["couponId"] for c in entity["reinstatedCoupons"]] == [revoked["hers"]]
    assert view(api, revoked["hers"]) == ("ISSUED", revoked["alice"])
    assert view(api, bobs["couponId"]) == ("REVOKED", bob)
    assert view(api, revoked["pool"])[0] == "REVOKED"


def test_reinstating_a_code_that_is_not_revoked_reports_it_and_changes_nothing(
    api: Api, revoked: dict[str, Any]
) -> None:
    api.ok(reinstate(api, {"couponSeriesId": revoked["series"], "couponCodes": ["HERS1"]}))
    before = api.coupon(revoked["hers"])

    entity = api.ok(
        reinstate(api, {"couponSeriesId": revoked["series"], "couponCodes": ["HERS1", "NOPE1"]})
    )

    assert entity["reinstatedCoupons"] == []
    assert {g["errorCode"]: g["couponCodes"] for g in entity["failedToReinstate"]} == {
        9017: ["HERS1"],
        682: ["NOPE1"],
    }
    assert api.coupon(revoked["hers"]) == before


def test_reinstate_follows_the_revoke_checks(api: Api, revoked: dict[str, Any]) -> None:
    assert error_code(reinstate(api, {"couponSeriesId": revoked["series"]})) == 756
    assert error_code(reinstate(api, {"couponCodes": ["HERS1", "POOL1"]})) == 9005
    assert error_code(reinstate(api, {"couponSeriesId": 10**9, "couponCodes": ["X"]})) == 707
    assert view(api, revoked["hers"])[0] == "REVOKED"


def test_a_dry_run_reinstate_changes_nothing(api: Api, revoked: dict[str, Any]) -> None:
    body = {"couponSeriesId": revoked["series"], "couponCodes": ["HERS1"]}

    dry = reinstate(api, body, dryRun="true")

    assert view(api, revoked["hers"])[0] == "REVOKED"
    assert dry.content == reinstate(api, body).content


def test_reinstate_by_revoke_request_id_undoes_that_whole_call(
    api: Api, revoked: dict[str, Any]
) -> None:
    # When the revoke call is undone by its request id
    entity = api.ok(reinstate(api, {"revokeRequestId": "revoke-1", "reason": "undo"}))

    # Then both its coupons are back as they were, each with a reinstate entry
    assert sorted(c["couponId"] for c in entity["reinstatedCoupons"]) == sorted(
        [revoked["hers"], revoked["pool"]]
    )
    assert view(api, revoked["hers"]) == ("ISSUED", revoked["alice"])
    assert view(api, revoked["pool"]) == ("AVAILABLE", None)
    last = api.coupon(revoked["hers"])["history"][-1]
    assert (last["action"], last["reason"]) == ("REINSTATE", "undo")


def test_reinstate_by_revoke_request_id_skips_and_reports_coupons_changed_since(
    api: Api, revoked: dict[str, Any]
) -> None:
    # Given the pool code was reinstated and revoked again by a later call
    api.ok(reinstate(api, {"couponSeriesId": revoked["series"], "couponCodes": ["POOL1"]}))
    revoke_as(api, "revoke-2", {"couponSeriesId": revoked["series"], "couponCodes": ["POOL1"]})

    # When the first revoke call is undone
    entity = api.ok(reinstate(api, {"revokeRequestId": "revoke-1"}))

    # Then only the coupon it still governs is reinstated; the other is reported, untouched
    assert [c["couponId"] for c in entity["reinstatedCoupons"]] == [revoked["hers"]]
    assert entity["failedToReinstate"] == [
        {
            "errorCode": 9018,
            "errorMessage": "Coupon changed since that revoke",
            "couponCodes": ["POOL1"],
        }
    ]
    assert view(api, revoked["pool"])[0] == "REVOKED"
    # And undoing the later call still works for it
    again = api.ok(reinstate(api, {"revokeRequestId": "revoke-2"}))
    assert [c["couponId"] for c in again["reinstatedCoupons"]] == [revoked["pool"]]


def test_reinstate_by_an_unknown_or_foreign_revoke_request_id_is_refused(
    api: Api, other: Api, revoked: dict[str, Any]
) -> None:
    assert error_code(reinstate(api, {"revokeRequestId": "never-sent"})) == 9002
    assert error_code(reinstate(other, {"revokeRequestId": "revoke-1"})) == 9002
    assert view(api, revoked["hers"])[0] == "REVOKED"


@pytest.mark.parametrize(
    "extra",
    [{"couponCodes": ["POOL1"]}, {"couponSeriesId": 999}, {"customer": {"email": "x@y.test"}}],
)
def test_a_revoke_request_id_with_codes_series_or_customer_is_refused(
    api: Api, revoked: dict[str, Any], extra: dict[str, Any]
) -> None:
    # Both name the coupons: the undo must not reinstate what the caller did not ask for
    response = reinstate(api, {"revokeRequestId": "revoke-1", **extra})

    assert error_code(response) == 9002
    assert response.json()["errors"][0]["message"].startswith("revokeRequestId")
    assert view(api, revoked["hers"])[0] == view(api, revoked["pool"])[0] == "REVOKED"


def test_undoing_the_same_revoke_twice_reports_9017_not_revoked(
    api: Api, revoked: dict[str, Any]
) -> None:
    # Given a revoke call already undone by its request id
    api.ok(reinstate(api, {"revokeRequestId": "revoke-1"}))

    # When it is undone again
    entity = api.ok(reinstate(api, {"revokeRequestId": "revoke-1"}))

    # Then its coupons are reported as not revoked (9017), not as changed since, and untouched
    assert entity["reinstatedCoupons"] == []
    assert entity["failedToReinstate"] == [
        {
            "errorCode": 9017,
            "errorMessage": "Coupon is not revoked",
            "couponCodes": ["HERS1", "POOL1"],
        }
    ]
    assert view(api, revoked["hers"]) == ("ISSUED", revoked["alice"])


def test_a_retried_revoke_answers_with_the_first_requests_id_which_reinstate_accepts(
    api: Api,
) -> None:
    # Given a revoke sent with an idempotency key whose answer the client never saw
    series_id = api.series(codes=["RETRY1"])
    body = {"couponSeriesId": series_id, "couponCodes": ["RETRY1"]}
    first = api.post(
        "/v2/coupon/revoke", body, headers={"Idempotency-Key": "k-retry", "X-Request-Id": "first"}
    )
    assert first.headers["x-request-id"] == "first"

    # When the client retries with the same key (and its own new request id, or none)
    retried = api.post(
        "/v2/coupon/revoke", body, headers={"Idempotency-Key": "k-retry", "X-Request-Id": "again"}
    )
    bare = api.post("/v2/coupon/revoke", body, headers={"Idempotency-Key": "k-retry"})

    # Then each replay answers with the id of the request that did the work
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.headers["x-request-id"] == bare.headers["x-request-id"] == "first"
    assert retried.content == first.content
    # And undoing by that id works for the client that only saw the replay
    entity = api.ok(reinstate(api, {"revokeRequestId": retried.headers["x-request-id"]}))
    assert [c["couponCode"] for c in entity["reinstatedCoupons"]] == ["RETRY1"]


def test_the_documented_reinstate_examples_are_answered_as_documented(
    api: Api, revoked: dict[str, Any]
) -> None:
    # The OpenAPI document's request examples, with this test's series and request id
    doc = api.client.get("/openapi.json").json()
    body = doc["paths"]["/v2/coupon/reinstate"]["post"]["requestBody"]["content"]
    examples = body["application/json"]["examples"]
    codes = {**examples["codes"]["value"], "couponSeriesId": revoked["series"]}
    codes["couponCodes"] = ["POOL1"]
    undo = {**examples["undo"]["value"], "revokeRequestId": "revoke-1"}

    assert api.ok(reinstate(api, codes, dryRun="true"))["reinstatedCoupons"]
    assert api.ok(reinstate(api, undo, dryRun="true"))["reinstatedCoupons"]
