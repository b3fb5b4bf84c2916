"""In-memory fakes of the ports in `coupons.services.ports`, for service tests without a database.

Each fake keeps its rows in a shared `Store`; `FakeUnitOfWork` snapshots the store when it
opens and puts the snapshot back on `rollback()`, so "nothing was written" is observable. The
fakes follow the SQL repositories' contracts (org scoping, id order, guarded updates that
return how many rows changed), not their SQL. `_typed` at the bottom makes mypy check every
fake against its Protocol.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from coupons.domain.codes import normalize
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
    REVOCABLE,
    Action,
    Coupon,
    CouponState,
    Customer,
    DiscountType,
    Series,
    SeriesType,
    StateChange,
    normalize_email,
    normalize_mobile,
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
from coupons.services import ports

T = TypeVar("T")


@dataclass
class StoredCoupon:
    org_id: int
    coupon: Coupon


@dataclass
class StoredRedemption:
    org_id: int
    record: RedemptionRecord
    new: NewRedemption


@dataclass
class StoredHistory:
    id: int
    org_id: int
    coupon_id: int
    change: StateChange


@dataclass
class StoredJob:
    """A job row; `staging` stands for the SQL state STAGING (an upload still arriving: hidden
    and never run), which `JobState` has no member for. Its lease then bounds the upload."""

    job: Job
    staging: bool


@dataclass
class StoredLine:
    """One input line of a job; `outcome` stays None until its chunk is done."""

    line_no: int
    code: str
    norm: str
    coupon_id: int | None = None
    outcome: str | None = None
    error_code: int | None = None
    issued_to: int | None = None
    more: tuple[tuple[int, int | None], ...] = ()


@dataclass
class Store:
    """Every table the fakes know, as plain dicts and lists."""

    series: dict[int, Series] = field(default_factory=dict)
    coupons: dict[int, StoredCoupon] = field(default_factory=dict)
    customers: dict[int, Customer] = field(default_factory=dict)
    redemptions: dict[int, StoredRedemption] = field(default_factory=dict)
    history: list[StoredHistory] = field(default_factory=list)
    responses: dict[tuple[int, str], tuple[StoredResponse, datetime]] = field(default_factory=dict)
    orgs: dict[int, str] = field(default_factory=dict)
    clients: dict[int, ClientRecord] = field(default_factory=dict)
    service_keys: dict[str, str] = field(default_factory=dict)
    webhooks: dict[int, WebhookRecord] = field(default_factory=dict)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    trail: list[tuple[int, str, int]] = field(default_factory=list)
    # Line counts the job service reported staged (`JobRepository.lines_added`).
    lines_added: list[int] = field(default_factory=list)
    # Org-level events (a revoke job finished): outbox rows without a coupon, numbered from
    # the same sequence as `history`, so one cursor reads both in order.
    org_events: list[EventRecord] = field(default_factory=list)
    jobs: dict[str, StoredJob] = field(default_factory=dict)
    job_lines: dict[str, dict[int, StoredLine]] = field(default_factory=dict)

    people: dict[int, Person] = field(default_factory=dict)
    sessions: dict[str, ConsoleSession] = field(default_factory=dict)
    last_id: int = 0

    def new_id(self) -> int:
        """One id sequence for every table, so ids never collide across them."""
        self.last_id += 1
        return self.last_id

    def last_event_id(self, org_id: int) -> int:
        """The org's newest outbox id, coupon change or org-level event."""
        ids = [h.id for h in self.history if h.org_id == org_id]
        ids += [e.id for e in self.org_events if e.org_id == org_id]
        return max(ids, default=0)


class FakeCouponRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _rows(self, org_id: int | None = None) -> list[StoredCoupon]:
        rows = sorted(self.store.coupons.values(), key=lambda row: row.coupon.id)
        return [row for row in rows if org_id is None or row.org_id == org_id]

    def existing_code_norms(self, series_id: int, norms: Sequence[str]) -> set[str]:
        wanted = set(norms)
        return {
            normalize(row.coupon.code)
            for row in self._rows()
            if row.coupon.series_id == series_id and normalize(row.coupon.code) in wanted
        }

    def add_coupons(self, new: Sequence[NewCoupon]) -> list[int]:
        ids = []
        for c in new:
            coupon_id = self.store.new_id()
            coupon = Coupon(coupon_id, c.series_id, c.code, c.state, c.customer_id, pin=c.pin)
            self.store.coupons[coupon_id] = StoredCoupon(c.org_id, coupon)
            ids.append(coupon_id)
        return ids

    def add_pool_codes(self, new: Sequence[NewCoupon]) -> set[str]:
        if not new:
            return set()
        taken = self.existing_code_norms(new[0].series_id, [normalize(c.code) for c in new])
        fresh = [c for c in new if normalize(c.code) not in taken]
        self.add_coupons(fresh)
        return {normalize(c.code) for c in fresh}

    def take_available(self, series_id: int, count: int) -> list[Coupon]:
        pool = [
            row.coupon
            for row in self._rows()
            if row.coupon.series_id == series_id and row.coupon.state is CouponState.AVAILABLE
        ]
        return pool[:count]

    def _update(
        self, ids: Sequence[int], allowed: Iterable[CouponState], change: Callable[[Coupon], Coupon]
    ) -> int:
        """A guarded UPDATE: only coupons in an `allowed` state change; returns how many did."""
        states = set(allowed)
        changed = 0
        for coupon_id in ids:
            row = self.store.coupons.get(coupon_id)
            if row is not None and row.coupon.state in states:
                row.coupon = change(row.coupon)
                changed += 1
        return changed

    def mark_issued(self, ids: Sequence[int], customer_id: int, now: datetime) -> int:
        return self._update(
            ids,
            [CouponState.AVAILABLE],
            lambda c: replace(c, state=CouponState.ISSUED, customer_id=customer_id),
        )

    def coupons_by_codes(
        self, org_id: int, norms: Sequence[str], *, series_id: int | None, lock: bool
    ) -> list[Coupon]:
        wanted = set(norms)
        return [
            row.coupon
            for row in self._rows(org_id)
            if normalize(row.coupon.code) in wanted
            and (series_id is None or row.coupon.series_id == series_id)
        ]

    def held_by_codes(self, org_id: int, customer_id: int, norms: Sequence[str]) -> list[Coupon]:
        found = self.coupons_by_codes(org_id, norms, series_id=None, lock=True)
        return [c for c in found if c.customer_id == customer_id]

    def first_carriers(self, org_id: int, norms: Sequence[str]) -> dict[str, dict[int, int]]:
        found: dict[str, dict[int, int]] = {}
        for c in self.coupons_by_codes(org_id, norms, series_id=None, lock=False):
            firsts = found.setdefault(normalize(c.code), {})
            firsts[c.series_id] = min(firsts.get(c.series_id, c.id), c.id)
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
        found = [
            row.coupon
            for row in self._rows(org_id)
            if row.coupon.customer_id == customer_id
            and row.coupon.state in states
            and (series_id is None or row.coupon.series_id == series_id)
            and (
                unexpired_at is None
                or self.store.series[row.coupon.series_id].valid_till >= unexpired_at
            )
            and not (
                revocable_only
                and self.store.series[row.coupon.series_id].type is SeriesType.GENERIC_REDEEMABLE
            )
        ]
        return found if limit is None else found[:limit]

    def coupons_by_ids(self, org_id: int, ids: Sequence[int], *, lock: bool) -> list[Coupon]:
        wanted = set(ids)
        return [row.coupon for row in self._rows(org_id) if row.coupon.id in wanted]

    def page_of_series(
        self, series_id: int, *, state: CouponState | None, after_id: int | None, limit: int
    ) -> list[Coupon]:
        rows = sorted(self.store.coupons.items())
        found = [
            r.coupon
            for i, r in rows
            if r.coupon.series_id == series_id
            and (after_id is None or i > after_id)
            and (state is None or r.coupon.state is state)
        ]
        return found[:limit]

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
        found = [
            r.coupon
            for i, r in sorted(self.store.coupons.items())
            if r.org_id == org_id
            and r.coupon.customer_id == customer_id
            and r.coupon.state in states
            and (after_id is None or i > after_id)
            and (
                unexpired_at is None
                or self.store.series[r.coupon.series_id].valid_till >= unexpired_at
            )
        ]
        return found[:limit]

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
        keyed = sorted(
            ((normalize(r.coupon.code), i), r.coupon)
            for i, r in self.store.coupons.items()
            if r.org_id == org_id
        )
        found = [
            c
            for key, c in keyed
            if (key[0] == low if exact else key[0] >= low and (high is None or key[0] < high))
            and (after is None or key > after)
        ]
        return found[:limit]

    def coupon(self, org_id: int, coupon_id: int) -> Coupon | None:
        row = self.store.coupons.get(coupon_id)
        return row.coupon if row is not None and row.org_id == org_id else None

    def mark_revoked(self, ids: Sequence[int], now: datetime) -> int:
        return self._update(
            ids, REVOCABLE, lambda c: replace(c, state=CouponState.REVOKED, revoked_from=c.state)
        )

    def mark_reinstated(self, ids: Sequence[int], now: datetime) -> int:
        return self._update(
            ids,
            [CouponState.REVOKED],
            lambda c: replace(c, state=c.revoked_from or CouponState.ISSUED, revoked_from=None),
        )

    def set_state(
        self, ids: Sequence[int], *, from_state: CouponState, to_state: CouponState, now: datetime
    ) -> int:
        return self._update(ids, [from_state], lambda c: replace(c, state=to_state))

    def add_redemptions(self, new: Sequence[NewRedemption]) -> list[int]:
        ids = []
        for r in new:
            redemption_id = self.store.new_id()
            record = RedemptionRecord(redemption_id, r.coupon_id, r.customer_id, False)
            self.store.redemptions[redemption_id] = StoredRedemption(r.org_id, record, r)
            ids.append(redemption_id)
        return ids

    def redemptions_by_ids(
        self, org_id: int, ids: Sequence[int], *, lock: bool
    ) -> list[RedemptionRecord]:
        return [
            self.store.redemptions[i].record
            for i in sorted(set(ids))
            if i in self.store.redemptions and self.store.redemptions[i].org_id == org_id
        ]

    def mark_reactivated(self, ids: Sequence[int], now: datetime) -> int:
        changed = 0
        for i in ids:
            row = self.store.redemptions.get(i)
            if row is not None and not row.record.reactivated:
                row.record = replace(row.record, reactivated=True)
                changed += 1
        return changed


class FakeSeriesRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

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
        series = Series(
            id=self.store.new_id(),
            org_id=org_id,
            description=description,
            type=type,
            generic_code=generic_code,
            valid_till=valid_till,
            discount_type=discount_type,
            discount_value=discount_value,
            created_at=now,
        )
        self.store.series[series.id] = series
        return series

    def series(self, org_id: int, series_id: int) -> Series | None:
        found = self.store.series.get(series_id)
        return found if found is not None and found.org_id == org_id else None

    def series_by_description(self, org_id: int, description: str) -> Series | None:
        return next(
            (
                s
                for _, s in sorted(self.store.series.items())
                if s.org_id == org_id and s.description == description
            ),
            None,
        )

    def series_many(self, org_id: int, series_ids: Iterable[int]) -> dict[int, Series]:
        return {i: s for i in set(series_ids) if (s := self.series(org_id, i)) is not None}

    def generic_series_by_codes(self, org_id: int, norms: Sequence[str]) -> list[Series]:
        wanted = set(norms)
        return [
            s
            for _, s in sorted(self.store.series.items())
            if s.org_id == org_id and s.generic_code and normalize(s.generic_code) in wanted
        ]

    def update_series(
        self,
        org_id: int,
        series_id: int,
        *,
        valid_till: datetime | None = None,
        description: str | None = None,
    ) -> Series | None:
        found = self.series(org_id, series_id)
        if found is None:
            return None
        changed = replace(
            found,
            valid_till=found.valid_till if valid_till is None else valid_till,
            description=found.description if description is None else description,
        )
        self.store.series[series_id] = changed
        return changed

    def series_page(self, org_id: int, *, before_id: int | None, limit: int) -> list[Series]:
        found = [
            x
            for i, x in sorted(self.store.series.items(), reverse=True)
            if x.org_id == org_id and (before_id is None or i < before_id)
        ]
        return found[:limit]

    def state_counts_many(self, series_ids: Sequence[int]) -> dict[int, dict[CouponState, int]]:
        return {i: self.state_counts(i) for i in series_ids}

    def state_counts(self, series_id: int) -> dict[CouponState, int]:
        counts = dict.fromkeys(CouponState, 0)
        for row in self.store.coupons.values():
            if row.coupon.series_id == series_id:
                counts[row.coupon.state] += 1
        return counts


class FakeCustomerRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.locked: list[int] = []

    def add_customer(self, org_id: int, details: CustomerDetails, now: datetime) -> int:
        customer_id = self.store.new_id()
        self.store.customers[customer_id] = Customer(
            id=customer_id,
            org_id=org_id,
            mobile=details.mobile,
            email=details.email,
            external_id=details.external_id,
            first_name=details.first_name,
            last_name=details.last_name,
        )
        return customer_id

    def find_customers(
        self,
        org_id: int,
        *,
        id: int | None = None,
        mobile_norm: str | None = None,
        email_norm: str | None = None,
        external_id: str | None = None,
    ) -> list[tuple[Customer, set[str]]]:
        found = []
        for c in sorted(self.store.customers.values(), key=lambda c: c.id):
            if c.org_id != org_id:
                continue
            matched = set()
            if id is not None and c.id == id:
                matched.add("id")
            if mobile_norm is not None and c.mobile and normalize_mobile(c.mobile) == mobile_norm:
                matched.add("mobile")
            if email_norm is not None and c.email and normalize_email(c.email) == email_norm:
                matched.add("email")
            if external_id is not None and c.external_id == external_id:
                matched.add("externalId")
            if matched:
                found.append((c, matched))
        return found

    def lock_customer(self, org_id: int, customer_id: int) -> None:
        self.locked.append(customer_id)


class FakeHistoryRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes = 0

    def write(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
        if not changes:
            return
        self.writes += 1
        for coupon_id, change in changes:
            if coupon_id not in self.store.coupons:
                raise RuntimeError("history rows written do not match the changes recorded")
            entry = StoredHistory(self.store.new_id(), org_id, coupon_id, change)
            self.store.history.append(entry)

    def history(self, coupon_id: int) -> list[StateChange]:
        return [h.change for h in self.store.history if h.coupon_id == coupon_id]

    def revoked_by_request(
        self, org_id: int, request_id: str, limit: int | None = None
    ) -> list[int]:
        return sorted(
            {
                h.coupon_id
                for h in self.store.history
                if h.org_id == org_id
                and h.change.request_id == request_id
                and h.change.action.value == "REVOKE"
            }
        )[:limit]

    def still_revoked_by(self, request_id: str, coupon_ids: Sequence[int]) -> set[int]:
        latest = {row.coupon_id: row.change for row in self.store.history}
        return {
            cid
            for cid in coupon_ids
            if (last := latest.get(cid)) is not None
            and last.request_id == request_id
            and last.action.value == "REVOKE"
        }

    def events(self, org_id: int, after: int, limit: int) -> list[EventRecord]:
        """Each event carries the coupon's version after its change: one per change so far."""
        found = []
        versions: dict[int, int] = {}
        for h in self.store.history:
            versions[h.coupon_id] = versions.get(h.coupon_id, 0) + 1
            if h.org_id != org_id or h.id <= after:
                continue
            coupon = self.store.coupons[h.coupon_id].coupon
            c = h.change
            found.append(
                EventRecord(
                    h.id,
                    h.org_id,
                    h.coupon_id,
                    c.action,
                    c.from_state,
                    c.to_state,
                    c.at,
                    c.actor,
                    c.request_id,
                    c.reason,
                    coupon.series_id,
                    coupon.code,
                    coupon.customer_id,
                    versions[h.coupon_id],
                )
            )
        found += [e for e in self.store.org_events if e.org_id == org_id and e.id > after]
        return sorted(found, key=lambda e: e.id)[:limit]

    def history_range(
        self,
        org_id: int,
        *,
        since: datetime | None,
        until: datetime | None,
        after_id: int | None,
        limit: int,
    ) -> list[EventRecord]:
        return [
            e
            for e in self.events(org_id, after_id or 0, len(self.store.history) + 1)
            if e.coupon_id is not None
            and (since is None or e.at >= since)
            and (until is None or e.at < until)
        ][:limit]

    def last_event_id(self, org_id: int) -> int:
        return self.store.last_event_id(org_id)


class FakeIdempotencyRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def stored_response(self, client_id: int, key: str, since: datetime) -> StoredResponse | None:
        found = self.store.responses.get((client_id, key))
        return found[0] if found is not None and found[1] >= since else None

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
    ) -> None:
        self.store.responses[(client_id, key)] = (
            StoredResponse(fingerprint, status_code, body, request_id),
            now,
        )

    def delete_expired(self, before: datetime, limit: int) -> int:
        old = sorted((at, key) for key, (_, at) in self.store.responses.items() if at < before)
        for _, key in old[:limit]:
            del self.store.responses[key]
        return len(old[:limit])


class FakeClientRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add_org(self, name: str, now: datetime) -> int:
        org_id = self.store.new_id()
        self.store.orgs[org_id] = name
        return org_id

    def org_id_by_name(self, name: str) -> int | None:
        return next((i for i, n in self.store.orgs.items() if n == name), None)

    def add_client(
        self, org_id: int, username: str, secret_hash: str, groups: Iterable[str], now: datetime
    ) -> int:
        client_id = self.store.new_id()
        self.store.clients[client_id] = ClientRecord(
            client_id, org_id, username, secret_hash, frozenset(groups), True
        )
        return client_id

    def client_by_username(self, username: str) -> ClientRecord | None:
        return next((c for c in self.store.clients.values() if c.username == username), None)

    def client_by_id(self, client_id: int) -> ClientRecord | None:
        return self.store.clients.get(client_id)

    def update_client(
        self,
        username: str,
        *,
        is_active: bool | None = None,
        secret_hash: str | None = None,
        groups: Iterable[str] | None = None,
        tokens_after: datetime | None = None,
    ) -> bool:
        found = self.client_by_username(username)
        if found is None:
            return False
        self.store.clients[found.id] = replace(
            found,
            is_active=found.is_active if is_active is None else is_active,
            secret_hash=secret_hash or found.secret_hash,
            groups=found.groups if groups is None else frozenset(groups),
            tokens_after=tokens_after or found.tokens_after,
        )
        return True

    def orgs(self, *, hidden_prefix: str) -> list[OrgSummary]:
        shown = [c for c in self.store.clients.values() if not c.username.startswith(hidden_prefix)]
        return [
            OrgSummary(org_id, name, sum(1 for c in shown if c.org_id == org_id))
            for org_id, name in sorted(self.store.orgs.items())
        ]

    def clients(self, *, hidden_prefix: str) -> list[ClientSummary]:
        return [
            ClientSummary(c.username, self.store.orgs.get(c.org_id, ""), c.groups, c.is_active)
            for c in sorted(self.store.clients.values(), key=lambda c: c.username)
            if not c.username.startswith(hidden_prefix)
        ]

    def service_key(self, name: str) -> str | None:
        return self.store.service_keys.get(name)

    def add_service_key(self, name: str, value: str) -> None:
        self.store.service_keys[name] = value


