"""Row mappers and predicates shared by the repositories."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CursorResult,
    Row,
    text,
)

from coupons.adapters.tables import (
    coupons,
)
from coupons.domain.model import (
    Coupon,
    CouponState,
    Customer,
    DiscountType,
    Series,
    SeriesType,
)

POOL_CODE = text("is_generic = false")
REVOCABLE_STATES = (CouponState.AVAILABLE.value, CouponState.ISSUED.value)


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT of one row created."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def series_of(row: Row[Any] | Any) -> Series:
    return Series(
        id=row.id,
        org_id=row.org_id,
        description=row.description,
        type=SeriesType(row.client_handling_type),
        generic_code=row.generic_code,
        valid_till=row.valid_till,
        discount_type=DiscountType(row.discount_type),
        discount_value=Decimal(row.discount_value),
        created_at=row.created_at,
    )


# A dict lookup, not `CouponState(text)`: an enum call per row is most of a row's mapping.
_STATES = {state.value: state for state in CouponState}


def coupon_of(row: Row[Any] | Any) -> Coupon:
    return Coupon(
        id=row.id,
        series_id=row.series_id,
        code=row.code,
        state=_STATES[row.state],
        customer_id=row.customer_id,
        revoked_from=_STATES[row.revoked_from] if row.revoked_from else None,
        pin=row.pin,
    )


def customer_of(row: Row[Any] | Any) -> Customer:
    return Customer(
        id=row.id,
        org_id=row.org_id,
        mobile=row.mobile,
        email=row.email,
        external_id=row.external_id,
        first_name=row.first_name,
        last_name=row.last_name,
    )


COUPON_COLUMNS = (
    coupons.c.id,
    coupons.c.series_id,
    coupons.c.code,
    coupons.c.state,
    coupons.c.customer_id,
    coupons.c.revoked_from,
    coupons.c.pin,
)
