"""Every request example of the vendor's revoke page, answered in the vendor's shapes.

The vendor's series and customer ids are replaced by ours; everything else (codes, mobile,
email, external id, response keys, error codes) is taken from the page as it is.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import PAST, Api, error_code

VENDOR_MOBILE = "11223569865"
VENDOR_EMAIL = "Tomswayer@capillarytech.com"
VENDOR_EXTERNAL_ID = "000003873472"
VENDOR_CODES = ["3138309782", "3636820421"]


def assert_vendor_success_shape(response: httpx.Response) -> dict[str, Any]:
    """The success envelope with the vendor's revoke entity, key for key."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"entity", "warnings", "errors", "success"}
    assert body["success"] is True and body["warnings"] == [] and body["errors"] == []
    entity: dict[str, Any] = body["entity"]
    assert set(entity) == {"totalCount", "failedCount", "revokedCoupons", "failedToRevoke"}
    for coupon in entity["revokedCoupons"]:
        assert set(coupon) == {"couponId", "couponCode", "issuedToUserId"}
        assert isinstance(coupon["couponId"], int) and isinstance(coupon["couponCode"], str)
    for group in entity["failedToRevoke"]:
        assert set(group) == {"errorCode", "errorMessage", "couponCodes"}
    assert entity["totalCount"] == len(entity["revokedCoupons"]) + entity["failedCount"]
    assert entity["failedCount"] == sum(len(g["couponCodes"]) for g in entity["failedToRevoke"])
    return entity


def assert_vendor_failure_shape(response: httpx.Response, code: int, message: str) -> None:
    """The vendor's failure envelope: no entity, one error with status false."""
    assert 400 <= response.status_code < 500, response.text
    assert response.json() == {
        "warnings": [],
        "errors": [{"status": False, "code": code, "message": message}],
        "success": False,
    }


def customer_with_coupons(api: Api, series_id: int, count: int, **identifiers: Any) -> int:
    customer_id = api.customer(**identifiers)
    api.issue_many(series_id, customer_id, count)
    return customer_id


def test_revoking_by_mobile_revokes_every_issued_coupon_of_the_series(api: Api) -> None:
    # Given the vendor's customer holding 18 coupons of the series
    series_id = api.series()
    customer_id = customer_with_coupons(api, series_id, 18, mobile=VENDOR_MOBILE)

    # When the vendor's "revoke using mobile" request is sent
    response = api.revoke({"couponSeriesId": series_id, "customer": {"mobile": VENDOR_MOBILE}})

    # Then all 18 are revoked, each reported with the customer's id
    entity = assert_vendor_success_shape(response)
    assert (entity["totalCount"], entity["failedCount"]) == (18, 0)
    assert {c["issuedToUserId"] for c in entity["revokedCoupons"]} == {customer_id}
    assert entity["failedToRevoke"] == []


def test_revoking_by_external_id_revokes_the_customers_coupons(api: Api) -> None:
    series_id = api.series()
    customer_id = customer_with_coupons(api, series_id, 2, externalId=VENDOR_EXTERNAL_ID)

    response = api.revoke(
        {"couponSeriesId": series_id, "customer": {"externalId": VENDOR_EXTERNAL_ID}}
    )

    entity = assert_vendor_success_shape(response)
    assert entity["totalCount"] == 2
    assert {c["issuedToUserId"] for c in entity["revokedCoupons"]} == {customer_id}


def test_revoking_by_customer_id_given_as_a_string_revokes_the_customers_coupons(
    api: Api,
) -> None:
    # The vendor's example sends the customer id as a JSON string.
    series_id = api.series()
    customer_id = customer_with_coupons(api, series_id, 3, mobile=VENDOR_MOBILE)

    response = api.revoke({"couponSeriesId": series_id, "customer": {"id": str(customer_id)}})

    entity = assert_vendor_success_shape(response)
    assert entity["totalCount"] == 3


def test_revoking_by_email_matches_the_email_in_any_case(api: Api) -> None:
    series_id = api.series()
    customer_with_coupons(api, series_id, 1, email=VENDOR_EMAIL.lower())

    response = api.revoke({"couponSeriesId": series_id, "customer": {"email": VENDOR_EMAIL}})

    entity = assert_vendor_success_shape(response)
    assert entity["totalCount"] == 1


def test_revoking_by_codes_revokes_both_issued_codes(api: Api) -> None:
    # Given the vendor's two codes in a series, both issued to one customer
    series_id = api.series(codes=VENDOR_CODES)
    customer_id = api.customer(mobile=VENDOR_MOBILE)
    issued = api.issue_many(series_id, customer_id, 2)

    # When the vendor's "revoke using coupon codes" request is sent
    response = api.revoke({"couponSeriesId": series_id, "couponCodes": VENDOR_CODES})

    # Then both are revoked
    entity = assert_vendor_success_shape(response)
    assert (entity["totalCount"], entity["failedCount"]) == (2, 0)
    assert sorted(entity["revokedCoupons"], key=lambda c: c["couponId"]) == sorted(
        (
            {
                "couponId": c["couponId"],
                "couponCode": c["couponCode"],
                "issuedToUserId": customer_id,
            }
            for c in issued
        ),
        key=lambda c: c["couponId"],
    )


