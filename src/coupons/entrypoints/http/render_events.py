"""Events, webhook subscriptions and their deliveries as JSON: the API's entities and the
body POSTed to receivers (docs/events.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from coupons.domain.records import DeliveryRecord, EventRecord, WebhookRecord
from coupons.entrypoints.http.render import timestamp
from coupons.services import events as event_log
from coupons.services.webhooks import CreatedWebhook, shown_url


def event(e: EventRecord) -> dict[str, Any]:
    """The public shape of one event; stable across retries."""
    if e.action is None:  # an org-level event: a revoke job ended (docs/events.md)
        return {
            "id": e.id,
            "type": event_log.event_type(e),
            "orgId": e.org_id,
            "jobId": e.request_id,
            "kind": e.job_kind,
            "state": e.job_state,
            "seriesId": e.series_id,
            "actor": e.actor,
            "requestId": e.request_id,
            "reason": e.reason,
            "at": timestamp(e.at),
        }
    return {
        "id": e.id,
        "type": event_log.event_type(e),
        "orgId": e.org_id,
        "couponId": e.coupon_id,
        "couponCode": e.code,
        "seriesId": e.series_id,
        "customerId": e.customer_id,
        "couponVersion": e.coupon_version,
        "fromState": e.from_state.value if e.from_state else None,
        "toState": e.to_state.value if e.to_state else None,
        "actor": e.actor,
        "requestId": e.request_id,
        "reason": e.reason,
        "at": timestamp(e.at),
    }


def page(events: list[EventRecord], after: int) -> dict[str, Any]:
    """The entity of GET /v2/events: `nextAfter` is the cursor for the next call."""
    return {
        "events": [event(e) for e in events],
        "nextAfter": events[-1].id if events else after,
    }


def webhook_body(webhook_id: int, events: Sequence[EventRecord]) -> bytes:
    """What a delivery POSTs: one signed batch of events, in order."""
    return orjson.dumps({"webhookId": webhook_id, "events": [event(e) for e in events]})


def webhook(w: WebhookRecord) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {
        "id": w.id,
        "url": shown_url(w.url),
        "events": sorted(w.events) or sorted(event_log.ALL_TYPES),
        "status": w.status,
        "lastEventId": w.cursor,
        "attempts": w.attempts,
        # A dead subscription is tried again only when retried by hand: no next attempt.
        "nextAttemptAt": timestamp(w.next_attempt_at) if w.status == "ACTIVE" else None,
        "lastError": w.last_error,
        "createdAt": timestamp(w.created_at),
    }


def webhooks(found: list[WebhookRecord]) -> dict[str, Any]:
    return {"webhooks": [webhook(w) for w in found]}


def created_webhook(created: CreatedWebhook) -> dict[str, Any]:
    """A new subscription: the only time its signing secret is shown."""
    return {**webhook(created.webhook), "secret": created.secret}


def deleted_webhook(w: WebhookRecord) -> dict[str, Any]:
    return {"id": w.id, "deleted": True}


def delivery(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "firstEventId": d.first_event_id,
        "lastEventId": d.last_event_id,
        "eventCount": d.event_count,
        "attempt": d.attempt,
        "outcome": d.outcome,
        "httpStatus": d.http_status,
        "error": d.error,
        "durationMs": d.duration_ms,
        "at": timestamp(d.at),
    }


def deliveries(found: list[DeliveryRecord], next_cursor: str | None) -> dict[str, Any]:
    return {"deliveries": [delivery(d) for d in found], "nextCursor": next_cursor}
