"""Every query of the project. Set-based: one statement per step, whatever the batch size."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Row,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from coupons.adapters.tables import (
    api_clients,
    coupon_history,
    coupon_series,
    coupons,
    customers,
    idempotency_keys,
    orgs,
    redemptions,
    service_keys,
    webhook_deliveries,
    webhooks,
)
from coupons.domain.codes import normalize
from coupons.domain.model import (
    Action,
    Coupon,
    CouponState,
    Customer,
    DiscountType,
    HistoryEntry,
    Series,
    SeriesType,
)

POOL_CODE = text("is_generic = false")
REVOCABLE_STATES = (CouponState.AVAILABLE.value, CouponState.ISSUED.value)


def _pack_body(body: bytes) -> bytes:
    """A stored response, compressed: a 50-coupon answer shrinks from ~7 KB to under 2 KB,
    which keeps it inside its row instead of on overflow pages written with every revoke."""
    return zlib.compress(body, 1)


def _unpack_body(stored: bytes) -> bytes:
    # Rows stored before compression hold the JSON itself, which starts with "{", never
    # with a zlib header's first byte (0x78).
    return zlib.decompress(stored) if stored[:1] == b"\x78" else stored


_ACTIONS = {a.value: a for a in Action}
_STATES = {s.value: s for s in CouponState}
# Advisory lock namespace that serializes outbox inserts per org on PostgreSQL.
OUTBOX_LOCK_SPACE = 0x0C0B
# Key in a connection's `info`: history actions written in its open transaction, counted
# into metrics on commit (see entrypoints/http/metrics.py).
PENDING_CHANGES = "coupons_pending_changes"


@dataclass(frozen=True, slots=True)
class ClientRecord:
    id: int
    org_id: int
    username: str
    secret_hash: str
    groups: frozenset[str]
    is_active: bool


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    coupon_id: int
    action: Action
    from_state: CouponState | None
    to_state: CouponState
    at: datetime
    actor: str
    request_id: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One coupon_history row read as an event."""

    id: int
    org_id: int
    coupon_id: int
    action: Action
    from_state: CouponState | None
    to_state: CouponState
    at: datetime
    actor: str
    request_id: str
    reason: str | None
    series_id: int | None
    code: str | None
    customer_id: int | None


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: int
    org_id: int
    url: str
    events: frozenset[str]
    secret: str
    status: str
    cursor: int
    attempts: int
    failing_since: datetime | None
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    webhook_id: int
    first_event_id: int
    last_event_id: int
    event_count: int
    attempt: int
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    id: int
    coupon_id: int
    customer_id: int
    reactivated: bool


def _new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT of one row created."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _series(row: Row[Any] | Any) -> Series:
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


def _coupon(row: Row[Any] | Any) -> Coupon:
    return Coupon(
        id=row.id,
        series_id=row.series_id,
        code=row.code,
        state=CouponState(row.state),
        customer_id=row.customer_id,
        revoked_from=CouponState(row.revoked_from) if row.revoked_from else None,
        pin=row.pin,
    )


def _customer(row: Row[Any] | Any) -> Customer:
    return Customer(
        id=row.id,
        org_id=row.org_id,
        mobile=row.mobile,
        email=row.email,
        external_id=row.external_id,
        first_name=row.first_name,
        last_name=row.last_name,
    )


# PostgreSQL: one statement for the whole batch, taking the org's outbox lock itself, so the
# lock is held from this statement's start to COMMIT with no round trip in between.
_INSERT_HISTORY_PG = text(
    "WITH outbox_lock AS (SELECT pg_advisory_xact_lock(:space, :key)) "
    "INSERT INTO coupon_history (org_id, coupon_id, action, from_state, to_state, at, actor, "
    "request_id, reason, series_id, code, customer_id) "
    "SELECT :org_id, c.id, e.action, e.from_state, e.to_state, e.at, e.actor, e.request_id, "
    "e.reason, c.series_id, c.code, c.customer_id "
    "FROM unnest(CAST(:coupon_ids AS bigint[]), CAST(:actions AS text[]), "
    "CAST(:from_states AS text[]), CAST(:to_states AS text[]), CAST(:ats AS timestamptz[]), "
    "CAST(:actors AS text[]), CAST(:request_ids AS text[]), CAST(:reasons AS text[])) "
    "WITH ORDINALITY AS e(coupon_id, action, from_state, to_state, at, actor, request_id, "
    "reason, ord) "
    "JOIN coupons c ON c.id = e.coupon_id CROSS JOIN outbox_lock ORDER BY e.ord"
)

