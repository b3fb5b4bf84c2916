"""The ports the use cases depend on: one repository per aggregate, reached through a unit of
work, and a runner that gives each use case a fresh transaction.

SQL implementations live in `adapters/repos/`; tests may use in-memory fakes. Repositories never
commit; the unit of work does, and leaving it without `commit()` rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from coupons.domain.jobs import (
    Job,
    JobState,
    LineResult,
    NewJob,
    PendingLine,
    ReportRow,
    Tally,
)
from coupons.domain.model import (
    Coupon,
    CouponState,
    Customer,
    DiscountType,
    Series,
    SeriesType,
    StateChange,
)
from coupons.domain.people import ConsoleSession, Person, Role
from coupons.domain.records import (
    ClientRecord,
    ClientSummary,
    CustomerDetails,
    DeliveryRecord,
    EventRecord,
    NewCoupon,
    NewDelivery,
    NewRedemption,
    OrgSummary,
    RedemptionRecord,
    RevokeBatch,
    StoredResponse,
    WebhookRecord,
)
from coupons.domain.trail import Revocation, TrailFilter

T = TypeVar("T")


class CouponRepository(Protocol):
    """Coupons (codes and their states) and the redemptions made of them."""

    def existing_code_norms(self, series_id: int, norms: Sequence[str]) -> set[str]: ...

    def add_coupons(self, new: Sequence[NewCoupon]) -> list[int]: ...

    def add_pool_codes(self, new: Sequence[NewCoupon]) -> set[str]:
        """Add pool codes, skipping those the series holds already (committed before or
        meanwhile); the normalized codes added."""
        ...

    def take_available(self, series_id: int, count: int) -> list[Coupon]: ...

    def mark_issued(self, ids: Sequence[int], customer_id: int, now: datetime) -> int: ...

    def coupons_by_codes(
        self, org_id: int, norms: Sequence[str], *, series_id: int | None, lock: bool
    ) -> list[Coupon]: ...

    def held_by_codes(self, org_id: int, customer_id: int, norms: Sequence[str]) -> list[Coupon]:
        """The customer's coupons carrying any of the codes, locked in id order."""
        ...

    def first_carriers(self, org_id: int, norms: Sequence[str]) -> dict[str, dict[int, int]]:
        """By code: each series carrying it, with its lowest coupon id of the code."""
        ...

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
        """A customer's coupons in `states`, in id order: of one series, of series not expired
        at `unexpired_at`, and with `revocable_only` not of GENERIC_REDEEMABLE series."""
        ...

    def coupons_by_ids(self, org_id: int, ids: Sequence[int], *, lock: bool) -> list[Coupon]: ...

    def coupon(self, org_id: int, coupon_id: int) -> Coupon | None: ...

    def mark_reinstated(self, ids: Sequence[int], now: datetime) -> int: ...

    def set_state(
        self, ids: Sequence[int], *, from_state: CouponState, to_state: CouponState, now: datetime
    ) -> int: ...

    def add_redemptions(self, new: Sequence[NewRedemption]) -> list[int]: ...

    def redemptions_by_ids(
        self, org_id: int, ids: Sequence[int], *, lock: bool
    ) -> list[RedemptionRecord]: ...

    def mark_reactivated(self, ids: Sequence[int], now: datetime) -> int: ...

    # Lists and search (spec §7): keyset pages of `limit` rows after a key, one index range.

    def page_of_series(
        self, series_id: int, *, state: CouponState | None, after_id: int | None, limit: int
    ) -> list[Coupon]: ...

    def page_of_customer(
        self,
        org_id: int,
        customer_id: int,
        *,
        states: Sequence[CouponState],
        after_id: int | None,
        limit: int,
        unexpired_at: datetime | None = None,
    ) -> list[Coupon]: ...

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
        """Normalised code == `low` (exact) or in [low, high), by (code, id) after `after`."""
        ...


class SeriesRepository(Protocol):
    """Coupon series, and the counts of their coupons per state."""

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
    ) -> Series: ...

    def series(self, org_id: int, series_id: int) -> Series | None: ...

    def series_by_description(self, org_id: int, description: str) -> Series | None: ...

    def series_many(self, org_id: int, series_ids: Iterable[int]) -> dict[int, Series]: ...

    def generic_series_by_codes(self, org_id: int, norms: Sequence[str]) -> list[Series]: ...

    def state_counts(self, series_id: int) -> dict[CouponState, int]: ...

    def update_series(
        self,
        org_id: int,
        series_id: int,
        *,
        valid_till: datetime | None = None,
        description: str | None = None,
    ) -> Series | None:
        """Change what is given; None when the org has no such series."""
        ...

    def series_page(self, org_id: int, *, before_id: int | None, limit: int) -> list[Series]:
        """Newest (highest id) first, below `before_id`."""
        ...

    def state_counts_many(self, series_ids: Sequence[int]) -> dict[int, dict[CouponState, int]]: ...


