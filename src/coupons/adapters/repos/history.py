"""Coupon history, which is also the outbox of events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    func,
    insert,
    select,
    text,
)

from coupons.adapters.tables import (
    coupon_history,
    coupons,
)
from coupons.domain.model import (
    Action,
    CouponState,
    StateChange,
)
from coupons.domain.records import (
    EventRecord,
)

_ACTIONS = {a.value: a for a in Action}
_STATES = {s.value: s for s in CouponState}
# Advisory lock namespace that serializes outbox inserts per org on PostgreSQL.
OUTBOX_LOCK_SPACE = 0x0C0B
# Key in a connection's `info`: history actions written in its open transaction, counted
# into metrics on commit (see entrypoints/http/metrics.py).
PENDING_CHANGES = "coupons_pending_changes"

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


class SqlHistoryRepository:
    """History and events over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def write(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
        """Record (coupon id, change) pairs now, in one statement; each row is also an event.

        Use cases call this last, right before the runner stores the idempotency record and
        commits: on PostgreSQL it takes the org's outbox lock, held until COMMIT, and a lock
        taken earlier would be held while the rest of the request runs, serializing the
        org's writers for longer.
        """
        if changes:
            self._insert_history(org_id, changes)

    def _insert_history(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
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
                    "coupon_ids": [cid for cid, _ in changes],
                    "actions": [e.action.value for _, e in changes],
                    "from_states": [
                        e.from_state.value if e.from_state else None for _, e in changes
                    ],
                    "to_states": [e.to_state.value for _, e in changes],
                    "ats": [e.at for _, e in changes],
                    "actors": [e.actor for _, e in changes],
                    "request_ids": [e.request_id for _, e in changes],
                    "reasons": [e.reason for _, e in changes],
                },
            )
        else:
            result = self.conn.execute(
                _INSERT_HISTORY,
                [
                    {
                        "h_org_id": org_id,
                        "h_coupon_id": cid,
                        "h_action": e.action.value,
                        "h_from_state": e.from_state.value if e.from_state else None,
                        "h_to_state": e.to_state.value,
                        "h_at": e.at,
                        "h_actor": e.actor,
                        "h_request_id": e.request_id,
                        "h_reason": e.reason,
                    }
                    for cid, e in changes
                ],
            )
        # A coupon id that matches no row would silently lose its history and its event.
        if result.rowcount not in (-1, len(changes)):
            raise RuntimeError("history rows written do not match the changes recorded")
        pending = self.conn.info.setdefault(PENDING_CHANGES, Counter())
        pending.update(e.action.value for _, e in changes)

    def history(self, coupon_id: int) -> list[StateChange]:
        rows = self.conn.execute(
            select(coupon_history)
            .where(coupon_history.c.coupon_id == coupon_id)
            .order_by(coupon_history.c.id)
        )
        return [
            StateChange(
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
