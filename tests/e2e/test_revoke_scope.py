"""Which coupons a revoke reaches, and how each code's outcome is reported (spec §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from coupons.adapters.tables import coupon_series
from tests.conftest import Backend
from tests.e2e.conftest import PAST, Api, error_code


def expire_series(backend: Backend, series_id: int) -> None:
    """Move a series' end into the past (issue refuses expired series, so expire afterwards)."""
    with backend.db.engine.begin() as conn:
        conn.execute(
            update(coupon_series)
            .where(coupon_series.c.id == series_id)
            .values(valid_till=datetime.now(UTC) - timedelta(days=1))
        )


def states(api: Api, *coupons: dict[str, Any]) -> list[str]:
    return [api.coupon(c["couponId"])["state"] for c in coupons]


def groups(entity: dict[str, Any]) -> dict[int, list[str]]:
    return {g["errorCode"]: g["couponCodes"] for g in entity["failedToRevoke"]}


# --- codes mode ------------------------------------------------------------------------


def test_a_never_issued_pool_code_is_revoked_with_no_customer(api: Api) -> None:
    series_id = api.series(codes=["FRESH1"])

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["fresh1"]}))

    [revoked] = entity["revokedCoupons"]
    assert (revoked["couponCode"], revoked["issuedToUserId"]) == ("FRESH1", None)
    assert api.coupon(revoked["couponId"])["state"] == "REVOKED"
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 0


def test_a_single_code_without_a_series_is_found_across_the_org(api: Api) -> None:
    api.series(codes=["OTHER1"])
    series_id = api.series()
    customer_id = api.customer("555-0100")
    coupon = api.issue(series_id, customer_id)

    entity = api.ok(api.revoke({"couponCodes": [coupon["couponCode"].lower()]}))

    assert entity["revokedCoupons"] == [
        {
            "couponId": coupon["couponId"],
            "couponCode": coupon["couponCode"].upper(),
            "issuedToUserId": customer_id,
        }
    ]


def test_a_single_code_of_another_org_is_reported_404_and_left_alone(api: Api, other: Api) -> None:
    # Given a code that exists only in another org
    theirs = other.series(codes=["THEIRS1"])

    # When our org revokes it without a series
    entity = api.ok(api.revoke({"couponCodes": ["THEIRS1"]}))

    # Then it is as unknown as a code that does not exist, and theirs is untouched
    assert groups(entity) == {404: ["THEIRS1"]}
    assert other.ok(other.get(f"/v2/coupon/series/{theirs}"))["counts"]["AVAILABLE"] == 1


def test_a_code_of_another_series_is_reported_682_in_the_given_series(api: Api) -> None:
    elsewhere = api.series(codes=["ELSEWHERE1"])
    series_id = api.series(codes=["HERE1"])

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["ELSEWHERE1"]}))

    assert groups(entity) == {682: ["ELSEWHERE1"]}
    assert api.ok(api.get(f"/v2/coupon/series/{elsewhere}"))["counts"]["AVAILABLE"] == 1


def test_with_a_customer_only_that_customers_codes_are_revoked(api: Api) -> None:
    # Given Alice's coupon, Bob's coupon and a never-issued code in one series
    series_id = api.series(codes=["ALICE1", "BOB1", "NOBODY1"])
    alice, bob = api.customer("555-0101"), api.customer("555-0102")
    mine, theirs = api.issue(series_id, alice), api.issue(series_id, bob)

    # When all three are revoked for Alice
    entity = api.ok(
        api.revoke(
            {
                "couponSeriesId": series_id,
                "couponCodes": ["alice1", "bob1", "nobody1"],
                "customer": {"id": alice},
            }
        )
    )

    # Then only hers is revoked; Bob's and the never-issued code are "not issued to her"
    assert [c["couponId"] for c in entity["revokedCoupons"]] == [mine["couponId"]]
    assert groups(entity) == {703: ["BOB1", "NOBODY1"]}
    assert states(api, mine, theirs) == ["REVOKED", "ISSUED"]
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 1