class CustomerRepository(Protocol):
    def add_customer(self, org_id: int, details: CustomerDetails, now: datetime) -> int: ...

    def find_customers(
        self,
        org_id: int,
        *,
        id: int | None = None,
        mobile_norm: str | None = None,
        email_norm: str | None = None,
        external_id: str | None = None,
    ) -> list[tuple[Customer, set[str]]]: ...

    def lock_customer(self, org_id: int, customer_id: int) -> None: ...


class HistoryRepository(Protocol):
    """Coupon history, which is also the outbox of events."""

    def write(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
        """Record (coupon id, change) pairs now; call it last in a use case (see revoke)."""
        ...

    def history(self, coupon_id: int) -> list[StateChange]: ...

    def revoked_by_request(
        self, org_id: int, request_id: str, limit: int | None = None
    ) -> list[int]: ...

    def still_revoked_by(self, request_id: str, coupon_ids: Sequence[int]) -> set[int]: ...

    def events(self, org_id: int, after: int, limit: int) -> list[EventRecord]: ...

    def history_range(
        self,
        org_id: int,
        *,
        since: datetime | None,
        until: datetime | None,
        after_id: int | None,
        limit: int,
    ) -> list[EventRecord]: ...

    def last_event_id(self, org_id: int) -> int: ...


class IdempotencyRepository(Protocol):
    def stored_response(
        self, client_id: int, key: str, since: datetime
    ) -> StoredResponse | None: ...

    def store_response(
        self,
        *,
        client_id: int,
        org_id: int,
        key: str,
        fingerprint: str,
        status_code: int,
        body: bytes,
        request_id: str,
        now: datetime,
        expired_before: datetime,
    ) -> None: ...

    def delete_expired(self, before: datetime, limit: int) -> int: ...


class ClientRepository(Protocol):
    """Orgs, their API clients, and service-wide keys."""

    def add_org(self, name: str, now: datetime) -> int: ...

    def org_id_by_name(self, name: str) -> int | None: ...

    def add_client(
        self, org_id: int, username: str, secret_hash: str, groups: Iterable[str], now: datetime
    ) -> int: ...

    def client_by_username(self, username: str) -> ClientRecord | None: ...

    def client_by_id(self, client_id: int) -> ClientRecord | None: ...

    def update_client(
        self,
        username: str,
        *,
        is_active: bool | None = None,
        secret_hash: str | None = None,
        groups: Iterable[str] | None = None,
        tokens_after: datetime | None = None,
    ) -> bool: ...

    def orgs(self, *, hidden_prefix: str) -> list[OrgSummary]: ...

    def clients(self, *, hidden_prefix: str) -> list[ClientSummary]: ...

    def service_key(self, name: str) -> str | None: ...

    def add_service_key(self, name: str, value: str) -> None: ...


class WebhookRepository(Protocol):
    """Webhook subscriptions, their leases, and the record of delivery attempts."""

    def add_webhook(
        self, *, org_id: int, url: str, events: Iterable[str], secret: str, now: datetime
    ) -> WebhookRecord: ...

    def webhook(self, org_id: int, webhook_id: int) -> WebhookRecord | None: ...

    def webhooks_of_org(self, org_id: int) -> list[WebhookRecord]: ...

    def delete_webhook(self, org_id: int, webhook_id: int) -> bool: ...

    def revive_webhook(
        self, webhook_id: int, now: datetime, *, org_id: int | None = None
    ) -> bool: ...

    def due_webhooks(self, now: datetime, limit: int) -> list[int]: ...

    def claim_webhooks(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookRecord]: ...

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
    ) -> bool: ...

    def add_delivery(self, delivery: NewDelivery) -> None: ...

    def deliveries(
        self, webhook_id: int, limit: int, before_id: int | None = None
    ) -> list[DeliveryRecord]: ...

    def outbox_backlog(self) -> list[tuple[int, str, datetime | None]]: ...


class RevocationRepository(Protocol):
    """The revocations trail: one row per revoke call or job that revoked something."""

    def record_reinstated(self, org_id: int, coupon_ids: Sequence[int]) -> None:
        """Count reinstated coupons against the revoke that last revoked each."""
        ...

    def many(self, org_id: int, request_ids: Sequence[str]) -> list[Revocation]:
        """The org's rows of these request ids, in no order."""
        ...

    def page(
        self,
        org_id: int,
        where: TrailFilter,
        *,
        before: tuple[datetime, int] | None,
        limit: int,
    ) -> list[Revocation]:
        """Newest first, below the (at, id) of `before`."""
        ...


