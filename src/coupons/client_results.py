"""What the API client returns: typed results read from the service's JSON entities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    description: str
    client_handling_type: str
    generic_code: str | None
    valid_till: str
    discount_type: str
    discount_value: float
    expired: bool
    counts: dict[str, int] | None = None

    @classmethod
    def from_entity(cls, e: Mapping[str, Any]) -> Series:
        return cls(
            id=int(e["id"]),
            description=e["description"],
            client_handling_type=e["clientHandlingType"],
            generic_code=e.get("genericCode"),
            valid_till=e["validTill"],
            discount_type=e["discountType"],
            discount_value=float(e["discountValue"]),
            expired=bool(e.get("expired", False)),
            counts=e.get("counts"),
        )


@dataclass(frozen=True, slots=True)
class CodesAdded:
    added: int
    duplicates: list[str]


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    @classmethod
    def from_entity(cls, e: Mapping[str, Any]) -> Customer:
        return cls(
            id=int(e["id"]),
            mobile=e.get("mobile"),
            email=e.get("email"),
            external_id=e.get("externalId"),
            first_name=e.get("firstName"),
            last_name=e.get("lastName"),
        )


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    coupon_id: int
    coupon_code: str
    series_id: int
    issued_to_user_id: int
    pin: str | None = None

    @classmethod
    def from_entity(cls, e: Mapping[str, Any]) -> IssuedCoupon:
        return cls(
            coupon_id=int(e["couponId"]),
            coupon_code=e["couponCode"],
            series_id=int(e["seriesId"]),
            issued_to_user_id=int(e["issuedToUserId"]),
            pin=e.get("pin"),
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    action: str
    at: str
    actor: str
    request_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Coupon:
    coupon_id: int
    coupon_code: str
    series_id: int
    state: str
    issued_to_user_id: int | None
    history: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def from_entity(cls, e: Mapping[str, Any]) -> Coupon:
        return cls(
            coupon_id=int(e["couponId"]),
            coupon_code=e["couponCode"],
            series_id=int(e["seriesId"]),
            state=e["state"],
            issued_to_user_id=e.get("issuedToUserId"),
            history=[
                HistoryEntry(h["action"], h["at"], h["actor"], h.get("requestId"), h.get("reason"))
                for h in e.get("history", [])
            ],
        )


@dataclass(frozen=True, slots=True)
class Redemption:
    redemption_id: int
    coupon_id: int
    code: str


@dataclass(frozen=True, slots=True)
class ChangedCoupon:
    """A coupon a revoke (or reinstate) changed."""

    coupon_id: int
    coupon_code: str
    issued_to_user_id: int | None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    error_code: int
    error_message: str
    coupon_codes: list[str]


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """Revoke's (or reinstate's) entity; `replayed` when an idempotency key replayed it."""

    total_count: int
    failed_count: int
    changed: list[ChangedCoupon]
    failed: list[FailureGroup]
    replayed: bool = False

    @classmethod
    def from_entity(
        cls, e: Mapping[str, Any], done_key: str, failed_key: str, replayed: bool
    ) -> RevokeResult:
        return cls(
            total_count=int(e["totalCount"]),
            failed_count=int(e["failedCount"]),
            changed=[
                ChangedCoupon(int(c["couponId"]), c["couponCode"], c.get("issuedToUserId"))
                for c in e[done_key]
            ],
            failed=[
                FailureGroup(int(g["errorCode"]), g["errorMessage"], list(g["couponCodes"]))
                for g in e[failed_key]
            ],
            replayed=replayed,
        )
