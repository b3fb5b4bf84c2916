"""Whole-request failures.

Each class carries its spec code and HTTP status; one HTTP handler turns any of them into
the error envelope. Per-code revoke outcomes are data (see `model.FailureReason`), not errors.

    CouponError
    ├── InvalidRequest (9001/9002/9003/9005/9007/9008/9013/756 ...)
    ├── AuthError (9010, 9011, 9021)
    ├── NotFound (404-ish lookups: 701, 707, 9014, 9025)
    ├── Conflict (9006, 9016, 9026)
    └── DatabaseUnavailable (9023: retry later)
"""

from __future__ import annotations


class CouponError(Exception):
    """A request that fails as a whole and changes nothing."""

    code: int = 9002
    http_status: int = 400
    message: str = "invalid request"
    # Seconds after which a retry may succeed, for errors that are about timing (throttled,
    # database away): every entrypoint sends it as `Retry-After`.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


# --- body and parameter problems -------------------------------------------------------


class MalformedJson(CouponError):
    code, message = 9001, "request body is not valid JSON or not a JSON object"


class InvalidField(CouponError):
    code = 9002

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class RequestIdTaken(InvalidField):
    """A revoke's request id already names another call's (or a job's) trail row in the org:
    the trail keeps one row per call, so the caller records this one under a fresh id."""

    def __init__(self) -> None:
        super().__init__("X-Request-Id", "already names an earlier revoke in this org")


class TooManyCodes(CouponError):
    code, message = 9003, "too many coupon codes in one request (limit 50)"


class TooManyCustomerCoupons(CouponError):
    code, message = 9004, "customer has more than 100 unredeemed coupons in scope; nothing revoked"


class SeriesRequiredForManyCodes(CouponError):
    code, message = 9005, "couponSeriesId is required when more than one coupon code is given"


class InvalidCodeCase(CouponError):
    code = 9007

    def __init__(self, value: str) -> None:
        super().__init__(f"couponCodeCase: invalid value {value!r}; use UPPER, LOWER or AS_IT_IS")


class AmbiguousCustomer(CouponError):
    code, message = 9008, "customer identifiers given refer to different customers"


class BodyTooLarge(CouponError):
    code, http_status, message = 9013, 413, "request body too large (limit 1 MiB)"


class CodesFileTooLarge(BodyTooLarge):
    message = "codes file too large (limit 1,000,000 codes and 64 MiB)"


class MalformedCodesFile(CouponError):
    """A codes file a job cannot be made of; the message names the first bad line."""

    code = 9027

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"codes file, line {line}: {problem}")


class CodesOrCustomerRequired(CouponError):
    code, message = 756, "CouponCode/s or customer info is mandatory"


class GenericCodeNeedsCustomer(CouponError):
    code, message = 108, "Unsupported coupons series config with client handling type GENERIC"


class SeriesExpired(CouponError):
    code, message = 712, "Coupon Series / Campaign has expired"


class NotSupportedForGenericRedeemable(CouponError):
    code, message = 811, "operation not supported for a GENERIC_REDEEMABLE series"


class NotSupportedForSeriesType(CouponError):
    code, message = 9015, "operation not supported for this series type"


class InvalidSeries(CouponError):
    code, message = 707, "coupon series id is invalid"


class CustomerNotFound(CouponError):
    code, message = 701, "customer not found"


# --- redeem (all or nothing) --------------------------------------------------------------


class CouponCodeInvalid(CouponError):
    code, message = 702, "coupon code is invalid"


class CouponNotIssuedToCustomer(CouponError):
    code, message = 703, "coupon not issued to this customer"


class CouponAlreadyRedeemed(CouponError):
    code, message = 711, "coupon already redeemed"


class CouponRevoked(CouponError):
    code, message = 682, "coupon is revoked"


class InvalidPin(CouponError):
    code, message = 9019, "coupon PIN is missing or wrong"


class RedemptionNotFound(CouponError):
    code, message = 9020, "redemption not found"


# --- lookups ------------------------------------------------------------------------------


class ResourceNotFound(CouponError):
    code, http_status, message = 9014, 404, "resource not found"


class JobNotFound(CouponError):
    code, http_status, message = 9025, 404, "no such revoke job"


class SeriesNotFound(CouponError):
    code, http_status, message = 707, 404, "coupon series id is invalid"


class CustomerLookupNotFound(CouponError):
    code, http_status, message = 701, 404, "customer not found"


class CouponNotFound(CouponError):
    code, http_status, message = 682, 404, "Coupon not found"


# --- conflicts ----------------------------------------------------------------------------


class IdempotencyKeyReused(CouponError):
    code, http_status = 9006, 422
    message = "Idempotency-Key reused with a different request"


class CustomerIdentifierTaken(CouponError):
    code, http_status = 9016, 409

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: already used by another customer of this org")


class OrgNameTaken(CouponError):
    code, http_status = 9016, 409

    def __init__(self, name: str) -> None:
        super().__init__(f"org {name!r} already exists")


class UsernameTaken(CouponError):
    code, http_status = 9016, 409

    def __init__(self, username: str, kind: str = "username") -> None:
        super().__init__(f"{kind} {username!r} already exists")


class JobStateConflict(CouponError):
    """Cancel of a finished job, undo of an unfinished one (or of one already undone)."""

    code, http_status = 9026, 409


# --- authentication -----------------------------------------------------------------------


class AuthenticationFailed(CouponError):
    code, http_status, message = 9010, 401, "authentication missing or failed"


class AccessDenied(CouponError):
    code, http_status, message = (
        9011,
        403,
        "the caller's access group does not allow this operation",
    )


class TooManyAuthFailures(CouponError):
    code, http_status, message = 9021, 429, "too many failed authentication attempts; retry later"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__()


# --- the store ----------------------------------------------------------------------------


class DatabaseUnavailable(CouponError):
    """The database is down, restarting or failing over: nothing was written; retry soon."""

    code, http_status = 9023, 503
    message = "the database is unreachable or failing over; nothing was written; retry later"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__()


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection went while COMMIT was on its way: the database may have committed, and
    only a retry under the same `Idempotency-Key` finds out (a replay if it did) without
    applying the change twice. Saying "nothing was written" here was a guess, sometimes
    wrong."""

    message = (
        "the database stopped answering during the commit: the change may or may not have "
        "been written; retry with the same Idempotency-Key, which applies it at most once"
    )