def test_a_generic_code_with_a_customer_revokes_only_that_customers_instance(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SALE20")
    alice, bob = api.customer("555-0101"), api.customer("555-0102")
    hers, his = api.issue(series_id, alice), api.issue(series_id, bob)

    entity = api.ok(api.revoke({"couponCodes": ["sale20"], "customer": {"mobile": "(555) 0101"}}))

    assert entity["revokedCoupons"] == [
        {"couponId": hers["couponId"], "couponCode": "SALE20", "issuedToUserId": alice}
    ]
    assert states(api, hers, his) == ["REVOKED", "ISSUED"]


def test_a_generic_code_for_a_customer_without_an_instance_is_reported_703(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SALE20")
    api.issue(series_id, api.customer("555-0101"))
    bob = api.customer("555-0102")

    entity = api.ok(
        api.revoke(
            {"couponSeriesId": series_id, "couponCodes": ["SALE20"], "customer": {"id": bob}}
        )
    )

    assert groups(entity) == {703: ["SALE20"]}
    assert entity["revokedCoupons"] == []


# --- customer mode ---------------------------------------------------------------------


def test_customer_mode_with_a_series_revokes_only_issued_coupons_of_that_series(api: Api) -> None:
    # Given a customer with issued, redeemed and revoked coupons in one series, one coupon
    # in another series, and a never-issued code in the series
    series_id = api.series(codes=["SPARE1"])
    other_series = api.series()
    customer_id = api.customer("555-0100")
    issued, redeemed, revoked = api.issue_many(series_id, customer_id, 3)
    elsewhere = api.issue(other_series, customer_id)
    assert api.redeem(customer_id, redeemed["couponCode"]).status_code == 200
    api.ok(api.revoke({"couponCodes": [revoked["couponCode"]]}))

    # When the customer's coupons of the series are revoked
    entity = api.ok(api.revoke({"couponSeriesId": series_id, "customer": {"id": customer_id}}))

    # Then only the issued one in that series is revoked; nothing else is touched or reported
    assert entity == {
        "totalCount": 1,
        "failedCount": 0,
        "revokedCoupons": [
            {
                "couponId": issued["couponId"],
                "couponCode": issued["couponCode"],
                "issuedToUserId": customer_id,
            }
        ],
        "failedToRevoke": [],
    }
    assert states(api, issued, redeemed, revoked, elsewhere) == [
        "REVOKED",
        "REDEEMED",
        "REVOKED",
        "ISSUED",
    ]


def test_customer_mode_without_a_series_revokes_issued_coupons_of_unexpired_series_only(
    api: Api, backend: Backend
) -> None:
    # Given a customer's coupons in two live series and in one that has since expired
    first, second, old = api.series(), api.series("GENERIC", generic_code="SALE20"), api.series()
    customer_id = api.customer("555-0100", email="c@example.com")
    a, b, c = (api.issue(s, customer_id) for s in (first, second, old))
    expire_series(backend, old)

    # When all the customer's coupons are revoked
    entity = api.ok(api.revoke({"customer": {"email": "C@Example.com"}}))

    # Then those of the live series are revoked, the expired series' coupon is out of scope
    assert sorted(c["couponId"] for c in entity["revokedCoupons"]) == sorted(
        [a["couponId"], b["couponId"]]
    )
    assert (entity["totalCount"], entity["failedCount"]) == (2, 0)
    assert states(api, a, b, c) == ["REVOKED", "REVOKED", "ISSUED"]


def test_customer_mode_with_nothing_in_scope_succeeds_with_a_zero_total(api: Api) -> None:
    api.series(codes=["SPARE1"])
    customer_id = api.customer("555-0100")

    entity = api.ok(api.revoke({"customer": {"id": customer_id}}))

    assert entity == {
        "totalCount": 0,
        "failedCount": 0,
        "revokedCoupons": [],
        "failedToRevoke": [],
    }


def test_customer_mode_on_a_generic_series_revokes_that_customers_instances(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SALE20")
    alice, bob = api.customer("555-0101"), api.customer("555-0102")
    hers = api.issue_many(series_id, alice, 2)
    his = api.issue(series_id, bob)

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "customer": {"id": alice}}))

    assert sorted(c["couponId"] for c in entity["revokedCoupons"]) == sorted(
        c["couponId"] for c in hers
    )
    assert states(api, his) == ["ISSUED"]


# --- outcomes and their grouping -------------------------------------------------------


@pytest.fixture
def mixed(api: Api) -> dict[str, Any]:
    """A series holding one code of each outcome for Alice: revocable, redeemed, already
    revoked, Bob's; plus a code the series does not have."""
    series_id = api.series(codes=["Good1a", "Used1a", "Gone1a", "Bobs1a"])
    alice, bob = api.customer("555-0101"), api.customer("555-0102")
    good, used, _gone = api.issue_many(series_id, alice, 3)
    bobs = api.issue(series_id, bob)
    assert api.redeem(alice, "used1a").status_code == 200
    api.ok(api.revoke({"couponCodes": ["gone1a"]}))
    return {"series": series_id, "alice": alice, "good": good, "bobs": bobs, "used": used}