class FakeWebhookRepository:
    """Subscriptions and deliveries; leases are not modelled (one worker at a time)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_webhook(
        self, *, org_id: int, url: str, events: Iterable[str], secret: str, now: datetime
    ) -> WebhookRecord:
        cursor = self.store.last_event_id(org_id)
        webhook = WebhookRecord(
            id=self.store.new_id(),
            org_id=org_id,
            url=url,
            events=frozenset(events),
            secret=secret,
            status="ACTIVE",
            cursor=cursor,
            attempts=0,
            failing_since=None,
            next_attempt_at=now,
            last_error=None,
            created_at=now,
        )
        self.store.webhooks[webhook.id] = webhook
        return webhook

    def webhook(self, org_id: int, webhook_id: int) -> WebhookRecord | None:
        found = self.store.webhooks.get(webhook_id)
        return found if found is not None and found.org_id == org_id else None

    def webhooks_of_org(self, org_id: int) -> list[WebhookRecord]:
        return [w for _, w in sorted(self.store.webhooks.items()) if w.org_id == org_id]

    def delete_webhook(self, org_id: int, webhook_id: int) -> bool:
        if self.webhook(org_id, webhook_id) is None:
            return False
        del self.store.webhooks[webhook_id]
        return True

    def revive_webhook(self, webhook_id: int, now: datetime, *, org_id: int | None = None) -> bool:
        found = self.store.webhooks.get(webhook_id)
        if found is None or (org_id is not None and found.org_id != org_id):
            return False
        self.store.webhooks[webhook_id] = replace(
            found, status="ACTIVE", attempts=0, failing_since=None, next_attempt_at=now
        )
        return True

    def due_webhooks(self, now: datetime, limit: int) -> list[int]:
        due = [
            w.id
            for _, w in sorted(self.store.webhooks.items())
            if w.status == "ACTIVE"
            and w.next_attempt_at <= now
            and self.store.last_event_id(w.org_id) > w.cursor
        ]
        return due[:limit]

    def claim_webhooks(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookRecord]:
        return [self.store.webhooks[i] for i in self.due_webhooks(now, limit)]

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
        found = self.store.webhooks.get(webhook_id)
        if found is None:
            return False
        self.store.webhooks[webhook_id] = replace(
            found,
            cursor=found.cursor if cursor is None else cursor,
            attempts=attempts,
            failing_since=failing_since,
            next_attempt_at=next_attempt_at,
            status=status,
            last_error=last_error,
        )
        return True

    def add_delivery(self, delivery: NewDelivery) -> None:
        d = delivery
        self.store.deliveries.append(
            DeliveryRecord(
                self.store.new_id(),
                d.webhook_id,
                d.first_event_id,
                d.last_event_id,
                d.event_count,
                d.attempt,
                d.outcome,
                d.http_status,
                d.error,
                d.duration_ms,
                d.at,
            )
        )

    def deliveries(
        self, webhook_id: int, limit: int, before_id: int | None = None
    ) -> list[DeliveryRecord]:
        mine = [
            d
            for d in self.store.deliveries
            if d.webhook_id == webhook_id and (before_id is None or d.id < before_id)
        ]
        return sorted(mine, key=lambda d: d.id, reverse=True)[:limit]

    def outbox_backlog(self) -> list[tuple[int, str, datetime | None]]:
        return []


class FakeRevocationRepository:
    """The trail kept in memory (the revoke use cases only write it here)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record_revoke(self, batch: RevokeBatch, revoked: int) -> None:
        """A request id seen before in the org adds to its entry, as the SQL upsert does: a
        job's chunks all revoke under the job's id and make one entry."""
        for i, (org, request, count) in enumerate(self.store.trail):
            if (org, request) == (batch.org_id, batch.request_id):
                self.store.trail[i] = (org, request, count + revoked)
                return
        self.store.trail.append((batch.org_id, batch.request_id, revoked))

    def record_reinstated(self, org_id: int, coupon_ids: Sequence[int]) -> None:
        self.store.trail.append((org_id, "reinstated", len(coupon_ids)))

    def many(self, org_id: int, request_ids: Sequence[str]) -> list[Revocation]:
        return []  # the fake keeps counts, not rows: every job reads as still undoable

    def page(
        self, org_id: int, where: TrailFilter, *, before: tuple[datetime, int] | None, limit: int
    ) -> list[Revocation]:
        return []


