from tests.e2e.conftest import Api


def test_revoking_an_issued_code_by_code_and_series_revokes_it(api: Api) -> None:
    series_id = api.series(codes=["abc123", "XYZ789"])
    customer_id = api.customer("555-0100")
    coupon = api.issue(series_id, customer_id)

    entity = api.ok(
        api.revoke({"couponSeriesId": series_id, "couponCodes": [coupon["couponCode"]]})
    )

    assert entity == {
        "totalCount": 1,
        "failedCount": 0,
        "revokedCoupons": [
            {"couponId": coupon["couponId"], "couponCode": "ABC123", "issuedToUserId": customer_id}
        ],
        "failedToRevoke": [],
    }
    assert api.coupon(coupon["couponId"])["state"] == "REVOKED"