@pytest.mark.parametrize(
    ("case", "good", "used", "gone", "missing", "bobs"),
    [
        ("UPPER", "GOOD1A", "USED1A", "GONE1A", "NOPE1A", "BOBS1A"),
        ("lower", "good1a", "used1a", "gone1a", "nope1a", "bobs1a"),
        ("As_It_Is", "Good1a", "Used1a", "Gone1a", "nOpE1a", "Bobs1a"),
    ],
)
def test_each_outcome_is_grouped_by_error_code_with_codes_written_per_the_requested_case(
    api: Api,
    mixed: dict[str, Any],
    case: str,
    good: str,
    used: str,
    gone: str,
    missing: str,
    bobs: str,
) -> None:
    # When Alice's series is sent every kind of code, spelled in odd cases
    entity = api.ok(
        api.revoke(
            {
                "couponSeriesId": mixed["series"],
                "couponCodes": ["GOOD1A", "uSeD1A", "gone1A", "nOpE1a", "BOBS1a"],
                "customer": {"id": mixed["alice"]},
            },
            couponCodeCase=case,
        )
    )

    # Then one is revoked and each failure sits in its error code's group, written in the case
    # asked for (stored codes as stored for AS_IT_IS; an unknown code as it was sent)
    assert entity["revokedCoupons"] == [
        {
            "couponId": mixed["good"]["couponId"],
            "couponCode": good,
            "issuedToUserId": mixed["alice"],
        }
    ]
    assert entity["failedToRevoke"] == [
        {"errorCode": 405, "errorMessage": "Coupon code redeemed", "couponCodes": [used]},
        {"errorCode": 682, "errorMessage": "Coupon not found", "couponCodes": [gone, missing]},
        {
            "errorCode": 703,
            "errorMessage": "Coupon not issued to this customer",
            "couponCodes": [bobs],
        },
    ]
    assert (entity["totalCount"], entity["failedCount"]) == (5, 4)
    assert states(api, mixed["bobs"], mixed["used"]) == ["ISSUED", "REDEEMED"]


@pytest.mark.parametrize(("case", "written"), [("LOWER", "nope-1x"), ("AS_IT_IS", "Nope-1X")])
def test_a_404_code_is_written_per_the_requested_case(api: Api, case: str, written: str) -> None:
    entity = api.ok(api.revoke({"couponCodes": [" Nope-1X "]}, couponCodeCase=case))

    assert entity["failedToRevoke"] == [
        {"errorCode": 404, "errorMessage": "Coupon code not found", "couponCodes": [written]}
    ]


def test_a_call_where_every_code_fails_is_still_a_success(api: Api, mixed: dict[str, Any]) -> None:
    response = api.revoke(
        {"couponSeriesId": mixed["series"], "couponCodes": ["used1a", "gone1a", "nope1a"]}
    )

    entity = api.ok(response)
    assert (entity["totalCount"], entity["failedCount"], entity["revokedCoupons"]) == (3, 3, [])
    assert groups(entity) == {405: ["USED1A"], 682: ["GONE1A", "NOPE1A"]}


def test_a_single_code_in_an_expired_and_a_live_series_is_revoked_in_the_live_one(
    api: Api,
) -> None:
    # Given the same code in a series that has expired and in a live one
    expired_id = api.series(valid_till=PAST, codes=["TWICE-1"])
    live_id = api.series(codes=["twice-1"])

    # When it is revoked by code alone
    entity = api.ok(api.revoke({"couponCodes": ["Twice-1"]}, couponCodeCase="AS_IT_IS"))

    # Then only the live series' coupon is revoked; the expired one is out of scope
    assert [c["couponCode"] for c in entity["revokedCoupons"]] == ["twice-1"]
    assert entity["totalCount"] == 1 and entity["failedCount"] == 0
    counts = {
        sid: api.ok(api.get(f"/v2/coupon/series/{sid}"))["counts"] for sid in (expired_id, live_id)
    }
    assert counts[expired_id]["AVAILABLE"] == 1 and counts[expired_id]["REVOKED"] == 0
    assert counts[live_id]["REVOKED"] == 1


def test_a_single_code_only_in_an_expired_series_answers_712(api: Api) -> None:
    # Given a code whose only series has expired
    api.series(valid_till=PAST, codes=["OLD-ONLY-1"])

    # When it is revoked by code alone
    response = api.revoke({"couponCodes": ["OLD-ONLY-1"]})

    # Then the call is refused as expired
    assert response.status_code == 400
    assert error_code(response) == 712


def test_customer_mode_leaves_an_open_codes_coupon_alone_as_naming_it_would(api: Api) -> None:
    # Given a live coupon of the customer's, and an open (GENERIC_REDEEMABLE) code she
    # redeemed and had reactivated, so that its coupon is ISSUED to her
    pool = api.series(codes=["OWN-1"])
    open_series = api.series("GENERIC_REDEEMABLE", generic_code="OPENGRX")
    customer_id = api.customer("555-0188")
    own = api.issue(pool, customer_id)
    [redemption] = api.ok(api.redeem(customer_id, "OPENGRX"))["redemptions"]
    api.ok(
        api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redemption["redemptionId"]]}
        )
    )
    assert api.coupon(redemption["couponId"])["state"] == "ISSUED"
    # (naming its series or its code is 811, as for every revoke of such a series)
    named = api.revoke({"couponSeriesId": open_series, "customer": {"id": customer_id}})
    assert error_code(named) == 811

    # When all the customer's coupons are revoked
    entity = api.ok(api.revoke({"customer": {"id": customer_id}}))

    # Then only her own coupon is, and the open code stays hers to redeem
    assert [c["couponId"] for c in entity["revokedCoupons"]] == [own["couponId"]]
    assert api.coupon(redemption["couponId"])["state"] == "ISSUED"
    api.ok(api.redeem(customer_id, "OPENGRX"))
