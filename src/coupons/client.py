"""A typed Python client for the coupon service's HTTP API.

Errors::

    CouponApiError            the API answered with a failure envelope (code, message, http_status)
    └── CouponApiUnavailable  no usable answer after every retry (connection errors, 429, 5xx)

Every mutating call carries an `Idempotency-Key` (generated per call unless given) that is
reused across that call's retries, so retrying after a lost response never acts twice.
"""

from __future__ import annotations

import base64
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from coupons.client_finding import FindingCalls, Page, Revocation
from coupons.client_jobs import RevokeJob, RevokeJobCalls
from coupons.client_results import (
    ChangedCoupon,
    CodesAdded,
    Coupon,
    Customer,
    FailureGroup,
    HistoryEntry,
    IssuedCoupon,
    Redemption,
    RevokeResult,
    Series,
    Token,
)

__all__ = [
    "BasicAuth",
    "ChangedCoupon",
    "CodesAdded",
    "Coupon",
    "CouponApiError",
    "CouponApiUnavailable",
    "CouponClient",
    "Customer",
    "FailureGroup",
    "HistoryEntry",
    "IssuedCoupon",
    "OAuth",
    "Page",
    "Redemption",
    "RetryPolicy",
    "Revocation",
    "RevokeJob",
    "RevokeResult",
    "Series",
    "Token",
]

CodeCase = Literal["UPPER", "LOWER", "AS_IT_IS"]
SeriesType = Literal["DISC_CODE", "DISC_CODE_PIN", "GENERIC", "GENERIC_REDEEMABLE"]
CouponStatus = Literal["ACTIVE", "REDEEMED", "REVOKED", "ALL"]

# 5xx answers worth another try; 501 and 505 will not change on retry.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOKEN_PATH = "/v3/oauth/token/generate"


class CouponApiError(Exception):
    """The API refused a call: the envelope's first error code and message, and the status."""

    def __init__(self, code: int, message: str, http_status: int | None) -> None:
        super().__init__(f"{code}: {message} (HTTP {http_status})")
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"http_status={self.http_status!r})"
        )

    def describe(self) -> str:
        """One line for a person: the server's message and code, or, when no answer came
        (`code` 0), what went wrong on the way."""
        if self.code == 0:
            return f"no answer from the server: {self.message}"
        return f"{self.message} (error {self.code})"


class CouponApiUnavailable(CouponApiError):
    """No usable answer after every retry; `code` is 0 when no answer came.

    `delivered` is False only when no try could have reached the server (each one failed to
    connect): a bulk run then knows the request changed nothing."""

    delivered: bool = True


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by total time."""

    attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 8.0
    deadline: float = 60.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number `attempt` (1-based): half fixed, half random."""
        # The doubling stops long before the cap matters: 2.0 ** 1024 overflows, and a run
        # retrying for hours (`for_seconds`) gets that far.
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 60))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)

    @classmethod
    def for_seconds(cls, seconds: float) -> RetryPolicy:
        """Retry for `seconds`, however many tries that takes (the CLI's `--retry-seconds`:
        eight tries ran out after about 18 s, so a 30-second restart stopped a run)."""
        return cls(attempts=sys.maxsize, deadline=seconds)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class OAuth:
    """Trade the credentials for a token, refresh it before expiry and after a 401."""

    username: str
    password: str


CustomerRef = Mapping[str, Any]  # any of id, mobile, email, externalId


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_of(response: httpx.Response) -> CouponApiError:
    try:
        body = response.json()
        first = body["errors"][0]
        return CouponApiError(int(first["code"]), str(first["message"]), response.status_code)
    except Exception:
        text = response.text[:200] or response.reason_phrase
        return CouponApiError(0, text, response.status_code)


def _body(content: bytes | Path | None) -> bytes | Iterator[bytes] | None:
    if not isinstance(content, Path):
        return content

    def pieces() -> Iterator[bytes]:
        with content.open("rb") as handle:
            while piece := handle.read(1 << 20):
                yield piece

    return pieces()


