"""Revoke and reinstate use cases on in-memory fakes: whole-request checks, per-code outcomes,
customer mode and undoing a revoke by its request id (no database)."""

from __future__ import annotations

import pytest

from coupons.domain import errors
from coupons.domain.model import Action, CouponState, SeriesType
from coupons.domain.revoke import FailureReason
from coupons.services.common import CustomerRef
from coupons.services.revoke import (
    MAX_CODES,
    MAX_CUSTOMER_COUPONS,
    RevokeRequest,
    reinstate,
    reinstate_request,
    revoke,
)
from tests.unit.world import OTHER_ORG, World

ALICE_MOBILE, BOB_MOBILE = "+1 555 0100", "+1 555 0199"


@pytest.fixture
def world() -> World:
    return World()


def by_mobile(mobile: str) -> CustomerRef:
    return CustomerRef(mobile=mobile)


# --- codes mode -------------------------------------------------------------------------------


def test_revoking_codes_of_a_series_revokes_them_and_records_one_history_write(
    world: World,
) -> None:
    # Given two issued codes and one in the pool
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    issued = world.coupons(series, "SAVE1", "SAVE2", to=alice)
    pooled = world.coupons(series, "POOL1", state=CouponState.AVAILABLE)
    uow = world.uow()

    # When all three are revoked with a reason
    request = RevokeRequest(series_id=series.id, codes=("save1", " SAVE2 ", "pool1"), reason="x")
    outcome = revoke(uow, world.ctx(), request)

    # Then all are revoked, each remembering its state before, in one history write
    assert [c.id for c in outcome.done] == [c.id for c in issued + pooled]
    assert outcome.failed == {}
    assert world.states(issued + pooled) == [CouponState.REVOKED] * 3
    assert world.coupon(pooled[0].id).revoked_from is CouponState.AVAILABLE
    assert uow.history.writes == 1
    change = uow.history.history(issued[0].id)[-1]
    assert (change.action, change.from_state, change.to_state) == (
        Action.REVOKE,
        CouponState.ISSUED,
        CouponState.REVOKED,
    )
    assert (change.request_id, change.actor, change.reason) == ("req-1", "acme-ops", "x")


def test_each_code_that_cannot_be_revoked_is_reported_in_its_group_and_the_rest_is_revoked(
    world: World,
) -> None:
    # Given a series with a redeemed, a revoked and an issued code
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    [redeemed] = world.coupons(series, "USED1", state=CouponState.REDEEMED, to=alice)
    [revoked] = world.coupons(series, "GONE1", state=CouponState.REVOKED, to=alice)
    [fine] = world.coupons(series, "FINE1", to=alice)

    # When they and an unknown code are revoked
    request = RevokeRequest(series_id=series.id, codes=("nope1", "used1", "gone1", "fine1"))
    outcome = revoke(world.uow(), world.ctx(), request)

    # Then the failures are grouped by reason in first-seen order, the good code revoked
    assert outcome.failed == {
        FailureReason.NOT_FOUND_IN_SERIES: ["nope1", "GONE1"],
        FailureReason.REDEEMED: ["USED1"],
    }
    assert [c.id for c in outcome.done] == [fine.id]
    assert (outcome.total_count, outcome.failed_count) == (4, 3)
    assert world.states([redeemed, revoked, fine]) == [
        CouponState.REDEEMED,
        CouponState.REVOKED,
        CouponState.REVOKED,
    ]


def test_a_code_of_another_customer_is_reported_as_703(world: World) -> None:
    # Given Alice's code
    series = world.series()
    alice, bob = world.customer(ALICE_MOBILE), world.customer(BOB_MOBILE)
    [coupon] = world.coupons(series, "ALICE1", to=alice)

    # When it is revoked naming Bob
    request = RevokeRequest(series_id=series.id, codes=("alice1",), customer=by_mobile(BOB_MOBILE))
    outcome = revoke(world.uow(), world.ctx(), request)

    # Then it is not Bob's to revoke and stays issued
    assert outcome.failed == {FailureReason.NOT_THIS_CUSTOMERS: ["ALICE1"]}
    assert world.coupon(coupon.id).state is CouponState.ISSUED
    assert bob.id != alice.id


