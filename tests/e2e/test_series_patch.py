"""`PATCH /v2/coupon/series/{id}`: end a campaign early (or extend it), change its description."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import FUTURE, Api, error_code


def patch(api: Api, series_id: int, body: Any) -> httpx.Response:
    return api.request("PATCH", f"/v2/coupon/series/{series_id}", json=body)


def an_hour_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def test_ending_a_campaign_early_expires_its_coupons_for_redeem_and_revoke(api: Api) -> None:
    # given a live series with a coupon issued to a customer
    series_id = api.series(codes=["END1", "END2"])
    customer = api.customer("555-0401")
    issued = api.issue(series_id, customer)

    # when the campaign is ended an hour ago
    entity = api.ok(patch(api, series_id, {"validTill": an_hour_ago()}))

    # then the series answers as expired, and keeps its description
    assert entity["expired"] is True and entity["description"] == "DISC_CODE series"
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["expired"] is True
    # and its coupons cannot be redeemed (712) nor revoked by series (712), as spec §5 says
    assert error_code(api.redeem(customer, issued["couponCode"])) == 712
    assert error_code(api.revoke({"couponSeriesId": series_id, "couponCodes": ["END2"]})) == 712
    # and a customer-wide revoke leaves the expired series alone
    swept = api.ok(api.revoke({"customer": {"id": customer}}))
    assert swept["totalCount"] == 0
    assert api.coupon(issued["couponId"])["state"] == "ISSUED"


def test_extending_an_expired_series_makes_it_usable_again(api: Api) -> None:
    # given a series ended early
    series_id = api.series(codes=["EXT1"])
    api.ok(patch(api, series_id, {"validTill": an_hour_ago()}))

    # when its end is moved into the future (a bare date: through that whole day)
    entity = api.ok(patch(api, series_id, {"validTill": FUTURE}))

    # then it is live again
    assert entity["expired"] is False
    assert entity["validTill"].startswith(FUTURE)
    assert (
        api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["EXT1"]}))["failedCount"]
        == 0
    )


def test_changing_the_description_keeps_everything_else(api: Api) -> None:
    series_id = api.series(codes=["DESC1"])
    before = api.ok(api.get(f"/v2/coupon/series/{series_id}"))

    entity = api.ok(patch(api, series_id, {"description": "  Spring, ended early  "}))

    assert entity["description"] == "Spring, ended early"
    after = api.ok(api.get(f"/v2/coupon/series/{series_id}"))
    assert {**before, "description": "Spring, ended early"} == after


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"validTill": "not a date"}, "validTill"),
        ({"validTill": "1900-01-01"}, "validTill"),
        ({"description": ""}, "description"),
        ({"description": "x" * 501}, "description"),
        ({"validTill": None, "description": None}, "body"),
        # fixed once the series exists: refused, not dropped while the rest changes
        ({"description": "X", "discountValue": 99}, "discountValue: cannot be changed"),
        ({"discountType": "PERC"}, "discountType"),
        ({"clientHandlingType": "GENERIC"}, "clientHandlingType"),
        ({"genericCode": "OPEN", "validTill": FUTURE}, "genericCode"),
    ],
)
def test_a_bad_change_is_9002_naming_the_field_and_changes_nothing(
    api: Api, body: Any, field: str
) -> None:
    series_id = api.series()
    before = api.ok(api.get(f"/v2/coupon/series/{series_id}"))

    response = patch(api, series_id, body)

    assert response.status_code == 400, response.text
    assert error_code(response) == 9002
    assert response.json()["errors"][0]["message"].startswith(field)
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}")) == before


def test_only_coupon_admin_may_change_a_series_and_only_in_its_own_org(
    api: Api, agent: Api, other: Api
) -> None:
    # given a series of acme
    series_id = api.series()

    # when a default-group client of acme, or globex's admin, tries to end it
    as_agent = patch(agent, series_id, {"validTill": an_hour_ago()})
    as_other = patch(other, series_id, {"validTill": an_hour_ago()})

    # then the agent is refused (9011), globex sees no such series (707, like a missing id)
    assert (as_agent.status_code, error_code(as_agent)) == (403, 9011)
    missing = patch(api, 987_654_321, {"validTill": an_hour_ago()})
    assert (as_other.status_code, error_code(as_other)) == (missing.status_code, 707)
    assert as_other.json() == missing.json()
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["expired"] is False


def test_the_change_is_documented_with_examples(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v2/coupon/series/{id}"]["patch"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"validTill", "description"} <= {k for e in examples.values() for k in e["value"]}
