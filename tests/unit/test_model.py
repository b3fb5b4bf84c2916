"""Domain model: series and coupon predicates, history replay, identifier normalisation."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.domain.model import (
    Action,
    Coupon,
    CouponState,
    DiscountType,
    HistoryEntry,
    Series,
    SeriesType,
    normalize_email,
    normalize_mobile,
    replay,
)
from coupons.domain.records import RevokeBatch

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def series(valid_till: datetime, type: SeriesType = SeriesType.DISC_CODE) -> Series:
    return Series(
        id=1,
        org_id=1,
        description="s",
        type=type,
        generic_code=None,
        valid_till=valid_till,
        discount_type=DiscountType.ABS,
        discount_value=Decimal(5),
        created_at=NOW,
    )


def entry(action: Action, to_state: CouponState) -> HistoryEntry:
    return HistoryEntry(
        action=action,
        from_state=None,
        to_state=to_state,
        at=NOW,
        actor="tester",
        request_id="r",
        reason=None,
    )


# --- series and coupons ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("valid_till", "expired"),
    [
        (NOW - timedelta(microseconds=1), True),
        (NOW, False),
        (NOW + timedelta(days=1), False),
    ],
)
def test_a_series_is_expired_only_once_valid_till_has_passed(
    valid_till: datetime, expired: bool
) -> None:
    assert series(valid_till).is_expired(NOW) is expired


@pytest.mark.parametrize(
    ("type", "has_pool", "is_generic"),
    [
        (SeriesType.DISC_CODE, True, False),
        (SeriesType.DISC_CODE_PIN, True, False),
        (SeriesType.GENERIC, False, True),
        (SeriesType.GENERIC_REDEEMABLE, False, True),
    ],
)
def test_series_types_know_whether_they_pool_codes_or_share_one(
    type: SeriesType, has_pool: bool, is_generic: bool
) -> None:
    assert (type.has_pool, type.is_generic) == (has_pool, is_generic)


@pytest.mark.parametrize(
    ("state", "revocable"),
    [
        (CouponState.AVAILABLE, True),
        (CouponState.ISSUED, True),
        (CouponState.REDEEMED, False),
        (CouponState.REVOKED, False),
    ],
)
def test_only_unredeemed_unrevoked_coupons_can_be_revoked(
    state: CouponState, revocable: bool
) -> None:
    coupon = Coupon(id=1, series_id=1, code="C", state=state, customer_id=None)

    assert coupon.can_be_revoked() is revocable


# --- history replay -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "actions", "final"),
    [
        (CouponState.AVAILABLE, [], CouponState.AVAILABLE),
        (CouponState.AVAILABLE, [Action.ISSUE], CouponState.ISSUED),
        (CouponState.AVAILABLE, [Action.REVOKE, Action.REINSTATE], CouponState.AVAILABLE),
        (
            CouponState.AVAILABLE,
            [Action.ISSUE, Action.REVOKE, Action.REINSTATE],
            CouponState.ISSUED,
        ),
        (
            CouponState.AVAILABLE,
            [Action.ISSUE, Action.REDEEM, Action.REACTIVATE],
            CouponState.ISSUED,
        ),
        (CouponState.ISSUED, [Action.REDEEM], CouponState.REDEEMED),
    ],
)
def test_replaying_a_history_gives_the_state_it_leads_to(
    initial: CouponState, actions: list[Action], final: CouponState
) -> None:
    history = [entry(a, CouponState.REVOKED) for a in actions]

    assert replay(initial, history) is final


def test_a_reinstate_without_a_revoke_is_an_impossible_history() -> None:
    with pytest.raises(AssertionError):
        replay(CouponState.ISSUED, [entry(Action.REINSTATE, CouponState.ISSUED)])


# Legal moves from each state; reinstate returns to the state before the revoke.
MOVES: dict[CouponState, list[tuple[Action, CouponState | None]]] = {
    CouponState.AVAILABLE: [(Action.ISSUE, CouponState.ISSUED), (Action.REVOKE, None)],
    CouponState.ISSUED: [(Action.REDEEM, CouponState.REDEEMED), (Action.REVOKE, None)],
    CouponState.REDEEMED: [(Action.REACTIVATE, CouponState.ISSUED)],
    CouponState.REVOKED: [(Action.REINSTATE, None)],
}


@given(st.lists(st.integers(min_value=0, max_value=1), max_size=40))
def test_replay_agrees_with_any_legal_walk_of_the_lifecycle(choices: list[int]) -> None:
    # given a legal walk from AVAILABLE, choosing among the allowed moves at each step
    state = CouponState.AVAILABLE
    before_revoke = state
    history: list[HistoryEntry] = []
    for choice in choices:
        action, target = MOVES[state][choice % len(MOVES[state])]
        if action is Action.REVOKE:
            before_revoke, target = state, CouponState.REVOKED
        elif action is Action.REINSTATE:
            target = before_revoke
        assert target is not None
        history.append(entry(action, target))
        state = target

    # then replaying the history lands where the walk did
    assert replay(CouponState.AVAILABLE, history) is state


# --- identifiers ----------------------------------------------------------------------------

digits = st.text(alphabet=string.digits, min_size=1, max_size=20)
formatting = st.text(alphabet=" -+().", max_size=3)


@st.composite
def formatted_mobiles(draw: st.DrawFn) -> tuple[str, str]:
    """A digit string and the same number written with arbitrary punctuation."""
    number = draw(digits)
    written = "".join(draw(formatting) + d for d in number) + draw(formatting)
    return number, written


def test_mobiles_compare_on_digits_only() -> None:
    assert normalize_mobile("+1 (555) 0100") == normalize_mobile("15550100") == "15550100"


@given(formatted_mobiles())
def test_any_formatting_of_a_mobile_normalises_to_its_digits(pair: tuple[str, str]) -> None:
    number, written = pair

    assert normalize_mobile(written) == number


@given(st.text(max_size=40))
def test_normalize_mobile_keeps_only_digits_and_is_idempotent(mobile: str) -> None:
    result = normalize_mobile(mobile)

    assert all(c.isdigit() for c in result)
    assert normalize_mobile(result) == result


def test_emails_compare_case_insensitively() -> None:
    assert normalize_email(" Alice@Example.COM ") == normalize_email("alice@example.com")


emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(alphabet=string.ascii_letters + string.digits + "._+", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=1, max_size=20),
)


@given(emails, st.text(alphabet=" \t", max_size=2))
def test_an_email_in_any_case_with_stray_spaces_normalises_the_same(email: str, space: str) -> None:
    variants = [email, email.upper(), email.lower(), email.swapcase(), space + email + space]

    assert len({normalize_email(v) for v in variants}) == 1


@given(st.text(max_size=40))
def test_normalize_email_is_idempotent(email: str) -> None:
    assert normalize_email(normalize_email(email)) == normalize_email(email)


def test_mobiles_written_in_full_width_digits_match_their_ascii_form() -> None:
    # Given the same number typed with full-width digits and with ASCII digits
    # Then both normalise to the same ASCII digits
    full_width = "".join(chr(0xFF10 + int(d)) if d.isdigit() else d for d in "+1 555 0100")
    assert normalize_mobile(full_width) == normalize_mobile("+1 555 0100") == "15550100"


def test_a_revoke_batch_names_each_coupon_once_with_its_state_before() -> None:
    def batch(ids: tuple[int, ...], states: tuple[CouponState, ...]) -> RevokeBatch:
        return RevokeBatch(1, ids, states, datetime.now(UTC), "agent", "req", None)

    assert batch((1, 2), (CouponState.ISSUED, CouponState.AVAILABLE)).coupon_ids == (1, 2)
    with pytest.raises(ValueError, match="twice"):
        batch((1, 1), (CouponState.ISSUED, CouponState.ISSUED))
    with pytest.raises(ValueError, match="state before"):
        batch((1, 2), (CouponState.ISSUED,))
