"""Per-code revoke and reinstate decisions over loaded coupons (no database)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from coupons.domain.codes import CodeCase, distinct_codes, normalize
from coupons.domain.model import Action, Coupon, CouponState
from coupons.domain.revoke import FailureReason, decide, decide_reinstate, decide_revoke
from coupons.entrypoints.http.render import failure_groups
from coupons.services.revoke import RevokeRequest

ALICE, BOB = 1, 2


def coupon(
    id: int,
    code: str,
    state: CouponState = CouponState.ISSUED,
    customer: int | None = ALICE,
    series: int = 10,
) -> Coupon:
    revoked_from = CouponState.ISSUED if state is CouponState.REVOKED else None
    return Coupon(id, series, code, state, customer, revoked_from=revoked_from)


def test_revocable_coupons_are_done_and_others_fall_into_their_groups() -> None:
    matches = [
        coupon(1, "Good1"),
        coupon(2, "Used1", CouponState.REDEEMED),
        coupon(3, "Gone1", CouponState.REVOKED),
        coupon(4, "Pool1", CouponState.AVAILABLE, customer=None),
    ]

    outcome = decide_revoke(
        ["good1", "USED1", "gone1", "pool1", "nope1"], matches, customer_id=None, series_given=True
    )

    assert [c.id for c in outcome.done] == [1, 4]
    assert outcome.failed == {
        FailureReason.REDEEMED: ["Used1"],
        FailureReason.NOT_FOUND_IN_SERIES: ["Gone1", "nope1"],
    }
    assert (outcome.total_count, outcome.failed_count) == (5, 3)


def test_a_missing_code_without_a_series_is_not_found_in_the_org() -> None:
    outcome = decide_revoke(["nope1"], [], customer_id=None, series_given=False)

    assert outcome.failed == {FailureReason.NOT_FOUND_IN_ORG: ["nope1"]}
    assert FailureReason.NOT_FOUND_IN_ORG.code == 404


def test_with_a_customer_other_customers_and_never_issued_codes_are_703() -> None:
    matches = [
        coupon(1, "Mine1"),
        coupon(2, "Bobs1", customer=BOB),
        coupon(3, "Pool1", CouponState.AVAILABLE, customer=None),
    ]

    outcome = decide_revoke(
        ["mine1", "bobs1", "pool1"], matches, customer_id=ALICE, series_given=True
    )

    assert [c.id for c in outcome.done] == [1]
    assert outcome.failed == {FailureReason.NOT_THIS_CUSTOMERS: ["Bobs1", "Pool1"]}


def test_a_shared_generic_code_revokes_only_the_customers_revocable_instances() -> None:
    matches = [
        coupon(1, "SALE20"),
        coupon(2, "SALE20", customer=BOB),
        coupon(3, "SALE20", CouponState.REDEEMED),
        coupon(4, "SALE20"),
    ]

    outcome = decide_revoke(["sale20"], matches, customer_id=ALICE, series_given=True)

    assert [c.id for c in outcome.done] == [1, 4]
    assert outcome.failed == {}
    assert outcome.total_count == 2


def test_a_generic_code_whose_instances_are_all_redeemed_is_405() -> None:
    matches = [coupon(1, "SALE20", CouponState.REDEEMED), coupon(2, "SALE20", CouponState.REVOKED)]

    outcome = decide_revoke(["SALE20"], matches, customer_id=ALICE, series_given=True)

    assert outcome.failed == {FailureReason.REDEEMED: ["SALE20"]}


def test_failure_groups_write_codes_in_the_requested_case_in_first_seen_order() -> None:
    matches = [coupon(1, "Used1", CouponState.REDEEMED), coupon(2, "Gone1", CouponState.REVOKED)]
    outcome = decide_revoke(
        ["nOpE1", "used1", "gone1"], matches, customer_id=None, series_given=True
    )

    assert failure_groups(outcome, CodeCase.LOWER) == [
        {"errorCode": 682, "errorMessage": "Coupon not found", "couponCodes": ["nope1", "gone1"]},
        {"errorCode": 405, "errorMessage": "Coupon code redeemed", "couponCodes": ["used1"]},
    ]
    assert failure_groups(outcome, CodeCase.AS_IT_IS)[0]["couponCodes"] == ["nOpE1", "Gone1"]
    assert failure_groups(outcome, CodeCase.UPPER)[1]["couponCodes"] == ["USED1"]


def test_reinstate_takes_revoked_coupons_and_reports_the_rest() -> None:
    matches = [coupon(1, "Gone1", CouponState.REVOKED), coupon(2, "Live1")]

    outcome = decide_reinstate(
        ["gone1", "live1", "nope1"], matches, customer_id=None, series_given=True
    )

    assert [c.id for c in outcome.done] == [1]
    assert outcome.failed == {
        FailureReason.NOT_REVOKED: ["Live1"],
        FailureReason.NOT_FOUND_IN_SERIES: ["nope1"],
    }


STATES = st.sampled_from(list(CouponState))


@given(
    stored=st.lists(
        st.tuples(st.sampled_from(["A1", "b2", "C3", "d4"]), STATES, st.sampled_from([None, 1, 2])),
        max_size=8,
    ),
    asked=st.lists(st.sampled_from(["a1", " B2", "c3 ", "D4", "e5"]), min_size=1, max_size=6),
    customer=st.sampled_from([None, 1, 2]),
    series_given=st.booleans(),
)
def test_every_distinct_code_is_counted_exactly_once(
    stored: list[tuple[str, CouponState, int | None]],
    asked: list[str],
    customer: int | None,
    series_given: bool,
) -> None:
    # Given any coupons and any request (codes already trimmed and de-duplicated, as the
    # service does before deciding)
    matches = [coupon(i, code, state, owner) for i, (code, state, owner) in enumerate(stored)]
    codes = distinct_codes(asked)

    # When revoke decides
    outcome = decide_revoke(codes, matches, customer_id=customer, series_given=series_given)

    # Then each code either failed once or revoked at least one coupon, never both
    failed = [code.casefold() for codes_ in outcome.failed.values() for code in codes_]
    done_codes = {c.code.casefold() for c in outcome.done}
    assert len(failed) == len(set(failed))
    assert not done_codes & set(failed)
    assert done_codes | set(failed) == {c.casefold() for c in codes}
    # Only revocable coupons, of the customer when one is named, are ever revoked
    assert all(c.can_be_revoked() for c in outcome.done)
    assert customer is None or all(c.customer_id == customer for c in outcome.done)
    assert outcome.failed_count == len(failed)


CODES = st.lists(st.sampled_from(["a1", "A1 ", " b2", "B2", "c3", "", "  ", "İx", "ß"]), max_size=8)


@given(CODES, st.lists(st.sampled_from(list(CouponState)), min_size=3, max_size=3))
def test_a_request_works_out_its_distinct_codes_and_keys_before_any_transaction(
    codes: list[str], states: list[CouponState]
) -> None:
    # given a revoke request as a client sends it
    request = RevokeRequest(series_id=10, codes=tuple(codes))
    matches = [
        coupon(i, c, s) for i, (c, s) in enumerate(zip(["a1", "B2", "c3"], states, strict=True), 1)
    ]

    # then its distinct codes are those the rules give, each with its matching key
    assert list(request.distinct) == distinct_codes(codes)
    assert list(request.keys) == [normalize(c) for c in request.distinct]
    # and deciding with those keys is deciding without them
    with_keys = decide(
        Action.REVOKE,
        request.distinct,
        matches,
        customer_id=None,
        series_given=True,
        keys=request.keys,
    )
    assert with_keys == decide_revoke(
        list(request.distinct), matches, customer_id=None, series_given=True
    )
