"""Revoke the coupons a person picked in the console, by coupon id.

The console picks coupons, the API names them by series and code (spec §5). This turns a
pick into the API's own revoke requests (one per series and holder, at most 50 codes each,
with the holder given so a shared generic code touches only their coupon) and runs them in
ONE transaction under one request id: they commit together, and reinstate by that request id
undoes them together. Every rule is the API's, in `services.revoke`.
"""

from __future__ import annotations

from coupons.domain import errors
from coupons.domain.model import Coupon
from coupons.domain.revoke import Outcome
from coupons.services import revoke
from coupons.services.common import Context, CustomerRef
from coupons.services.lookup import coupons_by_ids
from coupons.services.ports import UnitOfWork

MAX_PICKED = 500


def requests_for(picked: list[Coupon], reason: str | None) -> list[revoke.RevokeRequest]:
    """The API revoke requests that name exactly the picked coupons."""
    groups: dict[tuple[int, int | None], list[str]] = {}
    for coupon in sorted(picked, key=lambda c: c.id):
        groups.setdefault((coupon.series_id, coupon.customer_id), []).append(coupon.code)
    requests = []
    for (series_id, customer_id), codes in groups.items():
        holder = CustomerRef(id=customer_id) if customer_id is not None else None
        for start in range(0, len(codes), revoke.MAX_CODES):
            requests.append(
                revoke.RevokeRequest(
                    series_id=series_id,
                    codes=tuple(codes[start : start + revoke.MAX_CODES]),
                    customer=holder,
                    reason=reason,
                )
            )
    return requests


def revoke_picked(
    uow: UnitOfWork, ctx: Context, coupon_ids: list[int], reason: str | None
) -> Outcome:
    """Revoke the org's coupons among `coupon_ids`; per-code failures are reported."""
    if len(coupon_ids) > MAX_PICKED:
        raise errors.InvalidField("coupons", f"pick at most {MAX_PICKED}; use a revoke job")
    picked = coupons_by_ids(uow, ctx, coupon_ids)
    if not picked:
        raise errors.InvalidField("coupons", "pick at least one coupon")
    total = Outcome()
    for request in requests_for(picked, reason):
        outcome = revoke.revoke(uow, ctx, request)
        total.done.extend(outcome.done)
        for failure, codes in outcome.failed.items():
            total.failed.setdefault(failure, []).extend(codes)
    return total
