"""Revoke or reinstate the coupons a person picked in the console, by coupon id.

The console picks coupons; the API names them by series and code (spec §5), and a shared
GENERIC code held twice by one customer names both of their coupons. A pick must change
exactly what was picked, so it goes by id: the picked coupons are locked in id order, every
series among them gets the API's whole-request checks (712 expired, 811 GENERIC_REDEEMABLE,
in series order), and each coupon gets the API's per-code decision (405 redeemed, 682 not
revocable; 9017 not revoked for reinstate). All of it is one transaction under one request
id: it commits together, and reinstate by that request id undoes it together.
"""

from __future__ import annotations

from coupons.domain import errors
from coupons.domain.model import Action
from coupons.domain.revoke import Outcome
from coupons.services import revoke
from coupons.services.common import Context
from coupons.services.ports import UnitOfWork

MAX_PICKED = 500


def revoke_picked(
    uow: UnitOfWork, ctx: Context, coupon_ids: list[int], reason: str | None
) -> Outcome:
    """Revoke the org's coupons among `coupon_ids`; per-coupon failures are reported."""
    return _change(uow, ctx, Action.REVOKE, coupon_ids, reason)


def reinstate_picked(
    uow: UnitOfWork, ctx: Context, coupon_ids: list[int], reason: str | None
) -> Outcome:
    """Reinstate the org's coupons among `coupon_ids` (the coupon page's one coupon)."""
    return _change(uow, ctx, Action.REINSTATE, coupon_ids, reason)


def _change(
    uow: UnitOfWork, ctx: Context, action: Action, coupon_ids: list[int], reason: str | None
) -> Outcome:
    if len(coupon_ids) > MAX_PICKED:
        raise errors.InvalidField("coupons", f"pick at most {MAX_PICKED}; use a revoke job")
    return revoke.change_coupons(uow, ctx, action, coupon_ids, reason)
