"""Spec §4: issuing coupons from pools, fresh codes and generic series."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import PAST, Api, error_code


def issue_body(series_id: int, customer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"seriesId": series_id, "customer": customer, **extra}


def counts(api: Api, series_id: int) -> dict[str, int]:
    return dict(api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"])


def test_issue_hands_out_the_oldest_available_code_first(api: Api) -> None:
    # given codes added in three steps
    series_id = api.series(codes=["FIRST", "SECOND"])
    api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["THIRD"]}))
    customer_id = api.customer("5550100")

    # when three coupons are issued one by one
    issued = [api.issue(series_id, customer_id) for _ in range(3)]

    # then they come out in the order they were added, each to the customer
    assert [c["couponCode"] for c in issued] == ["FIRST", "SECOND", "THIRD"]
    assert {c["issuedToUserId"] for c in issued} == {customer_id}
    assert {c["seriesId"] for c in issued} == {series_id}
    assert counts(api, series_id) == {"AVAILABLE": 0, "ISSUED": 3, "REDEEMED": 0, "REVOKED": 0}


def test_issue_returns_the_spec_entity(api: Api) -> None:
    series_id = api.series(codes=["ONLY1"])
    customer_id = api.customer("5550100")

    entity = api.issue(series_id, customer_id)

    assert {"couponId", "couponCode", "seriesId", "issuedToUserId"} <= set(entity)
    assert api.coupon(entity["couponId"])["state"] == "ISSUED"


def test_an_empty_pool_generates_a_fresh_unique_code(api: Api) -> None:
    # given a DISC_CODE series with an empty pool
    series_id = api.series()
    customer_id = api.customer("5550100")

    # when two coupons are issued
    first = api.issue(series_id, customer_id)
    second = api.issue(series_id, customer_id)

    # then each has a new code of its own, both ISSUED
    assert first["couponCode"] != second["couponCode"]
    assert first["couponId"] != second["couponId"]
    assert counts(api, series_id)["ISSUED"] == 2


def test_a_pool_running_dry_mid_request_is_topped_up_with_fresh_codes(api: Api) -> None:
    series_id = api.series(codes=["POOL1", "POOL2"])
    customer_id = api.customer("5550100")

    coupons = api.issue_many(series_id, customer_id, 5)

    codes = [c["couponCode"] for c in coupons]
    assert codes[:2] == ["POOL1", "POOL2"]
    assert len(set(codes)) == 5
    assert counts(api, series_id) == {"AVAILABLE": 0, "ISSUED": 5, "REDEEMED": 0, "REVOKED": 0}
    # the pool's codes were AVAILABLE; the generated ones were made issued, from nothing
    first_states = [api.coupon(c["couponId"])["history"][0]["fromState"] for c in coupons]
    assert first_states == ["AVAILABLE", "AVAILABLE", None, None, None]


def test_a_generic_coupons_history_starts_from_nothing(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SHARED5")
    customer_id = api.customer("5550101")

    coupon = api.issue(series_id, customer_id)

    first = api.coupon(coupon["couponId"])["history"][0]
    assert (first["action"], first["fromState"], first["toState"]) == ("ISSUE", None, "ISSUED")


@pytest.mark.parametrize("pooled", [True, False], ids=["from-pool", "fresh"])
def test_a_pin_series_returns_a_pin_with_each_coupon(api: Api, pooled: bool) -> None:
    series_id = api.series("DISC_CODE_PIN", codes=["PINNED1"] if pooled else None)
    customer_id = api.customer("5550100")

    entity = api.issue(series_id, customer_id)

    assert entity["pin"].isdigit() and len(entity["pin"]) >= 4


def test_a_plain_series_returns_no_pin(api: Api) -> None:
    series_id = api.series(codes=["PLAIN1"])
    customer_id = api.customer("5550100")

    assert "pin" not in api.issue(series_id, customer_id)


def test_a_generic_series_creates_one_coupon_per_issue_sharing_its_code(api: Api) -> None:
    # given a GENERIC series and two customers
    series_id = api.series("GENERIC", generic_code="Summer10")
    alice = api.customer("5550100")
    bob = api.customer("5550200")

    # when each is issued the coupon, Alice twice
    coupons = [api.issue(series_id, alice), api.issue(series_id, bob), api.issue(series_id, alice)]

    # then each issue is its own coupon with the shared code as written
    assert len({c["couponId"] for c in coupons}) == 3
    assert {c["couponCode"] for c in coupons} == {"Summer10"}
    assert [c["issuedToUserId"] for c in coupons] == [alice, bob, alice]
    assert counts(api, series_id)["ISSUED"] == 3


def test_issuing_from_a_generic_redeemable_series_gets_811(api: Api) -> None:
    series_id = api.series("GENERIC_REDEEMABLE", generic_code="WELCOME")
    customer_id = api.customer("5550100")

    response = api.post("/v2/coupon/issue", issue_body(series_id, {"id": customer_id}))

    assert error_code(response) == 811
    assert counts(api, series_id)["ISSUED"] == 0


def test_issuing_from_an_expired_series_gets_712_and_issues_nothing(api: Api) -> None:
    series_id = api.series(valid_till=PAST, codes=["OLD1"])
    customer_id = api.customer("5550100")

    response = api.post("/v2/coupon/issue", issue_body(series_id, {"id": customer_id}))

    assert error_code(response) == 712
    assert counts(api, series_id) == {"AVAILABLE": 1, "ISSUED": 0, "REDEEMED": 0, "REVOKED": 0}


def test_issuing_from_an_unknown_series_gets_707(api: Api) -> None:
    customer_id = api.customer("5550100")

    response = api.post("/v2/coupon/issue", issue_body(987654321, {"id": customer_id}))

    assert 400 <= response.status_code < 500
    assert error_code(response) == 707


@pytest.mark.parametrize(
    "customer",
    [{"id": 987654321}, {"mobile": "5559999"}, {"email": "x@example.com"}, {"externalId": "Z"}],
    ids=str,
)
def test_issuing_to_an_unknown_customer_gets_701_and_issues_nothing(
    api: Api, customer: dict[str, Any]
) -> None:
    series_id = api.series(codes=["KEEP1"])
    api.customer("5550100", email="a@example.com", externalId="A")

    response = api.post("/v2/coupon/issue", issue_body(series_id, customer))

    assert 400 <= response.status_code < 500
    assert error_code(response) == 701
    assert counts(api, series_id)["AVAILABLE"] == 1


@pytest.mark.parametrize(
    "customer",
    [{"mobile": "+1 555 0100"}, {"email": "ALICE@example.com"}, {"externalId": "A-1"}],
    ids=str,
)
def test_a_customer_can_be_named_by_any_identifier_when_issuing(
    api: Api, customer: dict[str, Any]
) -> None:
    series_id = api.series()
    alice = api.customer("15550100", email="alice@example.com", externalId="A-1")

    entity = api.ok(api.post("/v2/coupon/issue", issue_body(series_id, customer)))

    assert entity["issuedToUserId"] == alice


@pytest.mark.parametrize("count", [1, 500])
def test_issue_multiple_issues_count_coupons(api: Api, count: int) -> None:
    series_id = api.series()
    customer_id = api.customer("5550100")

    coupons = api.issue_many(series_id, customer_id, count)

    assert len(coupons) == count
    assert len({c["couponCode"] for c in coupons}) == count
    assert counts(api, series_id)["ISSUED"] == count


@pytest.mark.parametrize("count", [0, -1, 501])
def test_issue_multiple_with_a_count_outside_1_to_500_gets_9002(api: Api, count: int) -> None:
    series_id = api.series(codes=["KEEP1"])
    customer_id = api.customer("5550100")

    response = api.post(
        "/v2/coupon/issue/multiple", issue_body(series_id, {"id": customer_id}, count=count)
    )

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "count" in response.json()["errors"][0]["message"]
    assert counts(api, series_id)["AVAILABLE"] == 1


def test_issue_multiple_from_a_generic_series_shares_the_code(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="GEN5")
    customer_id = api.customer("5550100")

    coupons = api.issue_many(series_id, customer_id, 3)

    assert {c["couponCode"] for c in coupons} == {"GEN5"}
    assert len({c["couponId"] for c in coupons}) == 3


# --- a customer's coupons -------------------------------------------------------------------


@pytest.fixture
def wallet(api: Api) -> dict[str, Any]:
    """A customer with one coupon in each customer-visible state, and someone else's coupon."""
    series_id = api.series(codes=["ACTIVE1", "REDEEMED1", "REVOKED1", "OTHER1"])
    alice = api.customer("5550100")
    bob = api.customer("5550200")
    active, redeemed, revoked = api.issue_many(series_id, alice, 3)
    api.issue(series_id, bob)
    api.ok(api.redeem(alice, redeemed["couponCode"]))
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [revoked["couponCode"]]}))
    return {
        "series": series_id,
        "alice": alice,
        "ACTIVE": active["couponId"],
        "REDEEMED": redeemed["couponId"],
        "REVOKED": revoked["couponId"],
    }


