"""Row mappers and predicates shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from decimal import Decimal
from types import SimpleNamespace
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


def series_of_values(columns: Iterable[Any], values: Sequence[Any]) -> Series:
    """`series_of` for a row of plain values (a `DriverStatement`'s) of `columns`."""
    return series_of(SimpleNamespace(**{c.key: v for c, v in zip(columns, values, strict=True)}))


# A dict lookup, not `CouponState(text)`: an enum call per row is most of a row's mapping.
_STATES = {state.value: state for state in CouponState}


# A frozen dataclass's `__init__` sets each field through `object.__setattr__`, a call per
# field: 1.2 us a coupon, 60 us for a codes50 lookup's rows, which on SQLite every writer
# waits for. The slots' own setters do the same assignments in a third of the time; the
# instance is the one `Coupon(...)` would make (same fields, equal, same hash).
_NEW = object.__new__
_SET_ID, _SET_SERIES, _SET_CODE, _SET_STATE, _SET_CUSTOMER, _SET_FROM, _SET_PIN = (
    getattr(Coupon, f.name).__set__ for f in fields(Coupon)
)


def coupons_of(rows: Iterable[Any]) -> list[Coupon]:
    """Rows of `COUPON_COLUMNS`, read by position: a `Row`'s attribute access cost four
    times the whole mapping (0.4 ms for a codes50 lookup's 50 rows)."""
    states = _STATES
    found = []
    for i, s, c, st, cu, rf, p in rows:
        coupon = _NEW(Coupon)
        _SET_ID(coupon, i)
        _SET_SERIES(coupon, s)
        _SET_CODE(coupon, c)
        _SET_STATE(coupon, states[st])
        _SET_CUSTOMER(coupon, cu)
        _SET_FROM(coupon, states[rf] if rf else None)
        _SET_PIN(coupon, p)
        found.append(coupon)
    return found


def coupon_of(row: Any) -> Coupon:
    """`coupons_of` for one row."""
    return coupons_of((row,))[0]


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
# `coupon_of` reads these by position, in the order of the Coupon's fields.
assert [c.name for c in COUPON_COLUMNS] == [f.name for f in fields(Coupon)]