class FakeJobRepository:
    """Revoke jobs and their lines, with the SQL repository's guards: STAGING jobs are hidden
    and never claimed, leases are taken only when free or run out, and updates keyed by an
    owner change nothing once another owner holds the job."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _row(self, job_id: str) -> StoredJob | None:
        return self.store.jobs.get(job_id)

    @staticmethod
    def _copy(job: Job) -> Job:
        """A fresh value per read, as a query returns: callers cannot change the stored row."""
        return replace(job, failed_by_code=dict(job.failed_by_code))

    def _stored_code(self, coupon_id: int | None) -> str | None:
        found = None if coupon_id is None else self.store.coupons.get(coupon_id)
        return None if found is None else found.coupon.code

    def _lines(self, job_id: str) -> list[StoredLine]:
        return sorted(self.store.job_lines.get(job_id, {}).values(), key=lambda x: x.line_no)

    def _visible(self) -> list[Job]:
        return [row.job for row in self.store.jobs.values() if not row.staging]

    # --- creating a job ----------------------------------------------------------------------

    def add(self, new: NewJob, *, staging_until: datetime | None) -> None:
        if new.id in self.store.jobs:
            raise RuntimeError(f"duplicate job id {new.id}")
        job = Job(
            id=new.id,
            org_id=new.org_id,
            kind=new.kind,
            source=new.source,
            state=JobState.QUEUED,
            dry_run=new.dry_run,
            series_id=new.series_id,
            reason=new.reason,
            code_case=new.code_case,
            client_id=new.client_id,
            created_by=new.created_by,
            created_at=new.created_at,
            started_at=None,
            finished_at=None,
            total=0,
            cursor=0,
            processed=0,
            done_count=0,
            failed_count=0,
            duplicate_count=0,
            failed_by_code={},
            undo_of_job_id=new.undo_of_job_id,
            undone_by_job_id=None,
            lease_until=staging_until,
        )
        self.store.jobs[new.id] = StoredJob(job, staging=staging_until is not None)
        self.store.job_lines[new.id] = {}

    def _insert(self, job_id: str, lines: Iterable[StoredLine]) -> None:
        """Lines need their job, and (job, line number) is the key: as the SQL constraints."""
        if job_id not in self.store.jobs:
            raise RuntimeError(f"lines for a job that does not exist: {job_id}")
        table = self.store.job_lines.setdefault(job_id, {})
        for line in lines:
            if line.line_no in table:
                raise RuntimeError(f"line {line.line_no} of {job_id} staged twice")
            table[line.line_no] = line

    def add_lines(self, job_id: str, lines: Sequence[tuple[int, str, str]]) -> None:
        self._insert(job_id, [StoredLine(n, code, norm) for n, code, norm in lines])

    def keep_staging(self, job_id: str, until: datetime) -> None:
        row = self._row(job_id)
        if row is not None and row.staging:
            row.job = replace(row.job, lease_until=until)

    def stage_series(self, job_id: str, org_id: int, series_id: int) -> int:
        """Every unredeemed (AVAILABLE or ISSUED) coupon of the series, in id order."""
        revocable = (CouponState.AVAILABLE, CouponState.ISSUED)
        found = [
            row.coupon
            for _, row in sorted(self.store.coupons.items())
            if row.org_id == org_id
            and row.coupon.series_id == series_id
            and row.coupon.state in revocable
        ]
        self._insert(
            job_id,
            [StoredLine(n, c.code, normalize(c.code), c.id) for n, c in enumerate(found, 1)],
        )
        return self.staged_count(job_id)

    def stage_undo(self, job_id: str, org_id: int, undone_job_id: str) -> int:
        """The coupons the undone job revoked, in the order of their history entries."""
        revokes = [
            h
            for h in sorted(self.store.history, key=lambda h: h.id)
            if h.org_id == org_id
            and h.change.request_id == undone_job_id
            and h.change.action is Action.REVOKE
        ]
        lines: list[StoredLine] = []
        for n, h in enumerate(revokes, 1):
            code = self.store.coupons[h.coupon_id].coupon.code
            lines.append(StoredLine(n, code, normalize(code), h.coupon_id))
        self._insert(job_id, lines)
        return self.staged_count(job_id)

    def stage_copy(self, job_id: str, from_job_id: str) -> int:
        """The other job's lines, as uploaded (no coupon ids)."""
        copied = [StoredLine(x.line_no, x.code, x.norm) for x in self._lines(from_job_id)]
        self._insert(job_id, copied)
        return self.staged_count(job_id)

    def staged_count(self, job_id: str) -> int:
        return len(self.store.job_lines.get(job_id, {}))

    def lines_added(self, count: int) -> None:
        self.store.lines_added.append(count)

    def open(self, job_id: str, total: int) -> bool:
        row = self._row(job_id)
        if row is None or not row.staging:
            return False
        row.staging = False
        row.job = replace(row.job, state=JobState.QUEUED, total=total, lease_until=None)
        return True

    def set_total(self, job_id: str, total: int) -> None:
        row = self._row(job_id)
        if row is not None:
            row.job = replace(row.job, total=total)

    def delete_staged(self, job_id: str) -> None:
        row = self._row(job_id)
        if row is not None and row.staging:
            del self.store.jobs[job_id]
            self.store.job_lines.pop(job_id, None)

    def abandoned_staging(self, now: datetime, limit: int) -> list[str]:
        found = [
            job_id
            for job_id, row in self.store.jobs.items()
            if row.staging and row.job.lease_until is not None and row.job.lease_until < now
        ]
        return found[:limit]

    # --- reading -------------------------------------------------------------------------------

    def get(self, org_id: int, job_id: str, *, lock: bool = False) -> Job | None:
        row = self._row(job_id)
        if row is None or row.staging or row.job.org_id != org_id:
            return None
        return self._copy(row.job)

    def many(self, org_id: int, job_ids: Sequence[str]) -> list[Job]:
        found = (self.get(org_id, job_id) for job_id in dict.fromkeys(job_ids))
        return [job for job in found if job is not None]

    def of_org(
        self,
        org_id: int,
        state: JobState | None,
        limit: int,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        found = [
            j
            for j in self._visible()
            if j.org_id == org_id
            and state in (None, j.state)
            and (before is None or (j.created_at, j.id) < before)
        ]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return [self._copy(j) for j in found[:limit]]

    def report(self, job_id: str, after: int, limit: int) -> list[ReportRow]:
        rows = [
            ReportRow(
                x.line_no,
                x.code,
                x.outcome,
                x.error_code,
                x.coupon_id,
                x.issued_to,
                x.more,
                stored=self._stored_code(x.coupon_id),
            )
            for x in self._lines(job_id)
            if x.line_no > after and x.outcome is not None
        ]
        return rows[:limit]

    # --- running -------------------------------------------------------------------------------

    def claim(self, owner: str, now: datetime, lease_until: datetime) -> str | None:
        free = [
            j
            for j in self._visible()
            if j.state.is_runnable and (j.lease_until is None or j.lease_until < now)
        ]
        if not free:
            return None
        oldest = min(free, key=lambda j: (j.created_at, j.id))
        started = oldest.started_at or now
        self.store.jobs[oldest.id].job = replace(
            oldest, claimed_by=owner, lease_until=lease_until, started_at=started
        )
        return oldest.id

    def held(self, job_id: str, owner: str, *, lock: bool) -> Job | None:
        row = self._row(job_id)
        if row is None or row.job.claimed_by != owner:
            return None
        return self._copy(row.job)

    def release(self, job_id: str, owner: str) -> None:
        row = self._row(job_id)
        if row is not None and row.job.claimed_by == owner:
            row.job = replace(row.job, claimed_by=None, lease_until=None)

    def pending(
        self, job_id: str, after: int, limit: int, *, duplicates: bool
    ) -> list[PendingLine]:
        """With `duplicates`, a line is one when any earlier line of the job (in this chunk
        or a done one) has the same matching key."""
        first: dict[str, int] = {}
        found: list[PendingLine] = []
        for x in self._lines(job_id):
            first.setdefault(x.norm, x.line_no)
            if x.line_no > after and len(found) < limit:
                earlier = duplicates and first[x.norm] < x.line_no
                found.append(PendingLine(x.line_no, x.code, x.norm, x.coupon_id, earlier))
        return found

    def finish_lines(self, job_id: str, results: Sequence[LineResult]) -> None:
        """Each result overwrites its line's outcome columns (a line not there is skipped)."""
        table = self.store.job_lines.get(job_id, {})
        for r in results:
            line = table.get(r.line_no)
            if line is not None:
                line.outcome = r.outcome.value
                line.error_code = r.error_code
                line.coupon_id = r.coupon_id
                line.issued_to = r.issued_to
                line.more = r.more

    def advance(
        self,
        job: Job,
        *,
        state: JobState,
        cursor: int,
        tally: Tally,
        now: datetime,
        error: str | None = None,
    ) -> None:
        """Counters add to the stored row; the failures by code add to `job`'s, as in SQL."""
        row = self._row(job.id)
        if row is None:
            return
        by_code = dict(job.failed_by_code)
        for code, n in tally.failed_by_code.items():
            by_code[code] = by_code.get(code, 0) + n
        stored = row.job
        row.staging = False
        row.job = replace(
            self._ended(stored, state, now, error) if state.is_finished else stored,
            state=state,
            cursor=cursor,
            processed=stored.processed + tally.processed,
            done_count=stored.done_count + tally.done,
            failed_count=stored.failed_count + tally.failed,
            duplicate_count=stored.duplicate_count + tally.duplicates,
            failed_by_code=dict(sorted(by_code.items())),
        )

    @staticmethod
    def _ended(job: Job, state: JobState, now: datetime, error: str | None) -> Job:
        """A job reaching a final state: finished now, its lease let go."""
        return replace(
            job, state=state, finished_at=now, claimed_by=None, lease_until=None, error=error
        )

    def extend(self, job_id: str, owner: str, lease_until: datetime) -> None:
        row = self._row(job_id)
        if row is not None and row.job.claimed_by == owner:
            row.job = replace(row.job, lease_until=lease_until)

    def set_state(self, job_id: str, state: JobState, now: datetime) -> None:
        row = self._row(job_id)
        if row is None:
            return
        row.staging = False
        if state.is_finished:
            row.job = self._ended(row.job, state, now, row.job.error)
        else:
            row.job = replace(row.job, state=state)

    def mark_undone(self, job_id: str, by_job_id: str) -> None:
        row = self._row(job_id)
        if row is not None and row.job.undone_by_job_id is None:
            row.job = replace(row.job, undone_by_job_id=by_job_id)

    def mark_started(self, preview_id: str, job_id: str) -> bool:
        row = self._row(preview_id)
        if row is None or row.job.started_job_id is not None:
            return False
        row.job = replace(row.job, started_job_id=job_id)
        return True

    def release_undone(self, job_id: str, by_job_id: str) -> None:
        row = self._row(job_id)
        if row is not None and row.job.undone_by_job_id == by_job_id:
            row.job = replace(row.job, undone_by_job_id=None)

    def add_finished_event(self, job: Job, state: JobState, now: datetime) -> None:
        """The `revoke_job.finished` event, in the outbox with the coupon changes' ids."""
        self.store.org_events.append(
            EventRecord(
                self.store.new_id(),
                job.org_id,
                None,
                None,
                None,
                None,
                now,
                job.created_by,
                job.id,
                job.reason,
                job.series_id,
                None,
                None,
                0,
                job_state=state.value,
            )
        )


class FakeUsersRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        org_id: int,
        client_id: int,
        email: str,
        password_hash: str,
        role: Role,
        now: datetime,
    ) -> int:
        person_id = self.store.new_id()
        self.store.people[person_id] = Person(
            person_id, org_id, client_id, email, role, password_hash, True
        )
        return person_id

    def by_email(self, email: str) -> Person | None:
        return next((p for p in self.store.people.values() if p.email == email), None)

    def update(
        self,
        email: str,
        *,
        is_active: bool | None = None,
        password_hash: str | None = None,
        role: Role | None = None,
    ) -> bool:
        found = self.by_email(email)
        if found is None:
            return False
        self.store.people[found.id] = replace(
            found,
            is_active=found.is_active if is_active is None else is_active,
            password_hash=password_hash or found.password_hash,
            role=role or found.role,
        )
        return True

    def add_session(self, session: ConsoleSession) -> None:
        self.store.sessions[session.token_hash] = session

    def session(self, token_hash: str, now: datetime) -> tuple[ConsoleSession, Person] | None:
        found = self.store.sessions.get(token_hash)
        if found is None or found.expires_at <= now:
            return None
        return found, self.store.people[found.user_id]

    def delete_session(self, token_hash: str) -> None:
        self.store.sessions.pop(token_hash, None)

    def delete_sessions_of(self, user_id: int) -> None:
        for key in [k for k, v in self.store.sessions.items() if v.user_id == user_id]:
            del self.store.sessions[key]

    def delete_expired_sessions(self, now: datetime) -> None:
        for key in [k for k, v in self.store.sessions.items() if v.expires_at <= now]:
            del self.store.sessions[key]