class JobRepository(Protocol):
    """Revoke jobs and their input lines (spec §8)."""

    def add(self, new: NewJob, *, staging_until: datetime | None) -> None: ...

    def add_lines(self, job_id: str, lines: Sequence[tuple[int, str, str]]) -> None: ...

    def keep_staging(self, job_id: str, until: datetime) -> None: ...

    def stage_series(self, job_id: str, org_id: int, series_id: int) -> int: ...

    def stage_undo(self, job_id: str, org_id: int, undone_job_id: str) -> int: ...

    def stage_copy(self, job_id: str, from_job_id: str) -> int:
        """Another job's lines (number, code as sent, matching key) as this job's."""
        ...

    def staged_count(self, job_id: str) -> int: ...

    def lines_added(self, count: int) -> None:
        """`count` lines of one job were just staged: a store whose planner reads statistics
        refreshes them when that is many (a job's chunk reads rely on them)."""
        ...

    def open(self, job_id: str, total: int) -> bool: ...

    def set_total(self, job_id: str, total: int) -> None: ...

    def delete_staged(self, job_id: str) -> None: ...

    def abandoned_staging(self, now: datetime, limit: int) -> list[str]: ...

    def get(self, org_id: int, job_id: str, *, lock: bool = False) -> Job | None: ...

    def many(self, org_id: int, job_ids: Sequence[str]) -> list[Job]:
        """The org's jobs among `job_ids` (one statement), in no particular order."""
        ...

    def of_org(
        self,
        org_id: int,
        state: JobState | None,
        limit: int,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]: ...

    def report(self, job_id: str, after: int, limit: int) -> list[ReportRow]: ...

    def claim(self, owner: str, now: datetime, lease_until: datetime) -> str | None: ...

    def held(self, job_id: str, owner: str, *, lock: bool) -> Job | None: ...

    def release(self, job_id: str, owner: str) -> None: ...

    def pending(
        self, job_id: str, after: int, limit: int, *, duplicates: bool
    ) -> list[PendingLine]: ...

    def finish_lines(self, job_id: str, results: Sequence[LineResult]) -> None: ...

    def advance(
        self,
        job: Job,
        *,
        state: JobState,
        cursor: int,
        tally: Tally,
        now: datetime,
        error: str | None = None,
    ) -> None: ...

    def extend(self, job_id: str, owner: str, lease_until: datetime) -> None: ...

    def set_state(self, job_id: str, state: JobState, now: datetime) -> None: ...

    def mark_undone(self, job_id: str, by_job_id: str) -> None: ...

    def mark_started(self, preview_id: str, job_id: str) -> bool:
        """Record the real job a preview was started as; False when it already has one."""
        ...

    def release_undone(self, job_id: str, by_job_id: str) -> None:
        """Clear `job_id`'s undone mark if `by_job_id` set it."""
        ...

    def add_finished_event(self, job: Job, state: JobState, now: datetime) -> None: ...


class UsersRepository(Protocol):
    """People who sign in to the console, and their sessions."""

    def add(
        self,
        org_id: int,
        client_id: int,
        email: str,
        password_hash: str,
        role: Role,
        now: datetime,
    ) -> int: ...

    def by_email(self, email: str) -> Person | None: ...

    def update(
        self,
        email: str,
        *,
        is_active: bool | None = None,
        password_hash: str | None = None,
        role: Role | None = None,
    ) -> bool: ...

    def add_session(self, session: ConsoleSession) -> None: ...

    def session(self, token_hash: str, now: datetime) -> tuple[ConsoleSession, Person] | None: ...

    def delete_session(self, token_hash: str) -> None: ...

    def delete_sessions_of(self, user_id: int) -> None: ...

    def delete_expired_sessions(self, now: datetime) -> None: ...


class UnitOfWork(Protocol):
    """One transaction; leaving it without `commit()` rolls back."""

    @property
    def coupons(self) -> CouponRepository: ...

    @property
    def series(self) -> SeriesRepository: ...

    @property
    def customers(self) -> CustomerRepository: ...

    @property
    def history(self) -> HistoryRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def clients(self) -> ClientRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    @property
    def revocations(self) -> RevocationRepository: ...

    @property
    def jobs(self) -> JobRepository: ...

    @property
    def users(self) -> UsersRepository: ...

    def apply_revoke(self, batch: RevokeBatch) -> int:
        """Revoke the batch's locked, revocable coupons, write their history and the batch's
        revocations trail row, as the last writes of the use case; how many coupons changed.

        One call rather than three repository calls because it is every revoke's last step
        and the store may send it as one statement (PostgreSQL does)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class Transactions(Protocol):
    """Runs work in a fresh unit of work, retrying transient conflicts a bounded number of
    times (the store decides which); what `work` returns is returned."""

    def run(
        self,
        work: Callable[[UnitOfWork], T],
        *,
        write: bool = True,
        retry_integrity: bool = False,
    ) -> T: ...
