"""Values that cross the port between use cases and storage: what is read and what is written.

Plain frozen dataclasses, so services and their fakes need no database types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from coupons.domain.model import Action, CouponState


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """An API client as stored: its secret only as a hash."""

    id: int
    org_id: int
    username: str
    secret_hash: str
    groups: frozenset[str]
    is_active: bool
    # The last disable: tokens issued before it stay dead after the client is enabled again.
    tokens_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The response first given under an idempotency key, replayed for a repeat."""

    fingerprint: str
    status_code: int
    body: bytes
    request_id: str | None = None  # the first request's X-Request-Id (None: stored before 0009)


@dataclass(frozen=True, slots=True)
class OrgSummary:
    """An org as the command line lists it."""

    id: int
    name: str
    clients: int


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """An API client as the command line lists it: never its secret or hash."""

    username: str
    org: str
    groups: frozenset[str]
    active: bool


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One history row read as an event: the change plus the coupon as it was then.

    An org-level event (a revoke job finished) has no coupon and no action: `job_state` is the
    job's final state, `job_kind` REVOKE or REINSTATE (an undo), and `request_id` the job id.
    """

    id: int
    org_id: int
    coupon_id: int | None
    action: Action | None
    from_state: CouponState | None
    to_state: CouponState | None
    at: datetime
    actor: str
    request_id: str
    reason: str | None
    series_id: int | None
    code: str | None
    customer_id: int | None
    coupon_version: int
    job_state: str | None = None
    job_kind: str | None = None


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
class NewDelivery:
    """One delivery attempt to record."""

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


@dataclass(frozen=True, slots=True)
class NewRedemption:
    """One redemption to record; the coupon's state change is recorded apart."""

    org_id: int
    coupon_id: int
    customer_id: int
    transaction_number: str | None
    bill_amount: Decimal | None
    redeemed_at: datetime
    request_id: str


@dataclass(frozen=True, slots=True)
class NewCoupon:
    """A coupon to insert: a pool code (AVAILABLE) or one created already issued or redeemed."""

    org_id: int
    series_id: int
    code: str
    state: CouponState
    is_generic: bool
    at: datetime
    customer_id: int | None = None
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    """A new customer's identifiers and name, as given (storage keeps their normal forms too)."""

    mobile: str | None
    email: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True, slots=True)
class RevokeBatch:
    """What one revoke call (or job chunk) writes: its coupons (in decision order, each
    revocable and locked), their history, and its row of the revocations trail."""

    org_id: int
    coupon_ids: tuple[int, ...]
    from_states: tuple[CouponState, ...]  # each coupon's state before, in the same order
    at: datetime
    actor: str
    request_id: str
    reason: str | None
    job_id: str | None = None

    def __post_init__(self) -> None:
        # Each coupon once: its history row copies the version its one change gave it.
        if len(set(self.coupon_ids)) != len(self.coupon_ids):
            raise ValueError("a revoke batch names one coupon twice")
        if len(self.from_states) != len(self.coupon_ids):
            raise ValueError("a revoke batch needs one state before per coupon")
