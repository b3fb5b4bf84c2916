"""Series, coupons and customers, and the lifecycle rules between coupon states.

AVAILABLE --issue--> ISSUED --redeem--> REDEEMED --reactivate--> ISSUED
AVAILABLE | ISSUED --revoke--> REVOKED --reinstate--> (the state it had before)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class CouponState(StrEnum):
    AVAILABLE = "AVAILABLE"
    ISSUED = "ISSUED"
    REDEEMED = "REDEEMED"
    REVOKED = "REVOKED"


REVOCABLE = (CouponState.AVAILABLE, CouponState.ISSUED)


class SeriesType(StrEnum):
    """The vendor's `clientHandlingType`."""

    DISC_CODE = "DISC_CODE"
    DISC_CODE_PIN = "DISC_CODE_PIN"
    GENERIC = "GENERIC"
    GENERIC_REDEEMABLE = "GENERIC_REDEEMABLE"

    @property
    def has_pool(self) -> bool:
        """Whether the series holds a pool of unique codes."""
        return self in (SeriesType.DISC_CODE, SeriesType.DISC_CODE_PIN)

    @property
    def is_generic(self) -> bool:
        """Whether all coupons of the series share one code."""
        return self in (SeriesType.GENERIC, SeriesType.GENERIC_REDEEMABLE)


class DiscountType(StrEnum):
    ABS = "ABS"
    PERC = "PERC"


class Action(StrEnum):
    """History actions: every state change is one of these."""

    ISSUE = "ISSUE"
    REDEEM = "REDEEM"
    REACTIVATE = "REACTIVATE"
    REVOKE = "REVOKE"
    REINSTATE = "REINSTATE"


# Which state each action moves a coupon to; reinstate returns to the pre-revoke state.
ACTION_TARGET: dict[Action, CouponState | None] = {
    Action.ISSUE: CouponState.ISSUED,
    Action.REDEEM: CouponState.REDEEMED,
    Action.REACTIVATE: CouponState.ISSUED,
    Action.REVOKE: CouponState.REVOKED,
    Action.REINSTATE: None,
}


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    org_id: int
    description: str
    type: SeriesType
    generic_code: str | None
    valid_till: datetime
    discount_type: DiscountType
    discount_value: Decimal
    created_at: datetime

    def is_expired(self, now: datetime) -> bool:
        """A series is expired once its `validTill` lies in the past."""
        return self.valid_till < now


@dataclass(frozen=True, slots=True)
class Coupon:
    id: int
    series_id: int
    code: str
    state: CouponState
    customer_id: int | None
    revoked_from: CouponState | None = None
    pin: str | None = None

    def can_be_revoked(self) -> bool:
        """Only unredeemed, unrevoked coupons can be revoked."""
        return self.state in REVOCABLE


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    org_id: int
    mobile: str | None
    email: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True, slots=True)
class StateChange:
    """One coupon state change: written as history (and an outbox event), read back as such."""

    action: Action
    from_state: CouponState | None
    to_state: CouponState
    at: datetime
    actor: str
    request_id: str
    reason: str | None


# The name the history read side has always used.
HistoryEntry = StateChange


def target_state(coupon: Coupon, action: Action) -> CouponState:
    """The state `action` moves `coupon` to; reinstate returns to the pre-revoke state."""
    target = ACTION_TARGET[action]
    if target is not None:
        return target
    return coupon.revoked_from or CouponState.ISSUED


def replay(initial: CouponState, history: list[StateChange]) -> CouponState:
    """The state a coupon must be in after its history, starting from `initial`."""
    state = initial
    before_revoke: CouponState | None = None
    for entry in history:
        if entry.action is Action.REVOKE:
            before_revoke = state
            state = CouponState.REVOKED
        elif entry.action is Action.REINSTATE:
            assert before_revoke is not None, "reinstate without revoke"
            state = before_revoke
        else:
            target = ACTION_TARGET[entry.action]
            assert target is not None
            state = target
    return state


def normalize_mobile(mobile: str) -> str:
    """Mobiles compare on their digits only (any script's decimal digits, written 0-9)."""
    return "".join(str(unicodedata.decimal(c)) for c in mobile if c.isdecimal())


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively."""
    return email.strip().casefold()