@pytest.mark.parametrize("status", ["ACTIVE", "REDEEMED", "REVOKED", "active"])
def test_a_customers_coupons_can_be_filtered_by_status(
    api: Api, wallet: dict[str, Any], status: str
) -> None:
    entity = api.ok(api.get(f"/v2/customers/{wallet['alice']}/coupons", params={"status": status}))

    [coupon] = entity["coupons"]
    assert coupon["couponId"] == wallet[status.upper()]
    assert coupon["issuedToUserId"] == wallet["alice"]
    assert "history" not in coupon


def test_a_campaign_ended_early_takes_its_coupons_out_of_active_at_once(
    api: Api, wallet: dict[str, Any]
) -> None:
    # Given the customer's series ended early
    api.ok(api.request("PATCH", f"/v2/coupon/series/{wallet['series']}", json={"validTill": PAST}))
    path = f"/v2/customers/{wallet['alice']}/coupons"

    # Then its issued coupon is no longer ACTIVE (it cannot be redeemed), in the list and the
    # export alike, and still listed under ALL with its state
    active = api.ok(api.get(path, params={"status": "ACTIVE"}))["coupons"]
    exported = api.get(f"{path}.csv", params={"status": "ACTIVE"}).text.splitlines()
    every = api.ok(api.get(path, params={"status": "ALL"}))["coupons"]
    assert active == [] and exported[1:] == []
    assert {c["couponId"]: c["state"] for c in every}[wallet["ACTIVE"]] == "ISSUED"


