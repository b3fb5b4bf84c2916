"""Coupon series and the counts of their coupons."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    func,
    insert,
    select,
    update,
)

from coupons.adapters.driver_sql import DriverStatement
from coupons.adapters.repos.rows import (
    new_id,
    series_of,
    series_of_values,
)
from coupons.adapters.tables import (
    coupon_series,
    coupons,
)
from coupons.domain.codes import normalize
from coupons.domain.model import (
    CouponState,
    DiscountType,
    Series,
    SeriesType,
)

# Every revoke of a series reads it: built once, not per call.
_SERIES = DriverStatement(
    select(coupon_series).where(
        coupon_series.c.id == bindparam("series_id"),
        coupon_series.c.org_id == bindparam("org_id"),
    )
)


def _series_of_row(values: Sequence[Any]) -> Series:
    return series_of_values(coupon_series.columns, values)


class SqlSeriesRepository:
    """Series over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_series(
        self,
        *,
        org_id: int,
        description: str,
        type: SeriesType,
        generic_code: str | None,
        valid_till: datetime,
        discount_type: DiscountType,
        discount_value: Decimal,
        now: datetime,
    ) -> Series:
        result = self.conn.execute(
            insert(coupon_series).values(
                org_id=org_id,
                description=description,
                client_handling_type=type.value,
                generic_code=generic_code,
                generic_code_norm=normalize(generic_code) if generic_code else None,
                valid_till=valid_till,
                discount_type=discount_type.value,
                discount_value=discount_value,
                created_at=now,
            )
        )
        series_id = new_id(result)
        series = self.series(org_id, series_id)
        assert series is not None
        return series

    def series(self, org_id: int, series_id: int) -> Series | None:
        found = _SERIES.objects(
            self.conn, {"series_id": series_id, "org_id": org_id}, _series_of_row
        )
        return found[0] if found else None

    def series_by_description(self, org_id: int, description: str) -> Series | None:
        row = self.conn.execute(
            select(coupon_series)
            .where(coupon_series.c.org_id == org_id, coupon_series.c.description == description)
            .order_by(coupon_series.c.id)
            .limit(1)
        ).first()
        return None if row is None else series_of(row)

    def series_many(self, org_id: int, series_ids: Iterable[int]) -> dict[int, Series]:
        ids = sorted(set(series_ids))
        if not ids:
            return {}
        rows = self.conn.execute(
            select(coupon_series).where(
                coupon_series.c.id.in_(ids), coupon_series.c.org_id == org_id
            )
        )
        return {row.id: series_of(row) for row in rows}

    def generic_series_by_codes(self, org_id: int, norms: Sequence[str]) -> list[Series]:
        """Generic series whose shared code is one of the codes (even before any coupon)."""
        rows = self.conn.execute(
            select(coupon_series)
            .where(coupon_series.c.org_id == org_id, coupon_series.c.generic_code_norm.in_(norms))
            .order_by(coupon_series.c.id)
        )
        return [series_of(row) for row in rows]

    def update_series(
        self,
        org_id: int,
        series_id: int,
        *,
        valid_till: datetime | None = None,
        description: str | None = None,
    ) -> Series | None:
        values: dict[str, Any] = {}
        if valid_till is not None:
            values["valid_till"] = valid_till
        if description is not None:
            values["description"] = description
        if values:
            self.conn.execute(
                update(coupon_series)
                .where(coupon_series.c.id == series_id, coupon_series.c.org_id == org_id)
                .values(**values)
            )
        return self.series(org_id, series_id)

    def state_counts(self, series_id: int) -> dict[CouponState, int]:
        rows = self.conn.execute(
            select(coupons.c.state, func.count())
            .where(coupons.c.series_id == series_id)
            .group_by(coupons.c.state)
        )
        counts = dict.fromkeys(CouponState, 0)
        for state, count in rows:
            counts[CouponState(state)] = int(count)
        return counts

    # --- lists (spec §7) ---------------------------------------------------------------------

    def series_page(self, org_id: int, *, before_id: int | None, limit: int) -> list[Series]:
        """The org's series, newest (highest id) first, below `before_id`."""
        query = select(coupon_series).where(coupon_series.c.org_id == org_id)
        if before_id is not None:
            query = query.where(coupon_series.c.id < before_id)
        query = query.order_by(coupon_series.c.id.desc()).limit(limit)
        return [series_of(row) for row in self.conn.execute(query)]

    def state_counts_many(self, series_ids: Sequence[int]) -> dict[int, dict[CouponState, int]]:
        """Counts per state for each series, in one grouped query (a page of series costs one
        statement, not one per series)."""
        if not series_ids:
            return {}
        rows = self.conn.execute(
            select(coupons.c.series_id, coupons.c.state, func.count())
            .where(coupons.c.series_id.in_(list(series_ids)))
            .group_by(coupons.c.series_id, coupons.c.state)
        )
        counts = {series_id: dict.fromkeys(CouponState, 0) for series_id in series_ids}
        for series_id, state, count in rows:
            counts[int(series_id)][CouponState(state)] = int(count)
        return counts
