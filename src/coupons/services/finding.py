"""Finding things (spec §7): lists of series and coupons, code search, the revocations trail.

Every list pages on an indexed key with a cursor (`domain.paging`), never OFFSET: a page costs
the same at any depth and table size, and a row that existed when a walk began comes exactly
once, however many rows are inserted meanwhile (they get higher ids, or later times). Every
read is scoped to the caller's org: another org's series, customers and coupons are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coupons.domain import codes as code_rules
from coupons.domain import errors
from coupons.domain.model import Coupon, CouponState, Series, StateChange
from coupons.domain.paging import (
    Page,
    check_limit,
    decode_cursor,
    decode_id_cursor,
    decode_moment_cursor,
    list_kind,
    page_of,
)
from coupons.domain.records import EventRecord
from coupons.domain.trail import Revocation, TrailFilter, prefix_successor
from coupons.services.common import Context
from coupons.services.customers import STATUS_FILTERS, active_at
from coupons.services.ports import UnitOfWork

# Cursor tags: a cursor of one list is refused by another, and (`list_kind`) by the same list
# read with other filters.
SERIES = "series"
SERIES_COUPONS = "series-coupons"
CUSTOMER_COUPONS = "customer-coupons"
SEARCH = "search"
REVOCATIONS = "revocations"
HISTORY = "history"
MIN_PREFIX = 3


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    series: Series
    counts: dict[CouponState, int]


def list_series(
    uow: UnitOfWork, ctx: Context, limit: int, after: str | None
) -> Page[SeriesSummary]:
    """The org's series, newest first, each with its coupon counts per state (one grouped
    query for the whole page)."""
    kind = list_kind(SERIES, ctx.org_id)
    before = decode_id_cursor(kind, after)
    found = uow.series.series_page(ctx.org_id, before_id=before, limit=check_limit(limit) + 1)
    page = page_of(found, limit, kind, lambda s: (s.id,))
    counts = uow.series.state_counts_many([s.id for s in page.items])
    empty = dict.fromkeys(CouponState, 0)
    return Page([SeriesSummary(s, counts.get(s.id, empty)) for s in page.items], page.next_cursor)


def series_coupons(
    uow: UnitOfWork,
    ctx: Context,
    series_id: int,
    state: str | None,
    limit: int,
    after: str | None,
) -> Page[Coupon]:
    """A series' coupons in id order, optionally in one state; another org's series is 404."""
    wanted = _state(state)
    if uow.series.series(ctx.org_id, series_id) is None:
        raise errors.SeriesNotFound()
    kind = list_kind(SERIES_COUPONS, ctx.org_id, series_id, wanted.value if wanted else None)
    found = uow.coupons.page_of_series(
        series_id,
        state=wanted,
        after_id=decode_id_cursor(kind, after),
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, kind, lambda c: (c.id,))


def customer_coupons(
    uow: UnitOfWork,
    ctx: Context,
    customer_id: int,
    status: str,
    limit: int,
    after: str | None,
) -> Page[Coupon]:
    """A customer's coupons in id order, filtered as `GET /v2/customers/{id}/coupons` is."""
    states = STATUS_FILTERS.get(status.upper())
    if states is None:
        raise errors.InvalidField("status", "use ACTIVE, REDEEMED, REVOKED or ALL")
    if not uow.customers.find_customers(ctx.org_id, id=customer_id):
        raise errors.CustomerLookupNotFound()
    kind = list_kind(CUSTOMER_COUPONS, ctx.org_id, customer_id, status.upper())
    found = uow.coupons.page_of_customer(
        ctx.org_id,
        customer_id,
        states=states,
        after_id=decode_id_cursor(kind, after),
        limit=check_limit(limit) + 1,
        unexpired_at=active_at(status, ctx),
    )
    return page_of(found, limit, kind, lambda c: (c.id,))


def search_coupons(
    uow: UnitOfWork,
    ctx: Context,
    code: str | None,
    code_prefix: str | None,
    limit: int,
    after: str | None,
) -> Page[Coupon]:
    """Coupons of any of the org's series by exact code or by prefix, case-insensitively,
    ordered by code then id."""
    if (code is None) == (code_prefix is None):
        raise errors.InvalidField("code", "give either code or codePrefix")
    if code is not None:
        low, high, exact = code_rules.normalize(code), None, True
        if not low:
            raise errors.InvalidField("code", "must not be blank")
    else:
        assert code_prefix is not None
        low = code_rules.normalize(code_prefix)
        if len(low) < MIN_PREFIX:
            raise errors.InvalidField("codePrefix", f"at least {MIN_PREFIX} characters")
        high, exact = prefix_successor(low), False
    kind = list_kind(SEARCH, ctx.org_id, "code" if exact else "codePrefix", low)
    key = None if after is None else decode_cursor(kind, after, (str, int))
    found = uow.coupons.search_page(
        ctx.org_id,
        low=low,
        high=high,
        exact=exact,
        after=None if key is None else (str(key[0]), int(key[1])),
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, kind, lambda c: (code_rules.normalize(c.code), c.id))


def revocations(
    uow: UnitOfWork, ctx: Context, where: TrailFilter, limit: int, after: str | None
) -> Page[Revocation]:
    """The trail, newest first: one row per revoke call or job that revoked something."""
    if where.since is not None and where.until is not None and where.until <= where.since:
        raise errors.InvalidField("until", "must be later than since")
    position = None
    kind = list_kind(REVOCATIONS, ctx.org_id, where.actor, where.since, where.until)
    if after is not None:
        at, row_id = decode_moment_cursor(kind, after, int)
        position = (at, int(row_id))
    found = uow.revocations.page(ctx.org_id, where, before=position, limit=check_limit(limit) + 1)
    return page_of(found, limit, kind, lambda r: (r.at.isoformat(), r.id))


def history_range(
    uow: UnitOfWork,
    ctx: Context,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: str | None,
) -> Page[EventRecord]:
    """Every coupon history entry of the org in `since <= at < until`, oldest first (spec §7's
    history range): what an auditor exports for a month, across coupons and series."""
    if since is not None and until is not None and until <= since:
        raise errors.InvalidField("until", "must be later than since")
    kind = list_kind(HISTORY, ctx.org_id, since, until)
    found = uow.history.history_range(
        ctx.org_id,
        since=since,
        until=until,
        after_id=decode_id_cursor(kind, after),
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, kind, lambda e: (e.id,))


def coupon_history(uow: UnitOfWork, ctx: Context, coupon_id: int) -> list[StateChange]:
    """A coupon's history in order; another org's coupon is not found."""
    found = uow.coupons.coupon(ctx.org_id, coupon_id)
    if found is None:
        raise errors.CouponNotFound()
    return uow.history.history(found.id)


def _state(value: str | None) -> CouponState | None:
    if value is None or value == "":
        return None
    try:
        return CouponState(value.strip().upper())
    except ValueError:
        raise errors.InvalidField("state", "use AVAILABLE, ISSUED, REDEEMED or REVOKED") from None
