"""Domain results to the JSON entities of the spec."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from coupons.domain.codes import CodeCase
from coupons.domain.jobs import Job, JobKind
from coupons.domain.model import Coupon, CouponState, Customer, Series, StateChange
from coupons.domain.revoke import Outcome
from coupons.domain.trail import Revocation
from coupons.services.issue import IssuedCoupon
from coupons.services.redeem import Reactivation, Redemption
from coupons.services.series import UploadResult


def timestamp(value: datetime) -> str:
    """A time the service recorded, always to the microsecond (`...33.512044Z`): without a
    fraction when it happened to be zero, it sorted as text after the times of its second."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def set_time(value: datetime) -> str:
    """A time a client set (`validTill`), written as precisely as it was given."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def series(s: Series, counts: dict[CouponState, int] | None, now: datetime) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": s.id,
        "description": s.description,
        "clientHandlingType": s.type.value,
        "genericCode": s.generic_code,
        "validTill": set_time(s.valid_till),
        "discountType": s.discount_type.value,
        "discountValue": number(s.discount_value),
        "expired": s.is_expired(now),
        "createdAt": timestamp(s.created_at),
    }
    if counts is not None:
        entity["counts"] = {state.value: count for state, count in counts.items()}
        entity["totalCount"] = sum(counts.values())
    return entity


def customer(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "mobile": c.mobile,
        "email": c.email,
        "externalId": c.external_id,
        "firstName": c.first_name,
        "lastName": c.last_name,
    }


def coupon(c: Coupon) -> dict[str, Any]:
    return {
        "couponId": c.id,
        "couponCode": c.code,
        "seriesId": c.series_id,
        "state": c.state.value,
        "issuedToUserId": c.customer_id,
    }


def coupons(found: list[Coupon]) -> dict[str, Any]:
    return {"coupons": [coupon(c) for c in found]}


def coupon_with_history(c: Coupon, history: list[StateChange]) -> dict[str, Any]:
    entity = coupon(c)
    entity["history"] = [
        {
            "action": h.action.value,
            "fromState": h.from_state.value if h.from_state else None,
            "toState": h.to_state.value,
            "at": timestamp(h.at),
            "actor": h.actor,
            "requestId": h.request_id,
            "reason": h.reason,
        }
        for h in history
    ]
    return entity


def issued(i: IssuedCoupon) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "couponId": i.coupon_id,
        "couponCode": i.code,
        "seriesId": i.series.id,
        "issuedToUserId": i.customer_id,
        "validTill": set_time(i.series.valid_till),
    }
    if i.pin is not None:
        entity["pin"] = i.pin
    return entity


def issued_many(found: list[IssuedCoupon]) -> dict[str, Any]:
    return {"coupons": [issued(i) for i in found]}


def upload(result: UploadResult) -> dict[str, Any]:
    return {"added": result.added, "duplicates": result.duplicates}


def redemptions(done: list[Redemption]) -> dict[str, Any]:
    return {
        "redemptions": [
            {"redemptionId": r.redemption_id, "couponId": r.coupon_id, "code": r.code} for r in done
        ]
    }


def reactivations(done: list[Reactivation]) -> dict[str, Any]:
    return {
        "reactivated": [
            {"redemptionId": r.redemption_id, "couponId": r.coupon_id, "couponCode": r.code}
            for r in done
        ]
    }


def token(access_token: str, expires_in: int) -> dict[str, Any]:
    """The whole token response: the vendor's `data` beside the usual envelope's `entity`."""
    data = {"accessToken": access_token, "expiresIn": expires_in}
    return {"data": data, "entity": data, "warnings": [], "errors": [], "success": True}


def failure_groups(o: Outcome, case: CodeCase) -> list[dict[str, Any]]:
    """The vendor's `failedToRevoke` groups, one per error code, in first-seen order."""
    return [
        {
            "errorCode": reason.code,
            "errorMessage": reason.message,
            "couponCodes": [case.render(code) for code in codes],
        }
        for reason, codes in o.failed.items()
    ]


def outcome(o: Outcome, case: CodeCase, done_key: str, failed_key: str) -> dict[str, Any]:
    """The vendor's revoke entity (or reinstate's mirror of it)."""
    return {
        "totalCount": o.total_count,
        "failedCount": o.failed_count,
        done_key: [
            {"couponId": c.id, "couponCode": case.render(c.code), "issuedToUserId": c.customer_id}
            for c in o.done
        ],
        failed_key: failure_groups(o, case),
    }


def revocation(r: Revocation) -> dict[str, Any]:
    """One row of the revocations trail (spec §7)."""
    return {
        "requestId": r.request_id,
        "at": timestamp(r.at),
        "actor": r.actor,
        "reason": r.reason,
        "revokedCount": r.revoked_count,
        "reinstatedCount": r.reinstated_count,
        "jobId": r.job_id,
    }


def job(j: Job) -> dict[str, Any]:
    """A revoke job (spec §8); counts are per input line."""
    revoking = j.kind is JobKind.REVOKE
    return {
        "jobId": j.id,
        "kind": j.kind.value,
        "state": j.state.value,
        "dryRun": j.dry_run,
        "couponSeriesId": j.series_id,
        "reason": j.reason,
        "couponCodeCase": j.code_case,
        "createdBy": j.created_by,
        "createdAt": timestamp(j.created_at),
        "startedAt": timestamp(j.started_at) if j.started_at else None,
        "finishedAt": timestamp(j.finished_at) if j.finished_at else None,
        "total": j.total,
        "processed": j.processed,
        "revokedCount": j.done_count if revoking else 0,
        "reinstatedCount": 0 if revoking else j.done_count,
        "failedCount": j.failed_count,
        "duplicateCount": j.duplicate_count,
        "failedByCode": {str(code): n for code, n in sorted(j.failed_by_code.items())},
        "failedByOutcome": dict(sorted(j.failed_by_outcome.items())),
        "undoneByJobId": j.undone_by_job_id,
        "undoOfJobId": j.undo_of_job_id,
        "error": j.error,
    }
