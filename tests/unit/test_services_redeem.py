"""Redeem (all or nothing) and reactivate on in-memory fakes (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coupons.domain import errors
from coupons.domain.model import Action, CouponState, SeriesType
from coupons.services.common import CustomerRef
from coupons.services.redeem import RedeemLine, reactivate, redeem
from tests.unit.world import World

ALICE = CustomerRef(mobile="+1 555 0100")


@pytest.fixture
def world() -> World:
    return World()


def test_redeeming_codes_redeems_each_and_records_redemptions_and_history(world: World) -> None:
    # Given two of Alice's issued coupons
    series = world.series()
    alice = world.customer("+1 555 0100")
    held = world.coupons(series, "R1", "R2", to=alice)
    uow = world.uow()

    # When both are redeemed on one bill
    lines = [RedeemLine("r1"), RedeemLine(" R2 ")]
    done = redeem(uow, world.ctx(), ALICE, lines, "T-1", Decimal("12.50"))

    # Then both are REDEEMED, each with a redemption and a REDEEM history entry
    assert [(r.coupon_id, r.code) for r in done] == [(c.id, c.code) for c in held]
    assert world.states(held) == [CouponState.REDEEMED, CouponState.REDEEMED]
    stored = [world.store.redemptions[r.redemption_id].new for r in done]
    assert {(s.transaction_number, s.bill_amount, s.customer_id) for s in stored} == {
        ("T-1", Decimal("12.50"), alice.id)
    }
    assert [h.change.action for h in world.store.history] == [Action.REDEEM, Action.REDEEM]


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("NOPE1", errors.CouponCodeInvalid),
        ("BOBS1", errors.CouponNotIssuedToCustomer),
        ("USED1", errors.CouponAlreadyRedeemed),
        ("GONE1", errors.CouponRevoked),
        ("OLD1", errors.SeriesExpired),
    ],
)
def test_one_line_that_cannot_be_redeemed_fails_the_whole_request_and_changes_nothing(
    world: World, bad_line: str, expected: type[errors.CouponError]
) -> None:
    # Given a good code of Alice's and codes that cannot be redeemed for her
    series = world.series()
    alice, bob = world.customer("+1 555 0100"), world.customer("+1 555 0199")
    [good] = world.coupons(series, "GOOD1", to=alice)
    world.coupons(series, "BOBS1", to=bob)
    world.coupons(series, "USED1", state=CouponState.REDEEMED, to=alice)
    world.coupons(series, "GONE1", state=CouponState.REVOKED, to=alice)
    world.coupons(world.series(expired=True), "OLD1", to=alice)
    uow = world.uow()

    # When the good code is redeemed together with a bad one
    with pytest.raises(expected):
        redeem(uow, world.ctx(), ALICE, [RedeemLine("GOOD1"), RedeemLine(bad_line)], None, None)

    # Then nothing was written, even before any rollback: every line is checked first
    assert world.coupon(good.id).state is CouponState.ISSUED
    assert world.store.redemptions == {}
    assert world.store.history == []


def test_a_wrong_pin_fails_a_pin_series_redeem(world: World) -> None:
    series = world.series(SeriesType.DISC_CODE_PIN)
    alice = world.customer("+1 555 0100")
    [coupon] = world.coupons(series, "PIN1", to=alice, pin="1234")

    with pytest.raises(errors.InvalidPin):
        redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("PIN1", "9999")], None, None)
    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("PIN1", " 1234 ")], None, None)

    assert [r.coupon_id for r in done] == [coupon.id]


@pytest.mark.parametrize(
    "lines", [[], [RedeemLine("A"), RedeemLine("a ")], [RedeemLine("  ")]], ids=str
)
def test_empty_repeated_or_blank_lines_are_invalid_fields(
    world: World, lines: list[RedeemLine]
) -> None:
    world.customer("+1 555 0100")

    with pytest.raises(errors.InvalidField):
        redeem(world.uow(), world.ctx(), ALICE, lines, None, None)


def test_an_open_generic_code_is_redeemed_once_per_customer_without_issue(world: World) -> None:
    # Given a GENERIC_REDEEMABLE series and a customer who holds none of its coupons
    series = world.series(SeriesType.GENERIC_REDEEMABLE, generic_code="OPEN10")
    alice = world.customer("+1 555 0100")
    uow = world.uow()

    # When she redeems its code
    [done] = redeem(uow, world.ctx(), ALICE, [RedeemLine("open10")], None, None)

    # Then a coupon is created for her already REDEEMED, under her customer lock
    created = world.coupon(done.coupon_id)
    assert (created.series_id, created.state, created.customer_id) == (
        series.id,
        CouponState.REDEEMED,
        alice.id,
    )
    assert uow.customers.locked == [alice.id]
    # and a second redeem of the same code finds it already redeemed
    with pytest.raises(errors.CouponAlreadyRedeemed):
        redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("OPEN10")], None, None)


def test_reactivate_returns_redeemed_coupons_to_issued_once(world: World) -> None:
    # Given a redeemed coupon
    series = world.series()
    alice = world.customer("+1 555 0100")
    [coupon] = world.coupons(series, "X1", to=alice)
    [done] = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("X1")], None, None)

    # When its redemption is reactivated
    [back] = reactivate(world.uow(), world.ctx(), [done.redemption_id])

    # Then the coupon is ISSUED again, and the redemption cannot be reactivated twice
    assert (back.coupon_id, world.coupon(coupon.id).state) == (coupon.id, CouponState.ISSUED)
    assert world.store.history[-1].change.action is Action.REACTIVATE
    with pytest.raises(errors.RedemptionNotFound):
        reactivate(world.uow(), world.ctx(), [done.redemption_id])
    with pytest.raises(errors.RedemptionNotFound):
        reactivate(world.uow(), world.ctx(), [10**9])


@pytest.mark.parametrize("other_state", [CouponState.AVAILABLE, CouponState.ISSUED])
def test_a_copy_of_the_code_in_an_expired_series_does_not_stop_the_customers_own(
    world: World, other_state: CouponState
) -> None:
    # Given the same code in an expired series (a pool code, or Bob's) and in a live one,
    # where it is Alice's
    bob = world.customer("+1 555 0199")
    world.coupons(world.series(expired=True), "SAME1", state=other_state, to=bob)
    alice = world.customer("+1 555 0100")
    [mine] = world.coupons(world.series(), "SAME1", to=alice)

    # When Alice redeems the code
    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("same1")], None, None)

    # Then her own coupon is redeemed
    assert [r.coupon_id for r in done] == [mine.id]
    assert world.coupon(mine.id).state is CouponState.REDEEMED


def test_the_customers_live_copy_is_redeemed_before_her_expired_one(world: World) -> None:
    alice = world.customer("+1 555 0100")
    world.coupons(world.series(expired=True), "TWICE1", to=alice)
    [live] = world.coupons(world.series(), "TWICE1", to=alice)

    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("TWICE1")], None, None)

    assert [r.coupon_id for r in done] == [live.id]


@pytest.mark.parametrize(
    ("alices", "expected"),
    [
        # Her only copy is in the expired series: the expiry is the reason.
        ("expired", errors.SeriesExpired),
        # Only Bob's live copy and an expired pool code: the code is not hers.
        ("none", errors.CouponNotIssuedToCustomer),
        # Her live copy is redeemed already: that, not the other series' expiry.
        ("redeemed", errors.CouponAlreadyRedeemed),
    ],
)
def test_when_no_copy_can_be_redeemed_the_customers_own_copies_give_the_reason(
    world: World, alices: str, expected: type[errors.CouponError]
) -> None:
    alice, bob = world.customer("+1 555 0100"), world.customer("+1 555 0199")
    expired, live = world.series(expired=True), world.series()
    if alices == "expired":
        world.coupons(expired, "CODE1", to=alice)
        world.coupons(live, "CODE1", to=bob)
    elif alices == "none":
        world.coupons(expired, "CODE1", state=CouponState.AVAILABLE)
        world.coupons(live, "CODE1", to=bob)
    else:
        world.coupons(expired, "CODE1", state=CouponState.AVAILABLE)
        world.coupons(live, "CODE1", state=CouponState.REDEEMED, to=alice)

    with pytest.raises(expected):
        redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("CODE1")], None, None)


def test_of_two_live_pin_coupons_with_one_code_the_one_whose_pin_matches_is_redeemed(
    world: World,
) -> None:
    alice = world.customer("+1 555 0100")
    world.coupons(world.series(SeriesType.DISC_CODE_PIN), "PIN2", to=alice, pin="1111")
    [second] = world.coupons(world.series(SeriesType.DISC_CODE_PIN), "PIN2", to=alice, pin="2222")

    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("PIN2", "2222")], None, None)

    assert [r.coupon_id for r in done] == [second.id]


def test_an_expired_open_code_does_not_stop_the_customers_own_coupon_of_that_code(
    world: World,
) -> None:
    world.series(SeriesType.GENERIC_REDEEMABLE, generic_code="OPEN1", expired=True)
    alice = world.customer("+1 555 0100")
    world.customer("+1 555 0142")
    [mine] = world.coupons(world.series(), "OPEN1", to=alice)

    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("open1")], None, None)

    assert [r.coupon_id for r in done] == [mine.id]
    with pytest.raises(errors.SeriesExpired):  # and with no coupon of hers, the expiry shows
        redeem(
            world.uow(),
            world.ctx(),
            CustomerRef(mobile="+1 555 0142"),
            [RedeemLine("OPEN1")],
            None,
            None,
        )


@pytest.mark.parametrize("expired_first", [True, False])
def test_of_two_open_series_with_one_code_the_live_one_answers(
    world: World, expired_first: bool
) -> None:
    made = [
        world.series(SeriesType.GENERIC_REDEEMABLE, generic_code="OPEN2", expired=expired)
        for expired in ((True, False) if expired_first else (False, True))
    ]
    live = made[1] if expired_first else made[0]
    world.customer("+1 555 0100")

    done = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("open2")], None, None)

    assert world.coupon(done[0].coupon_id).series_id == live.id


def test_her_own_issued_coupon_comes_before_an_open_code_of_the_same_text(world: World) -> None:
    world.series(SeriesType.GENERIC_REDEEMABLE, generic_code="MIX1")
    alice = world.customer("+1 555 0100")
    [mine] = world.coupons(world.series(), "MIX1", to=alice)

    first = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("mix1")], None, None)
    second = redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("mix1")], None, None)

    # her issued coupon first; then, as anyone may, the open code once
    assert [r.coupon_id for r in first] == [mine.id]
    assert world.coupon(second[0].coupon_id).series_id != mine.series_id
    with pytest.raises(errors.CouponAlreadyRedeemed):
        redeem(world.uow(), world.ctx(), ALICE, [RedeemLine("MIX1")], None, None)