def test_revoking_a_generic_code_for_a_customer_revokes_that_customers_instance(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SALE20")
    customer_id = api.customer(mobile=VENDOR_MOBILE)
    coupon = api.issue(series_id, customer_id)

    response = api.revoke(
        {"couponSeriesId": series_id, "couponCodes": ["SALE20"], "customer": {"id": customer_id}}
    )

    entity = assert_vendor_success_shape(response)
    assert entity["revokedCoupons"] == [
        {"couponId": coupon["couponId"], "couponCode": "SALE20", "issuedToUserId": customer_id}
    ]


def test_unknown_codes_in_a_series_all_fail_with_682_and_still_answer_200(api: Api) -> None:
    series_id = api.series(codes=["KNOWN1"])
    codes = [
        "V6AUE8G5890V41TCRRKKRM1K18SNO2BUUW2FLJ25",
        "GQ7PTBRWBLJLFT7R775B1XMUS2QCRB83WS9HI1A8",
        "CODE123",
    ]

    entity = assert_vendor_success_shape(
        api.revoke({"couponSeriesId": series_id, "couponCodes": codes})
    )

    assert entity == {
        "totalCount": 3,
        "failedCount": 3,
        "revokedCoupons": [],
        "failedToRevoke": [
            {"errorCode": 682, "errorMessage": "Coupon not found", "couponCodes": codes}
        ],
    }


def test_already_revoked_and_unknown_codes_share_the_682_group_beside_a_revoked_one(
    api: Api,
) -> None:
    # Given one issued code, one already revoked code, and one code the series does not have
    series_id = api.series(codes=["3H2G6OAGPAQ3FYMT5IO4ZNV49V21VEV05JBP6S3T", "V6AUE8G5890V41"])
    customer_id = api.customer(mobile=VENDOR_MOBILE)
    first, _ = api.issue_many(series_id, customer_id, 2)
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["V6AUE8G5890V41"]}))

    # When all three are revoked together
    response = api.revoke(
        {
            "couponSeriesId": series_id,
            "couponCodes": [first["couponCode"], "V6AUE8G5890V41", "CODE123"],
        }
    )

    # Then one is revoked and the other two are grouped under 682
    entity = assert_vendor_success_shape(response)
    assert entity == {
        "totalCount": 3,
        "failedCount": 2,
        "revokedCoupons": [
            {
                "couponId": first["couponId"],
                "couponCode": first["couponCode"],
                "issuedToUserId": customer_id,
            }
        ],
        "failedToRevoke": [
            {
                "errorCode": 682,
                "errorMessage": "Coupon not found",
                "couponCodes": ["V6AUE8G5890V41", "CODE123"],
            }
        ],
    }


def test_redeemed_codes_fail_in_a_405_group_beside_a_revoked_one(api: Api) -> None:
    # The vendor's "partial success" example: 405 groups the redeemed codes (its 404 group
    # needs a single code without series, so it cannot share a response with 405).
    series_id = api.series(codes=["SDDSDSDS", "CODE6", "CODE7"])
    customer_id = api.customer(mobile=VENDOR_MOBILE)
    api.issue_many(series_id, customer_id, 3)
    assert api.redeem(customer_id, "CODE6", "CODE7").status_code == 200

    response = api.revoke(
        {"couponSeriesId": series_id, "couponCodes": ["SDDSDSDS", "CODE6", "CODE7"]}
    )

    entity = assert_vendor_success_shape(response)
    assert [c["couponCode"] for c in entity["revokedCoupons"]] == ["SDDSDSDS"]
    assert entity["failedToRevoke"] == [
        {
            "errorCode": 405,
            "errorMessage": "Coupon code redeemed",
            "couponCodes": ["CODE6", "CODE7"],
        }
    ]
    assert (entity["totalCount"], entity["failedCount"]) == (3, 2)


def test_a_single_code_unknown_to_the_org_fails_in_a_404_group(api: Api) -> None:
    response = api.revoke({"couponCodes": ["CODE4"]})

    entity = assert_vendor_success_shape(response)
    assert entity["failedToRevoke"] == [
        {"errorCode": 404, "errorMessage": "Coupon code not found", "couponCodes": ["CODE4"]}
    ]


def test_a_generic_code_without_a_customer_fails_with_the_vendors_108(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SALE20")
    api.issue(series_id, api.customer(mobile=VENDOR_MOBILE))

    response = api.revoke({"couponSeriesId": series_id, "couponCodes": ["SALE20"]})

    assert_vendor_failure_shape(
        response, 108, "Unsupported coupons series config with client handling type GENERIC"
    )


def test_an_expired_series_fails_with_the_vendors_712(api: Api) -> None:
    series_id = api.series(valid_till=PAST, codes=VENDOR_CODES)

    response = api.revoke({"couponSeriesId": series_id, "couponCodes": VENDOR_CODES})

    assert_vendor_failure_shape(response, 712, "Coupon Series / Campaign has expired")


def test_neither_codes_nor_customer_fails_with_the_vendors_756(api: Api) -> None:
    response = api.revoke({"couponSeriesId": api.series()})

    assert_vendor_failure_shape(response, 756, "CouponCode/s or customer info is mandatory")
    assert error_code(response) == 756


def test_the_documented_schema_admits_the_vendors_customer_id_as_a_string(api: Api) -> None:
    # The vendor's example sends `"id": "555567088"`; the service takes it, so the document
    # must too, or a client generated from it would refuse the vendor's own request
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    kinds = schemas["CustomerIdentifiers"]["properties"]["id"]["anyOf"]

    assert {"type": "integer", "minimum": 1, "maximum": 2**62} in kinds
    strings = [k for k in kinds if "anyOf" in k] + [k for k in kinds if k.get("type") == "string"]
    assert any("^[0-9]+$" in str(k) for k in strings)
    assert not any("ge" in k or "le" in k for k in kinds)  # not JSON Schema keywords