class CouponClient(FindingCalls, RevokeJobCalls):
    """Synchronous client for every endpoint of the spec; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        auth: BasicAuth | OAuth,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_connections: int = 10,
        stop: threading.Event | None = None,
    ) -> None:
        """`stop`, once set, ends every call's retries at once: the call gives up as if its
        time had run out (how a bulk run stops on Ctrl-C, or once the server is gone)."""
        self._auth = auth
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._stop = stop
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CouponClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        if isinstance(self._auth, BasicAuth):
            pair = f"{self._auth.username}:{self._auth.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        with self._token_lock:
            # Refresh a little early so a token never expires in flight.
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                token = self.generate_token(self._auth.username, self._auth.password)
                self._token = token.access_token
                self._token_expires = time.monotonic() + max(0, token.expires_in - 30)
            return {"Authorization": f"Bearer {self._token}"}

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        authenticated: bool = True,
        content: bytes | Path | None = None,
        content_type: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send with retries; return the final 2xx response or raise `CouponApiError`.

        A `Path` body is streamed from the file, afresh on each try; `stream` leaves a
        successful response's body unread (the caller iterates and closes it).
        """
        headers: dict[str, str] = {"Content-Type": content_type} if content_type else {}
        if method != "GET":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        started = time.monotonic()
        refreshed = False
        delivered = False  # whether any try may have reached the server
        attempt = 0
        while True:
            attempt += 1
            if authenticated:
                headers.update(self._auth_headers())
            wait: float | None = None
            try:
                request = self._http.build_request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    content=_body(content),
                    timeout=self._http.timeout if timeout is None else httpx.Timeout(timeout),
                )
                response = self._http.send(request, stream=stream)
                if stream and not response.is_success:
                    response.read()
            except httpx.UnsupportedProtocol as error:
                raise CouponApiError(0, f"bad URL: {error}", None) from error
            except httpx.TransportError as error:
                failure: CouponApiError = CouponApiUnavailable(
                    0, f"{type(error).__name__}: {error}", None
                )
                # A refused or timed-out connect sent nothing; any later failure may have.
                delivered = delivered or not isinstance(
                    error, httpx.ConnectError | httpx.ConnectTimeout
                )
            else:
                delivered = True
                if response.is_success:
                    return response
                if (
                    response.status_code == 401
                    and authenticated
                    and isinstance(self._auth, OAuth)
                    and not refreshed
                ):
                    # The token may have expired or its key rotated: fetch a new one once.
                    refreshed = True
                    headers.update(self._auth_headers(refresh=True))
                    attempt -= 1
                    continue
                error_ = _error_of(response)
                if response.status_code not in RETRY_STATUSES:
                    raise error_
                failure = CouponApiUnavailable(error_.code, error_.message, error_.http_status)
                wait = _retry_after(response)
            left = self._retry.deadline - (time.monotonic() - started)
            if wait is None:
                # Our own backoff ends at the deadline, for one last try there; a server's
                # Retry-After past it is not worth waiting for.
                wait = min(self._retry.delay(attempt), left)
            out_of_tries = attempt >= self._retry.attempts or left <= 0 or wait > left
            if out_of_tries or self._stopped_during(wait):
                if isinstance(failure, CouponApiUnavailable):
                    failure.delivered = delivered
                raise failure

    def _stopped_during(self, seconds: float) -> bool:
        """Wait before the next try; True when the client's stop is set (already, or while
        waiting), so the call gives up now."""
        if self._stop is None:
            self._sleep(seconds)
            return False
        return self._stop.wait(seconds)

    def _entity(self, response: httpx.Response) -> Any:
        return response.json()["entity"]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._entity(self._send(method, path, **kwargs))

    # --- endpoints -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /health`: status, database backend and version."""
        entity: dict[str, Any] = self._call("GET", "/health", authenticated=False)
        return entity

    def generate_token(self, username: str, password: str) -> Token:
        """`POST /v3/oauth/token/generate`."""
        response = self._send(
            "POST", TOKEN_PATH, json={"key": username, "secret": password}, authenticated=False
        )
        data = response.json()["data"]
        return Token(access_token=data["accessToken"], expires_in=int(data["expiresIn"]))

    def create_series(
        self,
        *,
        description: str,
        client_handling_type: SeriesType,
        valid_till: str,
        discount_type: Literal["ABS", "PERC"],
        discount_value: float,
        generic_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> Series:
        """Create a coupon series (coupon_admin)."""
        body: dict[str, Any] = {
            "description": description,
            "clientHandlingType": client_handling_type,
            "validTill": valid_till,
            "discountType": discount_type,
            "discountValue": discount_value,
        }
        if generic_code is not None:
            body["genericCode"] = generic_code
        return Series.from_entity(
            self._call("POST", "/v2/coupon/series", json=body, idempotency_key=idempotency_key)
        )

    def get_series(self, series_id: int) -> Series:
        """A series with its coupon counts per state."""
        return Series.from_entity(self._call("GET", f"/v2/coupon/series/{series_id}"))

    def add_codes(
        self,
        series_id: int,
        codes: Sequence[str] | None = None,
        *,
        generate: int | None = None,
        idempotency_key: str | None = None,
    ) -> CodesAdded:
        """Add given codes (at most 10,000) or `generate` new ones to a series' pool."""
        body: dict[str, Any] = {"codes": list(codes)} if codes is not None else {}
        if generate is not None:
            body["generate"] = generate
        e = self._call(
            "POST",
            f"/v2/coupon/series/{series_id}/codes",
            json=body,
            idempotency_key=idempotency_key,
        )
        return CodesAdded(added=int(e["added"]), duplicates=list(e["duplicates"]))

    def create_customer(
        self,
        *,
        mobile: str | None = None,
        email: str | None = None,
        external_id: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Customer:
        """Add a customer."""
        fields = {
            "mobile": mobile,
            "email": email,
            "externalId": external_id,
            "firstName": first_name,
            "lastName": last_name,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        e = self._call("POST", "/v2/customers", json=body, idempotency_key=idempotency_key)
        return Customer.from_entity({**fields, **e})

    def lookup_customer(
        self,
        *,
        id: int | None = None,
        mobile: str | None = None,
        email: str | None = None,
        external_id: str | None = None,
    ) -> Customer:
        """Find a customer by one identifier."""
        query = {"id": id, "mobile": mobile, "email": email, "externalId": external_id}
        params = {k: v for k, v in query.items() if v is not None}
        return Customer.from_entity(self._call("GET", "/v2/customers/lookup", params=params))

    def customer_coupons(self, customer_id: int, status: CouponStatus = "ALL") -> list[Coupon]:
        """A customer's coupons, filtered by status."""
        e = self._call("GET", f"/v2/customers/{customer_id}/coupons", params={"status": status})
        return [Coupon.from_entity(c) for c in e["coupons"]]

    def issue(
        self, series_id: int, customer: CustomerRef, *, idempotency_key: str | None = None
    ) -> IssuedCoupon:
        """Issue one coupon of a series to a customer."""
        body = {"seriesId": series_id, "customer": dict(customer)}
        return IssuedCoupon.from_entity(
            self._call("POST", "/v2/coupon/issue", json=body, idempotency_key=idempotency_key)
        )

    def issue_multiple(
        self,
        series_id: int,
        customer: CustomerRef,
        count: int,
        *,
        idempotency_key: str | None = None,
    ) -> list[IssuedCoupon]:
        """Issue `count` (1 to 500) coupons of a series to one customer."""
        body = {"seriesId": series_id, "customer": dict(customer), "count": count}
        e = self._call(
            "POST", "/v2/coupon/issue/multiple", json=body, idempotency_key=idempotency_key
        )
        return [IssuedCoupon.from_entity(c) for c in e["coupons"]]

    def get_coupon(self, coupon_id: int) -> Coupon:
        """A coupon with its full history."""
        return Coupon.from_entity(self._call("GET", f"/v2/coupon/{coupon_id}"))

    def redeem(
        self,
        customer: CustomerRef,
        codes: Iterable[str | tuple[str, str]],
        *,
        transaction_number: str | None = None,
        bill_amount: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[Redemption]:
        """Redeem every code (or `(code, pin)`) for the customer, or none."""
        lines = [{"code": c} if isinstance(c, str) else {"code": c[0], "pin": c[1]} for c in codes]
        body: dict[str, Any] = {"customer": dict(customer), "redemptionRequestList": lines}
        if transaction_number is not None:
            body["transactionNumber"] = transaction_number
        if bill_amount is not None:
            body["billAmount"] = bill_amount
        e = self._call("POST", "/v2/coupon/redeem", json=body, idempotency_key=idempotency_key)
        return [
            Redemption(int(r["redemptionId"]), int(r["couponId"]), r["code"])
            for r in e["redemptions"]
        ]

    def reactivate(
        self, redemption_ids: Sequence[int], *, idempotency_key: str | None = None
    ) -> list[Redemption]:
        """Undo redemptions; their coupons return to ISSUED."""
        e = self._call(
            "PATCH",
            "/v2/coupon/reactivate",
            json={"redemptionIds": list(redemption_ids)},
            idempotency_key=idempotency_key,
        )
        return [
            Redemption(int(r["redemptionId"]), int(r["couponId"]), r["couponCode"])
            for r in e["reactivated"]
        ]

    def revoke(
        self,
        *,
        series_id: int | None = None,
        codes: Sequence[str] | None = None,
        customer: CustomerRef | None = None,
        reason: str | None = None,
        code_case: CodeCase | None = None,
        dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> RevokeResult:
        """`POST /v2/coupon/revoke`: by codes (at most 50), a customer's, or both."""
        return self._change(
            "/v2/coupon/revoke",
            ("revokedCoupons", "failedToRevoke"),
            series_id,
            codes,
            customer,
            reason,
            code_case,
            dry_run,
            idempotency_key,
        )

    def reinstate(
        self,
        *,
        series_id: int | None = None,
        codes: Sequence[str] | None = None,
        customer: CustomerRef | None = None,
        reason: str | None = None,
        code_case: CodeCase | None = None,
        dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> RevokeResult:
        """`POST /v2/coupon/reinstate`: revoked coupons return to their earlier state."""
        return self._change(
            "/v2/coupon/reinstate",
            ("reinstatedCoupons", "failedToReinstate"),
            series_id,
            codes,
            customer,
            reason,
            code_case,
            dry_run,
            idempotency_key,
        )

    def _change(
        self,
        path: str,
        keys: tuple[str, str],
        series_id: int | None,
        codes: Sequence[str] | None,
        customer: CustomerRef | None,
        reason: str | None,
        code_case: CodeCase | None,
        dry_run: bool,
        idempotency_key: str | None,
    ) -> RevokeResult:
        body: dict[str, Any] = {}
        if series_id is not None:
            body["couponSeriesId"] = series_id
        if codes is not None:
            body["couponCodes"] = list(codes)
        if customer is not None:
            body["customer"] = dict(customer)
        if reason is not None:
            body["reason"] = reason
        params: dict[str, str] = {}
        if code_case is not None:
            params["couponCodeCase"] = code_case
        if dry_run:
            params["dryRun"] = "true"
        response = self._send(
            "POST", path, json=body, params=params, idempotency_key=idempotency_key
        )
        return RevokeResult.from_entity(
            response.json()["entity"],
            *keys,
            replayed=response.headers.get("idempotent-replayed") == "true",
        )
