"""Issuing coupons on in-memory fakes: from the pool, from fresh codes, generic (no database)."""

from __future__ import annotations

import pytest

from coupons.domain import errors
from coupons.domain.codes import normalize
from coupons.domain.model import Action, CouponState, SeriesType
from coupons.services.common import CustomerRef
from coupons.services.issue import MAX_ISSUE_COUNT, issue
from tests.unit.world import World

ALICE = CustomerRef(email="alice@example.com")


@pytest.fixture
def world() -> World:
    return World()


def test_issue_hands_out_the_oldest_pool_codes_first(world: World) -> None:
    # Given a pool of three codes
    series = world.series()
    alice = world.customer(email="alice@example.com")
    pool = world.coupons(series, "P1", "P2", "P3", state=CouponState.AVAILABLE)
    uow = world.uow()

    # When two are issued to Alice
    issued = issue(uow, world.ctx(), series.id, ALICE, 2)

    # Then the two oldest are hers, the third stays in the pool, each with an ISSUE entry
    assert [i.coupon_id for i in issued] == [pool[0].id, pool[1].id]
    assert {i.customer_id for i in issued} == {alice.id}
    assert world.states(pool) == [CouponState.ISSUED, CouponState.ISSUED, CouponState.AVAILABLE]
    assert world.coupon(pool[0].id).customer_id == alice.id
    assert [(h.coupon_id, h.change.action) for h in world.store.history] == [
        (pool[0].id, Action.ISSUE),
        (pool[1].id, Action.ISSUE),
    ]
    assert uow.history.writes == 1


def test_an_empty_pool_generates_fresh_unique_codes_with_pins_for_a_pin_series(
    world: World,
) -> None:
    # Given a PIN series with one pool code
    series = world.series(SeriesType.DISC_CODE_PIN)
    world.customer(email="alice@example.com")
    [pooled] = world.coupons(series, "P1", state=CouponState.AVAILABLE, pin="0000")

    # When three are issued
    issued = issue(world.uow(), world.ctx(), series.id, ALICE, 3)

    # Then the pool code comes first and two new distinct codes follow, each with a PIN
    assert issued[0].coupon_id == pooled.id
    fresh = issued[1:]
    assert len({normalize(i.code) for i in issued}) == 3
    assert all(i.pin for i in fresh)
    assert all(world.coupon(i.coupon_id).state is CouponState.ISSUED for i in fresh)


def test_a_generic_series_issues_new_coupons_sharing_its_code(world: World) -> None:
    series = world.series(SeriesType.GENERIC, generic_code="WELCOME")
    alice = world.customer(email="alice@example.com")

    issued = issue(world.uow(), world.ctx(), series.id, ALICE, 2)

    assert [i.code for i in issued] == ["WELCOME", "WELCOME"]
    assert len({i.coupon_id for i in issued}) == 2
    assert {world.coupon(i.coupon_id).customer_id for i in issued} == {alice.id}


@pytest.mark.parametrize("count", [0, MAX_ISSUE_COUNT + 1])
def test_a_count_outside_the_limits_is_an_invalid_field(world: World, count: int) -> None:
    series = world.series()
    world.customer(email="alice@example.com")

    with pytest.raises(errors.InvalidField):
        issue(world.uow(), world.ctx(), series.id, ALICE, count)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("unknown series", errors.InvalidSeries),
        ("expired series", errors.SeriesExpired),
        ("generic redeemable series", errors.NotSupportedForGenericRedeemable),
        ("unknown customer", errors.CustomerNotFound),
    ],
)
def test_issue_refuses_a_series_or_customer_it_cannot_use_and_writes_nothing(
    world: World, given: str, expected: type[errors.CouponError]
) -> None:
    # Given a pool code and a request that names something unusable
    world.customer(email="alice@example.com")
    series = {
        "unknown series": None,
        "expired series": world.series(expired=True),
        "generic redeemable series": world.series(
            SeriesType.GENERIC_REDEEMABLE, generic_code="OPEN"
        ),
        "unknown customer": world.series(),
    }[given]
    series_id = series.id if series else 10**9
    if series is not None and series.type.has_pool:
        world.coupons(series, "P1", state=CouponState.AVAILABLE)
    customer = CustomerRef(email="nobody@example.com") if given == "unknown customer" else ALICE

    # When a coupon is issued, then the call fails with that error and nothing is written
    with pytest.raises(expected):
        issue(world.uow(), world.ctx(), series_id, customer)
    assert all(row.coupon.state is CouponState.AVAILABLE for row in world.store.coupons.values())
    assert world.store.history == []