def test_one_code_without_a_series_is_looked_for_in_the_org_and_another_orgs_code_is_absent(
    world: World,
) -> None:
    # Given the same code in this org and in another org
    mine = world.coupons(world.series(), "SHARED1")
    theirs = world.coupons(world.series(org_id=OTHER_ORG), "THEIRS1")

    # When each is revoked alone, without a series
    found = revoke(world.uow(), world.ctx(), RevokeRequest(codes=("shared1",)))
    absent = revoke(world.uow(), world.ctx(), RevokeRequest(codes=("theirs1",)))

    # Then this org's is revoked; the other org's is "not found" (404) and untouched
    assert [c.id for c in found.done] == [mine[0].id]
    assert absent.failed == {FailureReason.NOT_FOUND_IN_ORG: ["theirs1"]}
    assert world.states(theirs) == [CouponState.ISSUED]


def test_a_generic_code_revokes_only_the_named_customers_coupon(world: World) -> None:
    # Given a generic series issued to Alice and Bob
    series = world.series(SeriesType.GENERIC, generic_code="WELCOME")
    alice, bob = world.customer(ALICE_MOBILE), world.customer(BOB_MOBILE)
    [alices] = world.coupons(series, "WELCOME", to=alice)
    [bobs] = world.coupons(series, "WELCOME", to=bob)

    # When the code is revoked for Alice
    request = RevokeRequest(
        series_id=series.id, codes=("welcome",), customer=by_mobile(ALICE_MOBILE)
    )
    outcome = revoke(world.uow(), world.ctx(), request)

    # Then only her coupon is revoked
    assert [c.id for c in outcome.done] == [alices.id]
    assert world.states([alices, bobs]) == [CouponState.REVOKED, CouponState.ISSUED]


# --- customer mode -----------------------------------------------------------------------------


def test_customer_mode_revokes_every_issued_coupon_of_the_customer_in_live_series(
    world: World,
) -> None:
    # Given Alice's issued and redeemed coupons, one in an expired series, and Bob's coupon
    live, expired = world.series(), world.series(expired=True)
    alice, bob = world.customer(ALICE_MOBILE), world.customer(BOB_MOBILE)
    issued = world.coupons(live, "A1", "A2", to=alice)
    redeemed = world.coupons(live, "A3", state=CouponState.REDEEMED, to=alice)
    old = world.coupons(expired, "A4", to=alice)
    bobs = world.coupons(live, "B1", to=bob)

    # When Alice's coupons are revoked without codes or series
    outcome = revoke(world.uow(), world.ctx(), RevokeRequest(customer=by_mobile(ALICE_MOBILE)))

    # Then exactly her issued coupons in live series are revoked
    assert [c.id for c in outcome.done] == [c.id for c in issued]
    assert outcome.failed == {}
    assert world.states(issued + redeemed + old + bobs) == [
        CouponState.REVOKED,
        CouponState.REVOKED,
        CouponState.REDEEMED,
        CouponState.ISSUED,
        CouponState.ISSUED,
    ]


def test_a_blank_identifier_beside_a_real_one_is_left_out_not_searched_for(
    world: World,
) -> None:
    # Given Alice with an issued coupon
    live = world.series()
    alice = world.customer(ALICE_MOBILE)
    issued = world.coupons(live, "A1", to=alice)

    # When she is named by her mobile, with the other identifiers sent blank
    ref = CustomerRef(mobile=ALICE_MOBILE, email="  ", external_id="")
    outcome = revoke(world.uow(), world.ctx(), RevokeRequest(customer=ref))

    # Then the blanks do not make the customer ambiguous (9008) or unknown (701)
    assert [c.id for c in outcome.done] == [c.id for c in issued]