class FakeUnitOfWork:
    """One transaction over a `Store`: `rollback()` (or no `commit()`) restores the snapshot."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()
        self._snapshot = copy.deepcopy(self.store)
        self.committed = False
        self.rolled_back = False
        self.coupons = FakeCouponRepository(self.store)
        self.series = FakeSeriesRepository(self.store)
        self.customers = FakeCustomerRepository(self.store)
        self.history = FakeHistoryRepository(self.store)
        self.idempotency = FakeIdempotencyRepository(self.store)
        self.clients = FakeClientRepository(self.store)
        self.webhooks = FakeWebhookRepository(self.store)
        self.revocations = FakeRevocationRepository(self.store)
        self.users = FakeUsersRepository(self.store)
        self.jobs = FakeJobRepository(self.store)

    def apply_revoke(self, batch: RevokeBatch) -> int:
        """The three writes in turn, as the SQL unit of work does on SQLite."""
        changed = self.coupons.mark_revoked(batch.coupon_ids, batch.at)
        if changed != len(batch.coupon_ids):
            return changed
        self.revocations.record_revoke(batch, changed)
        self.history.write(
            batch.org_id,
            [
                (
                    coupon_id,
                    StateChange(
                        Action.REVOKE,
                        before,
                        CouponState.REVOKED,
                        batch.at,
                        batch.actor,
                        batch.request_id,
                        batch.reason,
                    ),
                )
                for coupon_id, before in zip(batch.coupon_ids, batch.from_states, strict=True)
            ],
        )
        return changed

    def commit(self) -> None:
        self.committed = True
        self._snapshot = copy.deepcopy(self.store)

    def rollback(self) -> None:
        self.rolled_back = True
        restored = copy.deepcopy(self._snapshot)
        for name in Store.__dataclass_fields__:
            setattr(self.store, name, getattr(restored, name))


class FakeTransactions:
    """`Transactions` over a store: each `run` is a fresh unit of work, rolled back unless
    committed; no retries (nothing conflicts in memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs = 0

    def run(
        self,
        work: Callable[[ports.UnitOfWork], T],
        *,
        write: bool = True,
        retry_integrity: bool = False,
    ) -> T:
        self.runs += 1
        uow = FakeUnitOfWork(self.store)
        try:
            return work(uow)
        finally:
            uow.rollback()  # after a commit the snapshot is the store: nothing changes


def _typed(store: Store) -> ports.UnitOfWork:
    """Never called: mypy checks here that every fake implements its Protocol."""
    coupons: ports.CouponRepository = FakeCouponRepository(store)
    series: ports.SeriesRepository = FakeSeriesRepository(store)
    customers: ports.CustomerRepository = FakeCustomerRepository(store)
    history: ports.HistoryRepository = FakeHistoryRepository(store)
    idempotency: ports.IdempotencyRepository = FakeIdempotencyRepository(store)
    clients: ports.ClientRepository = FakeClientRepository(store)
    webhooks: ports.WebhookRepository = FakeWebhookRepository(store)
    users: ports.UsersRepository = FakeUsersRepository(store)
    jobs: ports.JobRepository = FakeJobRepository(store)
    revocations: ports.RevocationRepository = FakeRevocationRepository(store)
    transactions: ports.Transactions = FakeTransactions(store)
    del coupons, series, customers, history, idempotency, clients, webhooks, users
    del jobs, revocations, transactions
    return FakeUnitOfWork(store)
