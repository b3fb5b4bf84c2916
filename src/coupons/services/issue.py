"""Issuing coupons to customers: from the pool, from fresh codes, or as generic instances."""

from __future__ import annotations

from dataclasses import dataclass

from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.model import Action, CouponState, Series, SeriesType
from coupons.domain.records import NewCoupon
from coupons.services.common import (
    Context,
    CustomerRef,
    find_customer,
    record_history,
    series_for_operation,
)
from coupons.services.ports import UnitOfWork
from coupons.services.series import new_unique_codes

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
    # Coupons taken from the pool were AVAILABLE; generated and GENERIC ones are made issued,
    # and their history starts from nothing.
    from_pool: set[int] = set()
    if series.type.has_pool:
        pooled = uow.coupons.take_available(series.id, count)
        if pooled:
            changed = uow.coupons.mark_issued([c.id for c in pooled], person.id, ctx.now)
            assert changed == len(pooled), "locked pool rows changed under the lock"
            issued.extend((c.id, c.code, c.pin) for c in pooled)
            from_pool.update(c.id for c in pooled)
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
            ids = uow.coupons.add_coupons(rows)
            issued.extend((i, r.code, r.pin) for i, r in zip(ids, rows, strict=True))
    else:
        assert series.generic_code is not None
        rows = [
            _issued_row(ctx, series, series.generic_code, person.id, None) for _ in range(count)
        ]
        ids = uow.coupons.add_coupons(rows)
        issued.extend((i, series.generic_code, None) for i in ids)
    record_history(
        uow,
        ctx,
        Action.ISSUE,
        [
            (
                coupon_id,
                CouponState.AVAILABLE if coupon_id in from_pool else None,
                CouponState.ISSUED,
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
) -> NewCoupon:
    return NewCoupon(
        org_id=ctx.org_id,
        series_id=series.id,
        code=code,
        state=CouponState.ISSUED,
        is_generic=series.type.is_generic,
        at=ctx.now,
        customer_id=customer_id,
        pin=pin,
    )
