"""Webhook subscriptions, their leases, and delivery attempts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    func,
    insert,
    or_,
    select,
    update,
)

from coupons.adapters.repos.history import final_event_id
from coupons.adapters.repos.rows import (
    new_id,
)
from coupons.adapters.tables import (
    coupon_history,
    webhook_deliveries,
    webhooks,
)
from coupons.domain.records import (
    DeliveryRecord,
    NewDelivery,
    WebhookRecord,
)


class SqlWebhookRepository:
    """Webhooks over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

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
        """A subscription starting after the org's latest final event: it gets what follows,
        and the events of writers still running as it is created."""
        result = self.conn.execute(
            insert(webhooks).values(
                org_id=org_id,
                url=url,
                events=",".join(sorted(events)),
                secret=secret,
                status="ACTIVE",
                cursor=final_event_id(self.conn, org_id),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        found = self.webhook(org_id, new_id(result))
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

    def add_delivery(self, delivery: NewDelivery) -> None:
        self.conn.execute(
            insert(webhook_deliveries).values(
                webhook_id=delivery.webhook_id,
                first_event_id=delivery.first_event_id,
                last_event_id=delivery.last_event_id,
                event_count=delivery.event_count,
                attempt=delivery.attempt,
                outcome=delivery.outcome,
                http_status=delivery.http_status,
                error=delivery.error,
                duration_ms=delivery.duration_ms,
                at=delivery.at,
            )
        )

    def deliveries(
        self, webhook_id: int, limit: int, before_id: int | None = None
    ) -> list[DeliveryRecord]:
        """A subscription's delivery attempts, newest first, from just below `before_id`."""
        query = select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
        if before_id is not None:
            query = query.where(webhook_deliveries.c.id < before_id)
        rows = self.conn.execute(query.order_by(webhook_deliveries.c.id.desc()).limit(limit))
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
