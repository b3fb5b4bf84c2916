"""Issuing coupons to customers: from the pool, from fresh codes, or as generic instances."""

from __future__ import annotations

from dataclasses import dataclass

from coupons.adapters.repos import HistoryRecord
from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.model import Action, CouponState, Series, SeriesType
from coupons.services.common import Context, CustomerRef, find_customer, series_for_operation
from coupons.services.series import new_unique_codes
from coupons.services.uow import UnitOfWork

MAX_ISSUE_COUNT = 500


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    coupon_id: int
    code: str
    series: Series
    customer_id: int
    pin: str | None


def issue(
    uow: UnitOfWork, ctx: Context, series_id: int, customer: CustomerRef, count: int = 1
) -> list[IssuedCoupon]:
    """Issue `count` coupons of a series to one customer.

    A pool series hands out its oldest AVAILABLE codes (concurrent issuers skip each other's
    locked rows, so no code is issued twice) and generates new unique codes when the pool runs
    dry. A GENERIC series creates one coupon per issue, all sharing the series' code.
    """
    if not 1 <= count <= MAX_ISSUE_COUNT:
        raise errors.InvalidField("count", f"must be between 1 and {MAX_ISSUE_COUNT}")
    series = series_for_operation(uow, ctx.org_id, series_id)
    if series.type is SeriesType.GENERIC_REDEEMABLE:
        raise errors.NotSupportedForGenericRedeemable()
    if series.is_expired(ctx.now):
        raise errors.SeriesExpired()
    person = find_customer(uow, ctx.org_id, customer)
    issued: list[tuple[int, str, str | None]] = []
    if series.type.has_pool:
        pooled = uow.repo.take_available(series.id, count)
        if pooled:
            changed = uow.repo.mark_issued([c.id for c in pooled], person.id, ctx.now)
            assert changed == len(pooled), "locked pool rows changed under the lock"
            issued.extend((c.id, c.code, c.pin) for c in pooled)
        missing = count - len(pooled)
        if missing:
            needs_pin = series.type is SeriesType.DISC_CODE_PIN
            codes = new_unique_codes(uow, series.id, missing)
            rows = [
                _issued_row(
                    ctx, series, code, person.id, code_rules.generate_pin() if needs_pin else None
                )
                for code in codes
            ]
            ids = uow.repo.add_coupons(rows)
            issued.extend((i, str(r["code"]), r["pin"]) for i, r in zip(ids, rows, strict=True))  # type: ignore[misc]
    else:
        assert series.generic_code is not None
        rows = [
            _issued_row(ctx, series, series.generic_code, person.id, None) for _ in range(count)
        ]
        ids = uow.repo.add_coupons(rows)
        issued.extend((i, series.generic_code, None) for i in ids)
    uow.repo.add_history(
        ctx.org_id,
        [
            HistoryRecord(
                coupon_id=coupon_id,
                action=Action.ISSUE,
                from_state=CouponState.AVAILABLE,
                to_state=CouponState.ISSUED,
                at=ctx.now,
                actor=ctx.actor.username,
                request_id=ctx.request_id,
                reason=None,
            )
            for coupon_id, _, _ in issued
        ],
    )
    return [
        IssuedCoupon(coupon_id=i, code=code, series=series, customer_id=person.id, pin=pin)
        for i, code, pin in issued
    ]


def _issued_row(
    ctx: Context, series: Series, code: str, customer_id: int, pin: str | None
) -> dict[str, object]:
    return {
        "org_id": ctx.org_id,
        "series_id": series.id,
        "code": code,
        "code_norm": code_rules.normalize(code),
        "pin": pin,
        "is_generic": series.type.is_generic,
        "state": CouponState.ISSUED.value,
        "customer_id": customer_id,
        "created_at": ctx.now,
        "updated_at": ctx.now,
    }
