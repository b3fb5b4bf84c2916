"""The event log: every coupon state change, read from the history outbox in order."""

from __future__ import annotations

from typing import Any

from coupons.domain import errors
from coupons.domain.model import Action
from coupons.domain.records import EventRecord
from coupons.services.common import Context
from coupons.services.ports import UnitOfWork

EVENT_TYPES: dict[Action, str] = {
    Action.ISSUE: "coupon.issued",
    Action.REDEEM: "coupon.redeemed",
    Action.REACTIVATE: "coupon.reactivated",
    Action.REVOKE: "coupon.revoked",
    Action.REINSTATE: "coupon.reinstated",
}
# The one org-level event: a revoke job ended (docs/events.md).
JOB_FINISHED = "revoke_job.finished"
ALL_TYPES = frozenset({*EVENT_TYPES.values(), JOB_FINISHED})
MAX_PAGE = 1000


def event_type(event: EventRecord) -> str:
    return JOB_FINISHED if event.action is None else EVENT_TYPES[event.action]


def payload(event: EventRecord) -> dict[str, Any]:
    """The public shape of one event (docs/events.md); stable across retries."""
    if event.action is None:
        return {
            "id": event.id,
            "type": JOB_FINISHED,
            "orgId": event.org_id,
            "jobId": event.request_id,
            "state": event.job_state,
            "seriesId": event.series_id,
            "actor": event.actor,
            "requestId": event.request_id,
            "reason": event.reason,
            "at": event.at.isoformat().replace("+00:00", "Z"),
        }
    return {
        "id": event.id,
        "type": EVENT_TYPES[event.action],
        "orgId": event.org_id,
        "couponId": event.coupon_id,
        "couponCode": event.code,
        "seriesId": event.series_id,
        "customerId": event.customer_id,
        "couponVersion": event.coupon_version,
        "fromState": event.from_state.value if event.from_state else None,
        "toState": event.to_state.value if event.to_state else None,
        "actor": event.actor,
        "requestId": event.request_id,
        "reason": event.reason,
        "at": event.at.isoformat().replace("+00:00", "Z"),
    }


def list_events(uow: UnitOfWork, ctx: Context, after: int, limit: int) -> list[EventRecord]:
    """A page of the caller's org's events after the cursor `after` (0 for the start)."""
    if after < 0:
        raise errors.InvalidField("after", "must be an event id or 0")
    if not 1 <= limit <= MAX_PAGE:
        raise errors.InvalidField("limit", f"must be 1 to {MAX_PAGE}")
    return uow.history.events(ctx.org_id, after, limit)


def page(events: list[EventRecord], after: int) -> dict[str, Any]:
    """The entity of GET /v2/events: `nextAfter` is the cursor for the next call."""
    return {
        "events": [payload(e) for e in events],
        "nextAfter": events[-1].id if events else after,
    }
