"""Coupons and their redemptions. Set-based: one statement per step, whatever the batch size."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    String,
    Text,
    Update,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType

from coupons.adapters.driver_sql import DriverStatement
from coupons.adapters.pg_arrays import int_array, text_array
from coupons.adapters.repos.rows import (
    COUPON_COLUMNS,
    POOL_CODE,
    REVOCABLE_STATES,
    coupon_of,
    coupons_of,
)
from coupons.adapters.sqlite_arrays import json_array
from coupons.adapters.tables import (
    coupon_series,
    coupons,
    redemptions,
)
from coupons.domain.codes import normalize
from coupons.domain.model import (
    Coupon,
    CouponState,
    SeriesType,
)
from coupons.domain.records import (
    NewCoupon,
    NewRedemption,
    RedemptionRecord,
)


def _among(postgres: bool, column: Any, name: str) -> ColumnElement[bool]:
    """`column` is one of the values in parameter `name`, sent as one array whatever the
    count: on PostgreSQL `column = ANY(CAST(:name AS type[]))` (an array literal,
    `adapters.pg_arrays`), on SQLite `column IN (SELECT value FROM json_each(:name))` (JSON
    text, `adapters.sqlite_arrays`). The statement text is the same for 1 or 500 values, so
    it is prepared once, SQLAlchemy expands no bind parameters, and the values go as one
    literal rather than being processed item by item."""
    if not postgres:
        values: Select[Any] = select(literal_column("value")).select_from(
            func.json_each(bindparam(name, type_=Text()))
        )
        return column.in_(values)  # type: ignore[no-any-return]
    item = BigInteger() if name.endswith("ids") else String()
    # The parameter goes untyped (no `::VARCHAR`), so PostgreSQL reads it as the array itself,
    # once, when the statement is bound. Typed as text, the cast to an array is an expression
    # that PostgreSQL evaluated again for every row it filtered: on a table without
    # statistics, where the planner filters the org's rows instead of looking each code up,
    # a revoke job's 500-code chunk parsed its array 40,000 times (2-5 s a chunk, against 9
    # ms now).
    return column == any_(cast(bindparam(name, type_=NullType()), ARRAY(item)))  # type: ignore[no-any-return]


def _array_value(postgres: bool, name: str, values: Sequence[Any]) -> Any:
    """The value `_among`'s parameter takes: PostgreSQL's array literal, or JSON text."""
    if not postgres:
        return json_array(values)
    return int_array(values) if name.endswith("ids") else text_array(values)


# The revoke path's statements, built once (per store, and per variant where a request's shape
# changes the SQL): building and cache-keying a statement per call cost more CPU than sending it.
def _by_codes(postgres: bool, in_series: bool, lock: bool) -> Select[Any]:
    conditions = [
        coupons.c.org_id == bindparam("org_id"),
        _among(postgres, coupons.c.code_norm, "norms"),
    ]
    if in_series:
        # `+ 0` keeps the series out of index choice: without statistics (a fresh or freshly
        # loaded table) SQLite and PostgreSQL both preferred the series index and read the
        # whole series for every lookup (a revoke job's chunk of a 1M-code series took
        # seconds); the (org, code) index finds each code's few rows directly.
        conditions.append(coupons.c.series_id + literal_column("0") == bindparam("series_id"))
    query = select(*COUPON_COLUMNS).where(*conditions).order_by(coupons.c.id)
    return query.with_for_update() if lock else query


def _mark(postgres: bool, revoke: bool) -> Update:
    now = bindparam("now", type_=coupons.c.updated_at.type)
    ids = _among(postgres, coupons.c.id, "ids")
    if revoke:
        return (
            update(coupons)
            # Named parameters, not a list: `in_` of a list is expanded anew on every call.
            .where(ids, coupons.c.state.in_([bindparam(s.lower(), s) for s in REVOCABLE_STATES]))
            .values(
                revoked_from=coupons.c.state,
                state=CouponState.REVOKED.value,
                updated_at=now,
                version=coupons.c.version + 1,
            )
        )
    return (
        update(coupons)
        .where(ids, coupons.c.state == CouponState.REVOKED.value)
        .values(
            state=coupons.c.revoked_from,
            revoked_from=None,
            updated_at=now,
            version=coupons.c.version + 1,
        )
    )


_BY_CODES = {
    (postgres, in_series, lock): DriverStatement(_by_codes(postgres, in_series, lock))
    for postgres in (False, True)
    for in_series in (False, True)
    for lock in (False, True)
}


def _by_ids(postgres: bool, lock: bool) -> Select[Any]:
    query = (
        select(*COUPON_COLUMNS)
        .where(coupons.c.org_id == bindparam("org_id"), _among(postgres, coupons.c.id, "ids"))
        .order_by(coupons.c.id)
    )
    return query.with_for_update() if lock else query


_BY_IDS = {
    (postgres, lock): DriverStatement(_by_ids(postgres, lock))
    for postgres in (False, True)
    for lock in (False, True)
}
_MARK = {
    (postgres, revoke): DriverStatement(_mark(postgres, revoke))
    for postgres in (False, True)
    for revoke in (False, True)
}


class SqlCouponRepository:
    """Coupons over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._postgres = conn.dialect.name == "postgresql"

    def _values(self, name: str, values: Sequence[Any]) -> Any:
        return _array_value(self._postgres, name, values)

    def existing_code_norms(self, series_id: int, norms: Sequence[str]) -> set[str]:
        found: set[str] = set()
        # Chunked so 10,000 codes stay under every driver's bind-parameter limit.
        for start in range(0, len(norms), 5000):
            chunk = norms[start : start + 5000]
            found.update(
                self.conn.scalars(
                    select(coupons.c.code_norm).where(
                        coupons.c.series_id == series_id,
                        coupons.c.code_norm.in_(chunk),
                        # Spelled exactly as the unique index's predicate: only then do the
                        # planners use that partial index instead of scanning the series.
                        POOL_CODE,
                    )
                )
            )
        return found

    def add_coupons(self, new: Sequence[NewCoupon]) -> list[int]:
        """Insert coupons in one batched statement; ids come back in input order.

        A coupon created already issued or redeemed is created by that change, whose event
        is its version 1; a pool code waiting to be issued has had no change yet (0).
        """
        if not new:
            return []
        result = self.conn.execute(
            insert(coupons).returning(coupons.c.id, sort_by_parameter_order=True), _rows(new)
        )
        return [int(r[0]) for r in result]

    def add_pool_codes(self, new: Sequence[NewCoupon]) -> set[str]:
        """Insert pool codes (on PostgreSQL in code order, with ids in the order given),
        skipping any the series holds already, committed before or by another upload
        meanwhile; the normalized codes inserted come back.

        Concurrent uploads of overlapping lists, in the order each was sent, waited on each
        other's uncommitted codes in a cycle (PostgreSQL's deadlocks), and a code committed
        meanwhile broke the insert on the unique key (a 500 once the retries ran out). In one
        order the waits cannot form a cycle, and a code added meanwhile is a duplicate."""
        if not new:
            return set()
        rows = _rows(new)
        dialect: Any = sqlite
        if self.conn.dialect.name == "postgresql":  # SQLite runs one writer at a time
            dialect = postgresql
            # Ids still in the order given (a series' coupons list in it), taken first.
            ids = sorted(self.conn.scalars(_NEXT_IDS, {"n": len(rows)}))
            for row, coupon_id in zip(rows, ids, strict=True):
                row["id"] = coupon_id
            rows.sort(key=lambda row: str(row["code_norm"]))
        statement = (
            dialect.insert(coupons)
            .on_conflict_do_nothing(
                index_elements=[coupons.c.series_id, coupons.c.code_norm],
                index_where=text("is_generic = false"),  # the index's own words
            )
            .returning(coupons.c.code_norm)
        )
        return {str(r[0]) for r in self.conn.execute(statement, rows)}

    def take_available(self, series_id: int, count: int) -> list[Coupon]:
        """Lock up to `count` pool codes; concurrent issuers skip each other's rows."""
        rows = self.conn.execute(
            select(*COUPON_COLUMNS)
            # Non-NULL only while AVAILABLE: the partial pool index covers exactly these rows.
            .where(coupons.c.pool_series_id == series_id)
            .order_by(coupons.c.id)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
        return coupons_of(rows)

    def mark_issued(self, ids: Sequence[int], customer_id: int, now: datetime) -> int:
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state == CouponState.AVAILABLE)
            .values(
                state=CouponState.ISSUED.value,
                customer_id=customer_id,
                updated_at=now,
                version=coupons.c.version + 1,
            )
        )
        return result.rowcount

    def coupons_by_codes(
        self, org_id: int, norms: Sequence[str], *, series_id: int | None, lock: bool
    ) -> list[Coupon]:
        """Coupons carrying any of the codes, in a series or across the org, locked in id order."""
        query = _BY_CODES[self._postgres, series_id is not None, lock]
        params: dict[str, Any] = {"org_id": org_id, "norms": self._values("norms", norms)}
        if series_id is not None:
            params["series_id"] = series_id
        return coupons_of(query.rows(self.conn, params))

    def held_by_codes(self, org_id: int, customer_id: int, norms: Sequence[str]) -> list[Coupon]:
        """The customer's coupons carrying any of the codes, locked in id order: a redeem
        locks what it may change, not every copy of a code a million customers share."""
        c = coupons.c
        query = (
            select(*COUPON_COLUMNS)
            .where(c.org_id == org_id, c.customer_id == customer_id, c.code_norm.in_(norms))
            .order_by(c.id)
            .with_for_update()
        )
        return coupons_of(self.conn.execute(query).all())

    def first_carriers(self, org_id: int, norms: Sequence[str]) -> dict[str, dict[int, int]]:
        c = coupons.c
        rows = self.conn.execute(
            select(c.code_norm, c.series_id, func.min(c.id))
            .where(c.org_id == org_id, c.code_norm.in_(norms))
            .group_by(c.code_norm, c.series_id)
        )
        found: dict[str, dict[int, int]] = {}
        for norm, series_id, first in rows:
            found.setdefault(norm, {})[int(series_id)] = int(first)
        return found

    def coupons_of_customer(
        self,
        org_id: int,
        customer_id: int,
        *,
        states: Sequence[CouponState],
        series_id: int | None = None,
        unexpired_at: datetime | None = None,
        revocable_only: bool = False,
        limit: int | None = None,
        lock: bool = False,
    ) -> list[Coupon]:
        query = select(*COUPON_COLUMNS).where(
            coupons.c.org_id == org_id,
            coupons.c.customer_id == customer_id,
            coupons.c.state.in_([s.value for s in states]),
        )
        if series_id is not None:
            query = query.where(coupons.c.series_id == series_id)
        if unexpired_at is not None:
            query = query.where(coupons.c.series_id.in_(_live_series(org_id, unexpired_at)))
        if revocable_only:
            open_series = select(coupon_series.c.id).where(
                coupon_series.c.org_id == org_id,
                coupon_series.c.client_handling_type == SeriesType.GENERIC_REDEEMABLE.value,
            )
            query = query.where(coupons.c.series_id.not_in(open_series))
        query = query.order_by(coupons.c.id)
        if limit is not None:
            query = query.limit(limit)
        if lock:
            query = query.with_for_update()
        return coupons_of(self.conn.execute(query).all())

    def coupons_by_ids(self, org_id: int, ids: Sequence[int], *, lock: bool) -> list[Coupon]:
        """A job chunk's coupons (up to a chunk of ids), in id order."""
        params = {"org_id": org_id, "ids": self._values("ids", ids)}
        return coupons_of(_BY_IDS[self._postgres, lock].rows(self.conn, params))

    def coupon(self, org_id: int, coupon_id: int) -> Coupon | None:
        row = self.conn.execute(
            select(*COUPON_COLUMNS).where(coupons.c.id == coupon_id, coupons.c.org_id == org_id)
        ).first()
        return None if row is None else coupon_of(row)

    def mark_revoked(self, ids: Sequence[int], now: datetime) -> int:
        """Revoke in one statement; the state guard makes a lost race visible in rowcount."""
        params = {"ids": self._values("ids", ids), "now": now}
        return _MARK[self._postgres, True].rowcount(self.conn, params)

    def mark_reinstated(self, ids: Sequence[int], now: datetime) -> int:
        params = {"ids": self._values("ids", ids), "now": now}
        return _MARK[self._postgres, False].rowcount(self.conn, params)

    def set_state(
        self, ids: Sequence[int], *, from_state: CouponState, to_state: CouponState, now: datetime
    ) -> int:
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state == from_state.value)
            .values(state=to_state.value, updated_at=now, version=coupons.c.version + 1)
        )
        return result.rowcount

    def add_redemptions(self, new: Sequence[NewRedemption]) -> list[int]:
        if not new:
            return []
        rows = [
            {
                "org_id": r.org_id,
                "coupon_id": r.coupon_id,
                "customer_id": r.customer_id,
                "transaction_number": r.transaction_number,
                "bill_amount": r.bill_amount,
                "redeemed_at": r.redeemed_at,
                "request_id": r.request_id,
            }
            for r in new
        ]
        result = self.conn.execute(
            insert(redemptions).returning(redemptions.c.id, sort_by_parameter_order=True), rows
        )
        return [int(r[0]) for r in result]

    def redemptions_by_ids(
        self, org_id: int, ids: Sequence[int], *, lock: bool
    ) -> list[RedemptionRecord]:
        query = (
            select(
                redemptions.c.id,
                redemptions.c.coupon_id,
                redemptions.c.customer_id,
                redemptions.c.reactivated_at,
            )
            .where(redemptions.c.org_id == org_id, redemptions.c.id.in_(ids))
            .order_by(redemptions.c.id)
        )
        if lock:
            query = query.with_for_update()
        return [
            RedemptionRecord(
                id=r.id,
                coupon_id=r.coupon_id,
                customer_id=r.customer_id,
                reactivated=r.reactivated_at is not None,
            )
            for r in self.conn.execute(query)
        ]

    def mark_reactivated(self, ids: Sequence[int], now: datetime) -> int:
        result = self.conn.execute(
            update(redemptions)
            .where(redemptions.c.id.in_(ids), redemptions.c.reactivated_at.is_(None))
            .values(reactivated_at=now)
        )
        return result.rowcount

    # --- lists and search (spec §7): keyset pages, each one index range ----------------------

    def page_of_series(
        self, series_id: int, *, state: CouponState | None, after_id: int | None, limit: int
    ) -> list[Coupon]:
        """A series' coupons in id order after `after_id`, read on (series_id, id)."""
        query = select(*COUPON_COLUMNS).where(coupons.c.series_id == series_id)
        if after_id is not None:
            query = query.where(coupons.c.id > after_id)
        if state is not None:
            query = query.where(coupons.c.state == state.value)
        query = query.order_by(coupons.c.id).limit(limit)
        return coupons_of(self.conn.execute(query).all())

    def page_of_customer(
        self,
        org_id: int,
        customer_id: int,
        *,
        states: Sequence[CouponState],
        after_id: int | None,
        limit: int,
        unexpired_at: datetime | None = None,
    ) -> list[Coupon]:
        """A customer's coupons in the states (and in series live at `unexpired_at`, if
        given), in id order after `after_id`."""
        query = select(*COUPON_COLUMNS).where(
            coupons.c.org_id == org_id,
            coupons.c.customer_id == customer_id,
            coupons.c.state.in_([s.value for s in states]),
        )
        if unexpired_at is not None:
            query = query.where(coupons.c.series_id.in_(_live_series(org_id, unexpired_at)))
        if after_id is not None:
            query = query.where(coupons.c.id > after_id)
        query = query.order_by(coupons.c.id).limit(limit)
        return coupons_of(self.conn.execute(query).all())

    def search_page(
        self,
        org_id: int,
        *,
        low: str,
        high: str | None,
        exact: bool,
        after: tuple[str, int] | None,
        limit: int,
    ) -> list[Coupon]:
        """The org's coupons whose normalised code equals `low` (exact) or lies in
        [low, high), ordered by code then id, after the `(code, id)` key: one range of
        ix_coupons_org_code (code point order on both stores)."""
        code = coupons.c.code_norm
        query = select(*COUPON_COLUMNS).where(coupons.c.org_id == org_id)
        if exact:
            query = query.where(code == low)
        else:
            query = query.where(code >= low)
            if high is not None:
                query = query.where(code < high)
        if after is not None:
            # A row comparison, so the range starts at the cursor.
            query = query.where(
                tuple_(code, coupons.c.id)
                > tuple_(
                    bindparam("after_code", after[0], type_=code.type),
                    bindparam("after_id", after[1], type_=coupons.c.id.type),
                )
            )
        query = query.order_by(code, coupons.c.id).limit(limit)
        return coupons_of(self.conn.execute(query).all())


def _live_series(org_id: int, at: datetime) -> Select[Any]:
    """The org's series not expired at `at`."""
    return select(coupon_series.c.id).where(
        coupon_series.c.org_id == org_id, coupon_series.c.valid_till >= at
    )


_NEXT_IDS = text("SELECT nextval('coupons_id_seq') FROM generate_series(1, :n)")


def _rows(new: Sequence[NewCoupon]) -> list[dict[str, Any]]:
    """New coupons as rows to insert."""
    return [
        {
            "org_id": c.org_id,
            "series_id": c.series_id,
            "code": c.code,
            "code_norm": normalize(c.code),
            "pin": c.pin,
            "is_generic": c.is_generic,
            "state": c.state.value,
            "customer_id": c.customer_id,
            "created_at": c.at,
            "updated_at": c.at,
            "version": 0 if c.state is CouponState.AVAILABLE else 1,
        }
        for c in new
    ]
