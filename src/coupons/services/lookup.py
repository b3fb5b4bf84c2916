"""Reads a person needs to find a coupon or a customer from one search box (spec §9).

Each read is org-scoped as the API's are: another org's ids and codes are simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coupons.domain import errors
from coupons.domain.codes import normalize
from coupons.domain.model import Coupon, Customer, Series, StateChange, normalize_mobile
from coupons.services import finding
from coupons.services.common import Context
from coupons.services.ports import UnitOfWork

MAX_ID = 2**62
# Coupons a search or a customer's page shows at a time: a GENERIC code may be shared by a
# million holders, and a page of them all was a page of a million rows. A customer's page
# of coupons stays within what one revoke may pick (`picked.MAX_PICKED`).
PAGE = 100


@dataclass(frozen=True, slots=True)
class CouponDetail:
    coupon: Coupon
    series: Series
    holder: Customer | None
    history: list[StateChange]


@dataclass(frozen=True, slots=True)
class CustomerDetail:
    customer: Customer
    coupons: list[Coupon]
    series: dict[int, Series]
    next_cursor: str | None = None  # the next page of the customer's coupons, if any


@dataclass(slots=True)
class Found:
    """What one search text matched: coupons (by id or code) and customers."""

    coupons: list[Coupon] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    series: dict[int, Series] = field(default_factory=dict)
    next_cursor: str | None = None  # more coupons carry the code than this page shows


def search(uow: UnitOfWork, ctx: Context, text: str, after: str | None = None) -> Found:
    """Coupons whose id or code is `text`, and customers with it as mobile, email or
    external id; every reading that fits is tried, since a code may look like a number.
    Coupons by code come a page at a time (`after`: the last page's `next_cursor`), as the
    API's search gives them; the id and the customers are found on the first page."""
    text = text.strip()
    found = Found()
    if not normalize(text):
        return found
    by_code = finding.search_coupons(uow, ctx, text, None, PAGE, after)
    coupons, found.next_cursor = by_code.items, by_code.next_cursor
    if after is not None:
        found.coupons = coupons
        found.series = uow.series.series_many(ctx.org_id, {c.series_id for c in coupons})
        return found
    # ASCII digits only: `isdigit` alone takes `²`, which int() refuses, and `٣` (read as 3)
    if text.isascii() and text.isdigit() and 0 < int(text) < MAX_ID:
        by_id = uow.coupons.coupon(ctx.org_id, int(text))
        if by_id is not None and all(c.id != by_id.id for c in coupons):
            coupons.insert(0, by_id)
        digits: str | None = normalize_mobile(text)
    else:
        digits = normalize_mobile(text) if any(c.isdigit() for c in text) else None
    found.coupons = coupons
    found.series = uow.series.series_many(ctx.org_id, {c.series_id for c in coupons})
    matches = uow.customers.find_customers(
        ctx.org_id,
        mobile_norm=digits or None,
        email_norm=text.casefold() if "@" in text else None,
        external_id=text,
    )
    found.customers = sorted((c for c, _ in matches), key=lambda c: c.id)
    return found


def coupon_detail(uow: UnitOfWork, ctx: Context, coupon_id: int) -> CouponDetail:
    """A coupon with its series, holder and full history; 682 when the org has no such id."""
    coupon = uow.coupons.coupon(ctx.org_id, coupon_id) if 0 < coupon_id < MAX_ID else None
    if coupon is None:
        raise errors.CouponNotFound()
    series = uow.series.series(ctx.org_id, coupon.series_id)
    assert series is not None
    holder = None
    if coupon.customer_id is not None:
        matches = uow.customers.find_customers(ctx.org_id, id=coupon.customer_id)
        holder = matches[0][0] if matches else None
    return CouponDetail(coupon, series, holder, uow.history.history(coupon.id))


def customer_detail(
    uow: UnitOfWork, ctx: Context, customer_id: int, after: str | None = None
) -> CustomerDetail:
    """A customer with a page of the coupons they hold, in id order (`after`: the last
    page's `next_cursor`); 701 when the org has no such customer."""
    matches = (
        uow.customers.find_customers(ctx.org_id, id=customer_id) if 0 < customer_id < MAX_ID else []
    )
    if not matches:
        raise errors.CustomerLookupNotFound()
    customer = matches[0][0]
    found = finding.customer_coupons(uow, ctx, customer.id, "ALL", PAGE, after)
    series = uow.series.series_many(ctx.org_id, {c.series_id for c in found.items})
    return CustomerDetail(customer, found.items, series, found.next_cursor)


def coupons_by_ids(uow: UnitOfWork, ctx: Context, ids: list[int]) -> list[Coupon]:
    """The org's coupons among `ids` (others are ignored, as absent)."""
    wanted = [i for i in ids if 0 < i < MAX_ID]
    return uow.coupons.coupons_by_ids(ctx.org_id, wanted, lock=False) if wanted else []
