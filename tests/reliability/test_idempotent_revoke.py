"""Idempotency-Key on revoke (spec §5): a replay does nothing, a changed request is 9006."""

from __future__ import annotations

from tests.conftest import Backend
from tests.e2e.conftest import Api, error_code


def test_replaying_a_revoke_with_its_key_answers_the_same_and_changes_nothing(
    backend: Backend, api: Api
) -> None:
    # given a revoke done under an idempotency key
    series_id = api.series(codes=["IDEM-1", "IDEM-2"])
    body = {"couponSeriesId": series_id, "couponCodes": ["IDEM-1"], "reason": "once"}
    key = {"Idempotency-Key": "revoke-once-1"}
    first = api.post("/v2/coupon/revoke", body, headers=key)
    coupon_id = api.ok(first)["revokedCoupons"][0]["couponId"]

    # when the same request is sent again with the same key
    again = api.post("/v2/coupon/revoke", body, headers=key)

    # then the first answer is replayed and the coupon has exactly one revoke entry
    assert again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    history = api.coupon(coupon_id)["history"]
    assert [h["action"] for h in history] == ["REVOKE"]


def test_reusing_a_key_for_a_different_revoke_is_9006_and_changes_nothing(api: Api) -> None:
    # given a revoke done under an idempotency key
    series_id = api.series(codes=["IDEM-3", "IDEM-4"])
    key = {"Idempotency-Key": "revoke-once-2"}
    api.ok(
        api.post(
            "/v2/coupon/revoke",
            {"couponSeriesId": series_id, "couponCodes": ["IDEM-3"]},
            headers=key,
        )
    )

    # when the key is reused for another code
    other = {"couponSeriesId": series_id, "couponCodes": ["IDEM-4"]}
    response = api.post("/v2/coupon/revoke", other, headers=key)

    # then it is 9006 / 422 and the other code is still revocable
    assert response.status_code == 422
    assert error_code(response) == 9006
    assert api.ok(api.revoke(other))["revokedCoupons"][0]["couponCode"] == "IDEM-4"
