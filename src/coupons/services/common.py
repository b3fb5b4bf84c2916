"""Values every use case shares: who acts, when, and which customer a request names."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from coupons.domain import errors
from coupons.domain.model import (
    Action,
    CouponState,
    Customer,
    Series,
    StateChange,
    normalize_email,
    normalize_mobile,
)
from coupons.services.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated API client."""

    org_id: int
    client_id: int
    username: str
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class Context:
    """Who acts, for which request, at what time."""

    actor: Actor
    request_id: str
    now: datetime
    # Set when a revoke job acts: its changes are one row of the revocations trail.
    job_id: str | None = None

    @property
    def org_id(self) -> int:
        return self.actor.org_id


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """Identifiers a request uses to name a customer; any subset may be given."""

    id: int | None = None
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None

    def is_empty(self) -> bool:
        return all(is_blank(v) for v in (self.id, self.mobile, self.email, self.external_id))


def same_secret(given: str, expected: str) -> bool:
    """Whether a presented token or signature is the expected one, in constant time. As
    bytes: `hmac.compare_digest` raises on text with non-ASCII characters, and what a client
    presents is whatever it sent (a TypeError was a 500)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def is_blank(value: object) -> bool:
    """Not given: absent, or text of only whitespace. Clients send `""` or `" "` for an
    identifier they do not have; both are left out, not searched for."""
    return value is None or (isinstance(value, str) and not value.strip())


def find_customer(uow: UnitOfWork, org_id: int, ref: CustomerRef) -> Customer:
    """The one customer all given identifiers name: 701 if none does, 9008 if they disagree."""
    # Trimmed as it was when the customer was made: " X-1 " made customer "X-1", and must
    # find them again (mobiles and emails are normalised the same way on both sides).
    external_id = None if is_blank(ref.external_id) else str(ref.external_id).strip()
    mobile = None if is_blank(ref.mobile) else ref.mobile
    email = None if is_blank(ref.email) else ref.email
    given = {
        name
        for name, value in (
            ("id", ref.id),
            ("mobile", mobile),
            ("email", email),
            ("externalId", external_id),
        )
        if value is not None
    }
    if not given:
        # Nothing to look for is a request missing its field (9002), not a search that
        # found nobody (701).
        raise errors.InvalidField("customer", "give at least one of id, mobile, email, externalId")
    matches = uow.customers.find_customers(
        org_id,
        id=ref.id,
        mobile_norm=normalize_mobile(mobile) if mobile else None,
        email_norm=normalize_email(email) if email else None,
        external_id=external_id,
    )
    if not matches:
        raise errors.CustomerNotFound()
    customer, matched = matches[0]
    # Every identifier must name the same customer: one that names nobody, or another
    # customer, makes the request ambiguous, and revoking the wrong person's coupons is worse
    # than refusing.
    if len(matches) > 1:
        raise errors.AmbiguousCustomer()
    if matched != given:
        nobody = [n for n in ("id", "mobile", "email", "externalId") if n in given - matched]
        verb = "matches" if len(nobody) == 1 else "match"
        raise errors.AmbiguousCustomer(
            f"customer identifiers given do not name one customer: {' and '.join(nobody)} "
            f"{verb} no customer, the rest name one"
        )
    return customer


def series_for_operation(uow: UnitOfWork, org_id: int, series_id: int) -> Series:
    """The org's series, or 707 as a whole-request failure."""
    series = uow.series.series(org_id, series_id)
    if series is None:
        raise errors.InvalidSeries()
    return series


def record_history(
    uow: UnitOfWork,
    ctx: Context,
    action: Action,
    changes: Iterable[tuple[int, CouponState | None, CouponState]],
    reason: str | None = None,
) -> None:
    """Write the history (and outbox events) of a use case's (coupon id, before, after) changes.

    Every use case that changes coupon states calls this once, as its last step, after its
    guarded updates bumped each coupon's version: each event copies that version.
    """
    uow.history.write(
        ctx.org_id,
        [
            (
                coupon_id,
                StateChange(
                    action=action,
                    from_state=before,
                    to_state=after,
                    at=ctx.now,
                    actor=ctx.actor.username,
                    request_id=ctx.request_id,
                    reason=reason,
                ),
            )
            for coupon_id, before, after in changes
        ],
    )