_INSERT_HISTORY = insert(coupon_history).from_select(
    [
        "org_id",
        "coupon_id",
        "action",
        "from_state",
        "to_state",
        "at",
        "actor",
        "request_id",
        "reason",
        "series_id",
        "code",
        "customer_id",
    ],
    select(
        bindparam("h_org_id", type_=coupon_history.c.org_id.type),
        coupons.c.id,
        bindparam("h_action", type_=String()),
        bindparam("h_from_state", type_=String()),
        bindparam("h_to_state", type_=String()),
        bindparam("h_at", type_=coupon_history.c.at.type),
        bindparam("h_actor", type_=String()),
        bindparam("h_request_id", type_=String()),
        bindparam("h_reason", type_=String()),
        coupons.c.series_id,
        coupons.c.code,
        coupons.c.customer_id,
    ).where(coupons.c.id == bindparam("h_coupon_id")),
)

_COUPON_COLUMNS = (
    coupons.c.id,
    coupons.c.series_id,
    coupons.c.code,
    coupons.c.state,
    coupons.c.customer_id,
    coupons.c.revoked_from,
    coupons.c.pin,
)


class SqlRepository:
    """Queries over one open connection inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._history: list[tuple[int, Sequence[HistoryRecord]]] = []

    # --- orgs, clients, keys ------------------------------------------------------------

    def add_org(self, name: str, now: datetime) -> int:
        result = self.conn.execute(insert(orgs).values(name=name, created_at=now))
        return _new_id(result)

    def org_id_by_name(self, name: str) -> int | None:
        value = self.conn.scalar(select(orgs.c.id).where(orgs.c.name == name))
        return None if value is None else int(value)

    def add_client(
        self, org_id: int, username: str, secret_hash: str, groups: Iterable[str], now: datetime
    ) -> int:
        result = self.conn.execute(
            insert(api_clients).values(
                org_id=org_id,
                username=username,
                secret_hash=secret_hash,
                groups=",".join(sorted(groups)),
                is_active=True,
                created_at=now,
            )
        )
        return _new_id(result)

    def _client(self, row: Row[Any] | None) -> ClientRecord | None:
        if row is None:
            return None
        return ClientRecord(
            id=row.id,
            org_id=row.org_id,
            username=row.username,
            secret_hash=row.secret_hash,
            groups=frozenset(g for g in row.groups.split(",") if g),
            is_active=bool(row.is_active),
        )

    def client_by_username(self, username: str) -> ClientRecord | None:
        row = self.conn.execute(
            select(api_clients).where(api_clients.c.username == username)
        ).first()
        return self._client(row)

    def client_by_id(self, client_id: int) -> ClientRecord | None:
        row = self.conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
        return self._client(row)

    def update_client(
        self,
        username: str,
        *,
        is_active: bool | None = None,
        secret_hash: str | None = None,
        groups: Iterable[str] | None = None,
    ) -> bool:
        values: dict[str, Any] = {}
        if is_active is not None:
            values["is_active"] = is_active
        if secret_hash is not None:
            values["secret_hash"] = secret_hash
        if groups is not None:
            values["groups"] = ",".join(sorted(groups))
        result = self.conn.execute(
            update(api_clients).where(api_clients.c.username == username).values(**values)
        )
        return result.rowcount == 1

    def service_key(self, name: str) -> str | None:
        return self.conn.scalar(select(service_keys.c.value).where(service_keys.c.name == name))

    def add_service_key(self, name: str, value: str) -> None:
        self.conn.execute(insert(service_keys).values(name=name, value=value))

    # --- series -------------------------------------------------------------------------

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
        series_id = _new_id(result)
        series = self.series(org_id, series_id)
        assert series is not None
        return series

    def series(self, org_id: int, series_id: int) -> Series | None:
        row = self.conn.execute(
            select(coupon_series).where(
                coupon_series.c.id == series_id, coupon_series.c.org_id == org_id
            )
        ).first()
        return None if row is None else _series(row)

    def series_by_description(self, org_id: int, description: str) -> Series | None:
        row = self.conn.execute(
            select(coupon_series)
            .where(coupon_series.c.org_id == org_id, coupon_series.c.description == description)
            .order_by(coupon_series.c.id)
            .limit(1)
        ).first()
        return None if row is None else _series(row)

    def series_many(self, org_id: int, series_ids: Iterable[int]) -> dict[int, Series]:
        ids = sorted(set(series_ids))
        if not ids:
            return {}
        rows = self.conn.execute(
            select(coupon_series).where(
                coupon_series.c.id.in_(ids), coupon_series.c.org_id == org_id
            )
        )
        return {row.id: _series(row) for row in rows}

    def generic_series_by_codes(self, org_id: int, norms: Sequence[str]) -> list[Series]:
        """Generic series whose shared code is one of the codes (even before any coupon)."""
        rows = self.conn.execute(
            select(coupon_series)
            .where(coupon_series.c.org_id == org_id, coupon_series.c.generic_code_norm.in_(norms))
            .order_by(coupon_series.c.id)
        )
        return [_series(row) for row in rows]

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

    # --- codes and coupons ----------------------------------------------------------------

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

    def add_coupons(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert coupons in one batched statement; ids come back in input order."""
        if not rows:
            return []
        result = self.conn.execute(
            insert(coupons).returning(coupons.c.id, sort_by_parameter_order=True), rows
        )
        return [int(r[0]) for r in result]

    def take_available(self, series_id: int, count: int) -> list[Coupon]:
        """Lock up to `count` pool codes; concurrent issuers skip each other's rows."""
        rows = self.conn.execute(
            select(*_COUPON_COLUMNS)
            # Non-NULL only while AVAILABLE: the partial pool index covers exactly these rows.
            .where(coupons.c.pool_series_id == series_id)
            .order_by(coupons.c.id)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
        return [_coupon(r) for r in rows]

    def mark_issued(self, ids: Sequence[int], customer_id: int, now: datetime) -> int:
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state == CouponState.AVAILABLE)
            .values(state=CouponState.ISSUED.value, customer_id=customer_id, updated_at=now)
        )
        return result.rowcount

    def coupons_by_codes(
        self, org_id: int, norms: Sequence[str], *, series_id: int | None, lock: bool
    ) -> list[Coupon]:
        """Coupons carrying any of the codes, in a series or across the org, locked in id order."""
        conditions = [coupons.c.org_id == org_id, coupons.c.code_norm.in_(norms)]
        if series_id is not None:
            conditions.append(coupons.c.series_id == series_id)
        query = select(*_COUPON_COLUMNS).where(*conditions).order_by(coupons.c.id)
        if lock:
            query = query.with_for_update()
        return [_coupon(r) for r in self.conn.execute(query)]

    def coupons_of_customer(
        self,
        org_id: int,
        customer_id: int,
        *,
        states: Sequence[CouponState],
        series_id: int | None = None,
        unexpired_at: datetime | None = None,
        limit: int | None = None,
        lock: bool = False,
    ) -> list[Coupon]:
        query = select(*_COUPON_COLUMNS).where(
            coupons.c.org_id == org_id,
            coupons.c.customer_id == customer_id,
            coupons.c.state.in_([s.value for s in states]),
        )
        if series_id is not None:
            query = query.where(coupons.c.series_id == series_id)
        if unexpired_at is not None:
            live = select(coupon_series.c.id).where(
                coupon_series.c.org_id == org_id, coupon_series.c.valid_till >= unexpired_at
            )
            query = query.where(coupons.c.series_id.in_(live))
        query = query.order_by(coupons.c.id)
        if limit is not None:
            query = query.limit(limit)
        if lock:
            query = query.with_for_update()
        return [_coupon(r) for r in self.conn.execute(query)]

    def coupons_by_ids(self, org_id: int, ids: Sequence[int], *, lock: bool) -> list[Coupon]:
        query = (
            select(*_COUPON_COLUMNS)
            .where(coupons.c.org_id == org_id, coupons.c.id.in_(ids))
            .order_by(coupons.c.id)
        )
        if lock:
            query = query.with_for_update()
        return [_coupon(r) for r in self.conn.execute(query)]

    def coupon(self, org_id: int, coupon_id: int) -> Coupon | None:
        row = self.conn.execute(
            select(*_COUPON_COLUMNS).where(coupons.c.id == coupon_id, coupons.c.org_id == org_id)
        ).first()
        return None if row is None else _coupon(row)

    def mark_revoked(self, ids: Sequence[int], now: datetime) -> int:
        """Revoke in one statement; the state guard makes a lost race visible in rowcount."""
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state.in_(REVOCABLE_STATES))
            .values(revoked_from=coupons.c.state, state=CouponState.REVOKED.value, updated_at=now)
        )
        return result.rowcount

    def mark_reinstated(self, ids: Sequence[int], now: datetime) -> int:
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state == CouponState.REVOKED.value)
            .values(state=coupons.c.revoked_from, revoked_from=None, updated_at=now)
        )
        return result.rowcount

    def set_state(
        self, ids: Sequence[int], *, from_state: CouponState, to_state: CouponState, now: datetime
    ) -> int:
        result = self.conn.execute(
            update(coupons)
            .where(coupons.c.id.in_(ids), coupons.c.state == from_state.value)
            .values(state=to_state.value, updated_at=now)
        )
        return result.rowcount

    # --- history --------------------------------------------------------------------------

    def add_history(self, org_id: int, entries: Sequence[HistoryRecord]) -> None:
        """Record state changes; each row is also an outbox event.

        The rows are written by `flush_history`, which the unit of work calls right before
        COMMIT: on PostgreSQL that takes the org's outbox lock, and a lock taken here would be
        held while the rest of the request (rendering, the idempotency record) runs, and any
        wait for the interpreter in a busy server worker, serializing the org's writers.
        """
        if entries:
            self._history.append((org_id, entries))

    def flush_history(self) -> None:
        """Write the recorded changes: one batched insert per use-case step."""
        pending, self._history = self._history, []
        for org_id, entries in pending:
            self._insert_history(org_id, entries)

    def _insert_history(self, org_id: int, entries: Sequence[HistoryRecord]) -> None:
        # The event copies the coupon as it is at commit (after the change), read by the
        # insert itself rather than by a separate query.
        if self.conn.dialect.name == "postgresql":
            # Event ids come from a sequence, handed out before commit: without the lock a
            # transaction could commit a lower id after a reader has moved past a higher one,
            # and cursor readers would miss it. Held from here to commit, per org. SQLite
            # writers are already serialized by BEGIN IMMEDIATE.
            result = self.conn.execute(
                _INSERT_HISTORY_PG,
                {
                    "space": OUTBOX_LOCK_SPACE,
                    "key": org_id % 2**31,
                    "org_id": org_id,
                    "coupon_ids": [e.coupon_id for e in entries],
                    "actions": [e.action.value for e in entries],
                    "from_states": [e.from_state.value if e.from_state else None for e in entries],
                    "to_states": [e.to_state.value for e in entries],
                    "ats": [e.at for e in entries],
                    "actors": [e.actor for e in entries],
                    "request_ids": [e.request_id for e in entries],
                    "reasons": [e.reason for e in entries],
                },
            )
        else:
            result = self.conn.execute(
                _INSERT_HISTORY,
                [
                    {
                        "h_org_id": org_id,
                        "h_coupon_id": e.coupon_id,
                        "h_action": e.action.value,
                        "h_from_state": e.from_state.value if e.from_state else None,
                        "h_to_state": e.to_state.value,
                        "h_at": e.at,
                        "h_actor": e.actor,
                        "h_request_id": e.request_id,
                        "h_reason": e.reason,
                    }
                    for e in entries
                ],
            )
        # A coupon id that matches no row would silently lose its history and its event.
        if result.rowcount not in (-1, len(entries)):
            raise RuntimeError("history rows written do not match the changes recorded")
        pending = self.conn.info.setdefault(PENDING_CHANGES, Counter())
        pending.update(e.action.value for e in entries)

    def history(self, coupon_id: int) -> list[HistoryEntry]:
        rows = self.conn.execute(
            select(coupon_history)
            .where(coupon_history.c.coupon_id == coupon_id)
            .order_by(coupon_history.c.id)
        )
        return [
            HistoryEntry(
                action=Action(r.action),
                from_state=CouponState(r.from_state) if r.from_state else None,
                to_state=CouponState(r.to_state),
                at=r.at,
                actor=r.actor,
                request_id=r.request_id,
                reason=r.reason,
            )
            for r in rows
        ]

    def revoked_by_request(self, org_id: int, request_id: str) -> list[tuple[int, bool]]:
        """Coupons a revoke request changed, each with whether that revoke is still its latest
        history entry (so a later change can be told apart)."""
        latest = (
            select(coupon_history.c.coupon_id, func.max(coupon_history.c.id).label("last_id"))
            .where(coupon_history.c.org_id == org_id)
            .group_by(coupon_history.c.coupon_id)
            .subquery()
        )
        rows = self.conn.execute(
            select(coupon_history.c.coupon_id, coupon_history.c.id == latest.c.last_id)
            .join(latest, latest.c.coupon_id == coupon_history.c.coupon_id)
            .where(
                coupon_history.c.org_id == org_id,
                coupon_history.c.request_id == request_id,
                coupon_history.c.action == Action.REVOKE.value,
            )
            .order_by(coupon_history.c.coupon_id)
        )
        return [(int(cid), bool(is_last)) for cid, is_last in rows]

    # --- customers ------------------------------------------------------------------------

    def add_customer(self, org_id: int, values: dict[str, Any], now: datetime) -> int:
        result = self.conn.execute(
            insert(customers).values(org_id=org_id, created_at=now, **values)
        )
        return _new_id(result)

    def find_customers(
        self,
        org_id: int,
        *,
        id: int | None = None,
        mobile_norm: str | None = None,
        email_norm: str | None = None,
        external_id: str | None = None,
    ) -> list[tuple[Customer, set[str]]]:
        """Customers matching any identifier, each with the identifiers it matched."""
        conditions = []
        if id is not None:
            conditions.append(customers.c.id == id)
        if mobile_norm is not None:
            conditions.append(customers.c.mobile_norm == mobile_norm)
        if email_norm is not None:
            conditions.append(customers.c.email_norm == email_norm)
        if external_id is not None:
            conditions.append(customers.c.external_id == external_id)
        if not conditions:
            return []
        rows = self.conn.execute(
            select(customers).where(customers.c.org_id == org_id, or_(*conditions))
        )
        found = []
        for row in rows:
            matched = set()
            if id is not None and row.id == id:
                matched.add("id")
            if mobile_norm is not None and row.mobile_norm == mobile_norm:
                matched.add("mobile")
            if email_norm is not None and row.email_norm == email_norm:
                matched.add("email")
            if external_id is not None and row.external_id == external_id:
                matched.add("externalId")
            found.append((_customer(row), matched))
        return found

    def lock_customer(self, org_id: int, customer_id: int) -> None:
        """Hold the customer's row until commit, to serialize decisions about its coupons.

        `FOR NO KEY UPDATE` still lets other transactions insert rows that reference the
        customer. SQLite has no row locks; its writers are serialized by `BEGIN IMMEDIATE`.
        """
        self.conn.execute(
            select(customers.c.id)
            .where(customers.c.org_id == org_id, customers.c.id == customer_id)
            .with_for_update(key_share=True)
        )

    # --- redemptions ----------------------------------------------------------------------

    def add_redemptions(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
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

    # --- idempotency ----------------------------------------------------------------------

    def stored_response(self, client_id: int, key: str, since: datetime) -> StoredResponse | None:
        row = self.conn.execute(
            select(
                idempotency_keys.c.fingerprint,
                idempotency_keys.c.status_code,
                idempotency_keys.c.body,
            ).where(
                idempotency_keys.c.client_id == client_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.created_at >= since,
            )
        ).first()
        if row is None:
            return None
        return StoredResponse(row.fingerprint, row.status_code, _unpack_body(bytes(row.body)))

    def store_response(
        self,
        *,
        client_id: int,
        org_id: int,
        key: str,
        fingerprint: str,
        status_code: int,
        body: bytes,
        now: datetime,
        expired_before: datetime,
    ) -> None:
        # An expired row under the same key is replaced, not kept.
        self.conn.execute(
            delete(idempotency_keys).where(
                and_(
                    idempotency_keys.c.client_id == client_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at < expired_before,
                )
            )
        )
        self.conn.execute(
            insert(idempotency_keys).values(
                client_id=client_id,
                org_id=org_id,
                key=key,
                fingerprint=fingerprint,
                status_code=status_code,
                body=_pack_body(body),
                created_at=now,
            )
        )

    # --- events (the coupon_history outbox) -------------------------------------------------

    def events(self, org_id: int, after: int, limit: int) -> list[EventRecord]:
        """The org's events with ids above `after`, oldest first."""
        h = coupon_history.c
        rows = self.conn.execute(
            select(
                h.id,
                h.org_id,
                h.coupon_id,
                h.action,
                h.from_state,
                h.to_state,
                h.at,
                h.actor,
                h.request_id,
                h.reason,
                h.series_id,
                h.code,
                h.customer_id,
            )
            .where(coupon_history.c.org_id == org_id, coupon_history.c.id > after)
            .order_by(coupon_history.c.id)
            .limit(limit)
        )
        # By position with dict look-ups: a delivery reads up to 1,000 rows a batch, and
        # attribute access on rows and Enum() calls were most of its CPU time. The columns
        # are selected in EventRecord's field order.
        return [
            EventRecord(
                r[0],
                r[1],
                r[2],
                _ACTIONS[r[3]],
                _STATES[r[4]] if r[4] else None,
                _STATES[r[5]],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
            )
            for r in rows.all()
        ]

    def last_event_id(self, org_id: int) -> int:
        value = self.conn.scalar(
            select(func.max(coupon_history.c.id)).where(coupon_history.c.org_id == org_id)
        )
        return 0 if value is None else int(value)

    # --- webhooks ---------------------------------------------------------------------------

    def _webhook(self, row: Row[Any]) -> WebhookRecord:
        return WebhookRecord(
            id=row.id,
            org_id=row.org_id,
            url=row.url,
            events=frozenset(e for e in row.events.split(",") if e),
            secret=row.secret,
            status=row.status,
            cursor=int(row.cursor),
            attempts=row.attempts,
            failing_since=row.failing_since,
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            created_at=row.created_at,
        )

    def add_webhook(
        self, *, org_id: int, url: str, events: Iterable[str], secret: str, now: datetime
    ) -> WebhookRecord:
        """A subscription starting after the org's latest event (it gets what follows)."""
        result = self.conn.execute(
            insert(webhooks).values(
                org_id=org_id,
                url=url,
                events=",".join(sorted(events)),
                secret=secret,
                status="ACTIVE",
                cursor=self.last_event_id(org_id),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        found = self.webhook(org_id, _new_id(result))
        assert found is not None
        return found

    def webhook(self, org_id: int, webhook_id: int) -> WebhookRecord | None:
        row = self.conn.execute(
            select(webhooks).where(
                webhooks.c.id == webhook_id,
                webhooks.c.org_id == org_id,
                webhooks.c.status != "DELETED",
            )
        ).first()
        return None if row is None else self._webhook(row)

    def webhooks_of_org(self, org_id: int) -> list[WebhookRecord]:
        rows = self.conn.execute(
            select(webhooks)
            .where(webhooks.c.org_id == org_id, webhooks.c.status != "DELETED")
            .order_by(webhooks.c.id)
        )
        return [self._webhook(r) for r in rows]

    def delete_webhook(self, org_id: int, webhook_id: int) -> bool:
        """Soft delete: the worker stops at once and the secret is wiped; delivery records
        stay for audit."""
        result = self.conn.execute(
            update(webhooks)
            .where(
                webhooks.c.id == webhook_id,
                webhooks.c.org_id == org_id,
                webhooks.c.status != "DELETED",
            )
            .values(status="DELETED", secret="", lease_owner=None, lease_until=None)
        )
        return result.rowcount == 1

    def revive_webhook(self, webhook_id: int, now: datetime, *, org_id: int | None = None) -> bool:
        """Put a subscription back on schedule now, with a fresh retry budget."""
        query = update(webhooks).where(
            webhooks.c.id == webhook_id, webhooks.c.status.in_(("ACTIVE", "DEAD"))
        )
        if org_id is not None:
            query = query.where(webhooks.c.org_id == org_id)
        result = self.conn.execute(
            query.values(status="ACTIVE", attempts=0, failing_since=None, next_attempt_at=now)
        )
        return result.rowcount == 1

    def _due(self, now: datetime, limit: int) -> Select[tuple[int]]:
        """Subscriptions due now, not leased, with events after their cursor."""
        pending = (
            select(coupon_history.c.id)
            .where(
                coupon_history.c.org_id == webhooks.c.org_id,
                coupon_history.c.id > webhooks.c.cursor,
            )
            .exists()
        )
        return (
            select(webhooks.c.id)
            .where(
                webhooks.c.status == "ACTIVE",
                webhooks.c.next_attempt_at <= now,
                or_(webhooks.c.lease_until.is_(None), webhooks.c.lease_until < now),
                pending,
            )
            .order_by(webhooks.c.next_attempt_at, webhooks.c.id)
            .limit(limit)
        )

    def due_webhooks(self, now: datetime, limit: int) -> list[int]:
        return [int(i) for i in self.conn.scalars(self._due(now, limit))]  # type: ignore[call-overload]

    def claim_webhooks(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookRecord]:
        """Lease up to `limit` due subscriptions that have undelivered events.

        A lease is taken only where none is held or it has expired; PostgreSQL workers skip
        each other's locked rows, SQLite writers are serialized by BEGIN IMMEDIATE.
        """
        ids = list(self.conn.scalars(self._due(now, limit).with_for_update(skip_locked=True)))
        if not ids:
            return []
        free = or_(webhooks.c.lease_until.is_(None), webhooks.c.lease_until < now)
        self.conn.execute(
            update(webhooks)
            .where(webhooks.c.id.in_(ids), free)
            .values(lease_owner=owner, lease_until=lease_until)
        )
        rows = self.conn.execute(
            select(webhooks)
            .where(webhooks.c.id.in_(ids), webhooks.c.lease_owner == owner)
            .order_by(webhooks.c.id)
        )
        return [self._webhook(r) for r in rows]

    def finish_delivery(
        self,
        webhook_id: int,
        owner: str,
        *,
        cursor: int | None,
        attempts: int,
        failing_since: datetime | None,
        next_attempt_at: datetime,
        status: str,
        last_error: str | None,
    ) -> bool:
        """Store a delivery's result and release the lease, if this worker still holds it."""
        values: dict[str, Any] = {
            "attempts": attempts,
            "failing_since": failing_since,
            "next_attempt_at": next_attempt_at,
            "last_error": last_error,
            "lease_owner": None,
            "lease_until": None,
        }
        query = update(webhooks).where(
            webhooks.c.id == webhook_id,
            webhooks.c.lease_owner == owner,
            webhooks.c.status == "ACTIVE",
        )
        if cursor is not None:
            # The cursor only moves forward, even if a slower duplicate finishes later.
            values["cursor"] = (
                func.max(webhooks.c.cursor, cursor)
                if self._is_sqlite
                else (func.greatest(webhooks.c.cursor, cursor))
            )
        values["status"] = status
        result = self.conn.execute(query.values(**values))
        return result.rowcount == 1

    @property
    def _is_sqlite(self) -> bool:
        return self.conn.dialect.name == "sqlite"

    def add_delivery(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(webhook_deliveries).values(**row))

    def deliveries(self, webhook_id: int, limit: int) -> list[DeliveryRecord]:
        """A subscription's latest delivery attempts, newest first."""
        rows = self.conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        return [
            DeliveryRecord(
                id=r.id,
                webhook_id=r.webhook_id,
                first_event_id=int(r.first_event_id),
                last_event_id=int(r.last_event_id),
                event_count=r.event_count,
                attempt=r.attempt,
                outcome=r.outcome,
                http_status=r.http_status,
                error=r.error,
                duration_ms=r.duration_ms,
                at=r.at,
            )
            for r in rows
        ]

    def outbox_backlog(self) -> list[tuple[int, str, datetime | None]]:
        """Per live subscription: id, status, and when its oldest undelivered event happened."""
        oldest = (
            select(coupon_history.c.at)
            .where(
                coupon_history.c.org_id == webhooks.c.org_id,
                coupon_history.c.id > webhooks.c.cursor,
            )
            .order_by(coupon_history.c.id)
            .limit(1)
            .scalar_subquery()
        )
        rows = self.conn.execute(
            select(webhooks.c.id, webhooks.c.status, oldest.label("oldest")).where(
                webhooks.c.status.in_(("ACTIVE", "DEAD"))
            )
        )
        backlog = []
        for r in rows:
            at = r.oldest
            if isinstance(at, str):  # a raw scalar subquery bypasses the column type on SQLite
                at = datetime.fromisoformat(at)
            if at is not None and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            backlog.append((int(r.id), str(r.status), at))
        return backlog