def test_customer_mode_refuses_more_coupons_than_the_limit_and_changes_nothing(
    world: World,
) -> None:
    # Given a customer holding one coupon more than the limit
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    held = world.coupons(series, *(f"C{i}" for i in range(MAX_CUSTOMER_COUPONS + 1)), to=alice)

    # When they are revoked, then the whole request fails and nothing changes
    with pytest.raises(errors.TooManyCustomerCoupons):
        revoke(world.uow(), world.ctx(), RevokeRequest(customer=by_mobile(ALICE_MOBILE)))
    assert set(world.states(held)) == {CouponState.ISSUED}
    assert world.store.history == []


# --- whole-request checks ------------------------------------------------------------------------


def _check_cases(world: World) -> dict[str, tuple[RevokeRequest, type[errors.CouponError]]]:
    live = world.series()
    expired = world.series(expired=True)
    redeemable = world.series(SeriesType.GENERIC_REDEEMABLE, generic_code="OPEN")
    generic = world.series(SeriesType.GENERIC, generic_code="GEN")
    foreign = world.series(org_id=OTHER_ORG)
    world.customer(ALICE_MOBILE, email="a@example.com")
    world.customer(BOB_MOBILE, email="b@example.com")
    world.coupons(live, "LIVE1")
    many = tuple(f"C{i}" for i in range(MAX_CODES + 1))
    return {
        "nothing named": (RevokeRequest(series_id=live.id), errors.CodesOrCustomerRequired),
        "too many codes": (RevokeRequest(series_id=live.id, codes=many), errors.TooManyCodes),
        "many codes, no series": (
            RevokeRequest(codes=("A", "B")),
            errors.SeriesRequiredForManyCodes,
        ),
        "unknown series": (RevokeRequest(series_id=10**9, codes=("A",)), errors.InvalidSeries),
        "another org's series": (
            RevokeRequest(series_id=foreign.id, codes=("A",)),
            errors.InvalidSeries,
        ),
        "expired series": (
            RevokeRequest(series_id=expired.id, codes=("A",)),
            errors.SeriesExpired,
        ),
        "generic redeemable series": (
            RevokeRequest(series_id=redeemable.id, codes=("OPEN",)),
            errors.NotSupportedForGenericRedeemable,
        ),
        "generic code without customer": (
            RevokeRequest(series_id=generic.id, codes=("GEN",)),
            errors.GenericCodeNeedsCustomer,
        ),
        "unknown customer": (
            RevokeRequest(customer=CustomerRef(mobile="999999999")),
            errors.CustomerNotFound,
        ),
        "identifiers of two customers": (
            RevokeRequest(customer=CustomerRef(mobile=ALICE_MOBILE, email="b@example.com")),
            errors.AmbiguousCustomer,
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "nothing named",
        "too many codes",
        "many codes, no series",
        "unknown series",
        "another org's series",
        "expired series",
        "generic redeemable series",
        "generic code without customer",
        "unknown customer",
        "identifiers of two customers",
    ],
)
def test_each_whole_request_check_fails_the_call_with_its_error_and_writes_nothing(
    world: World, case: str
) -> None:
    # Given a request that breaks one whole-request rule
    request, expected = _check_cases(world)[case]
    before = {i: row.coupon for i, row in world.store.coupons.items()}

    # When it is revoked, then it fails with that rule's error and changes nothing
    with pytest.raises(expected):
        revoke(world.uow(), world.ctx(), request)
    assert {i: row.coupon for i, row in world.store.coupons.items()} == before
    assert world.store.history == []


def test_a_lone_code_found_only_in_expired_series_is_refused_as_712(world: World) -> None:
    world.coupons(world.series(expired=True), "OLD1")

    with pytest.raises(errors.SeriesExpired):
        revoke(world.uow(), world.ctx(), RevokeRequest(codes=("old1",)))


