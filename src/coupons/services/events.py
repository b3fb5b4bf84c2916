"""The event log: every coupon state change, read from the history outbox in order."""

from __future__ import annotations

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


def list_events(uow: UnitOfWork, ctx: Context, after: int, limit: int) -> list[EventRecord]:
    """A page of the caller's org's events after the cursor `after` (0 for the start)."""
    if after < 0:
        raise errors.InvalidField("after", "must be an event id or 0")
    if not 1 <= limit <= MAX_PAGE:
        raise errors.InvalidField("limit", f"must be 1 to {MAX_PAGE}")
    return uow.history.events(ctx.org_id, after, limit)