@pytest.mark.parametrize("params", [{"status": "ALL"}, {}], ids=["ALL", "default"])
def test_all_of_a_customers_coupons_are_listed_with_their_states(
    api: Api, wallet: dict[str, Any], params: dict[str, str]
) -> None:
    entity = api.ok(api.get(f"/v2/customers/{wallet['alice']}/coupons", params=params))

    states = {c["couponId"]: c["state"] for c in entity["coupons"]}
    assert states == {
        wallet[s]: {"ACTIVE": "ISSUED"}.get(s, s) for s in ("ACTIVE", "REDEEMED", "REVOKED")
    }
    for coupon in entity["coupons"]:
        assert set(coupon) == {"couponId", "couponCode", "seriesId", "state", "issuedToUserId"}


def test_an_unknown_status_filter_gets_9002(api: Api, wallet: dict[str, Any]) -> None:
    response = api.get(f"/v2/customers/{wallet['alice']}/coupons", params={"status": "LOST"})

    assert (response.status_code, error_code(response)) == (400, 9002)


def test_the_coupons_of_an_unknown_customer_get_701_and_404(api: Api) -> None:
    response = api.get("/v2/customers/987654321/coupons")

    assert (response.status_code, error_code(response)) == (404, 701)


@pytest.mark.parametrize("path", ["/v2/coupon/issue", "/v2/coupon/redeem"])
def test_a_customer_with_no_identifier_is_9002_not_customer_not_found(api: Api, path: str) -> None:
    series_id = api.series(codes=["NOID-1"])
    body: dict[str, Any] = (
        {"seriesId": series_id, "customer": {}}
        if path.endswith("issue")
        else {"customer": {}, "redemptionRequestList": [{"code": "NOID-1"}]}
    )

    response = api.post(path, body)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith("customer")