# --- reinstate -----------------------------------------------------------------------------------


def test_reinstate_returns_revoked_coupons_to_their_state_before_revoke(world: World) -> None:
    # Given an issued and a pool code, both revoked
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    issued = world.coupons(series, "I1", to=alice)
    pooled = world.coupons(series, "P1", state=CouponState.AVAILABLE)
    codes = ("I1", "P1")
    revoke(world.uow(), world.ctx("rev"), RevokeRequest(series_id=series.id, codes=codes))

    # When both (and a code never revoked) are reinstated
    [fine] = world.coupons(series, "F1", to=alice)
    request = RevokeRequest(series_id=series.id, codes=(*codes, "F1"))
    outcome = reinstate(world.uow(), world.ctx("rei"), request)

    # Then each gets back its own earlier state; the unrevoked one is reported as 9017
    assert world.states(issued + pooled + [fine]) == [
        CouponState.ISSUED,
        CouponState.AVAILABLE,
        CouponState.ISSUED,
    ]
    assert outcome.failed == {FailureReason.NOT_REVOKED: ["F1"]}
    last = world.store.history[-1].change
    assert (last.action, last.request_id) == (Action.REINSTATE, "rei")


def test_reinstate_in_customer_mode_takes_the_customers_revoked_coupons(world: World) -> None:
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    held = world.coupons(series, "A1", "A2", to=alice)
    revoke(world.uow(), world.ctx(), RevokeRequest(customer=by_mobile(ALICE_MOBILE)))

    outcome = reinstate(world.uow(), world.ctx(), RevokeRequest(customer=by_mobile(ALICE_MOBILE)))

    assert [c.id for c in outcome.done] == [c.id for c in held]
    assert world.states(held) == [CouponState.ISSUED, CouponState.ISSUED]


def test_reinstating_a_revoke_request_skips_coupons_changed_since(world: World) -> None:
    # Given one revoke call over two codes, one of which was reinstated and revoked again since
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    kept, changed = world.coupons(series, "K1", "C1", to=alice)
    both = RevokeRequest(series_id=series.id, codes=("K1", "C1"))
    revoke(world.uow(), world.ctx("first"), both)
    one = RevokeRequest(series_id=series.id, codes=("C1",))
    reinstate(world.uow(), world.ctx("undo"), one)
    revoke(world.uow(), world.ctx("again"), one)

    # When the first revoke call is undone by its request id
    outcome = reinstate_request(world.uow(), world.ctx("back"), "first", "mistake")

    # Then only the coupon it still explains is reinstated; the other is reported as 9018
    assert [c.id for c in outcome.done] == [kept.id]
    assert outcome.failed == {FailureReason.CHANGED_SINCE: ["C1"]}
    assert world.states([kept, changed]) == [CouponState.ISSUED, CouponState.REVOKED]
    assert world.store.history[-1].change.reason == "mistake"


def test_reinstating_an_unknown_revoke_request_is_an_invalid_field(world: World) -> None:
    with pytest.raises(errors.InvalidField) as raised:
        reinstate_request(world.uow(), world.ctx(), "never-seen", None)

    assert "revokeRequestId" in raised.value.message


@pytest.mark.parametrize("generic_first", [True, False])
def test_a_code_in_a_generic_and_a_generic_redeemable_series_is_811_whichever_came_first(
    world: World, generic_first: bool
) -> None:
    # spec §5 checks GENERIC_REDEEMABLE (811) before a generic code without customer (108)
    kinds = [SeriesType.GENERIC, SeriesType.GENERIC_REDEEMABLE]
    for kind in kinds if generic_first else kinds[::-1]:
        world.series(kind, generic_code="SALE20")

    with pytest.raises(errors.NotSupportedForGenericRedeemable):
        revoke(world.uow(), world.ctx(), RevokeRequest(codes=("SALE20",)))
