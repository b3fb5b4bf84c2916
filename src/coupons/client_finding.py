"""The client's calls for finding things (spec §7): lists, code search, the revocations trail
and CSV exports. A mixin of `coupons.client.CouponClient`, kept apart so each module stays
small; import everything from `coupons.client`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx

from coupons.client_results import Coupon, Series

if TYPE_CHECKING:
    from coupons.client import RetryPolicy

T = TypeVar("T")
CouponState = Literal["AVAILABLE", "ISSUED", "REDEEMED", "REVOKED"]
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Revocation:
    """One row of the revocations trail: a revoke call or job that revoked something."""

    request_id: str
    at: str
    actor: str
    reason: str | None
    revoked_count: int
    reinstated_count: int
    job_id: str | None = None

    @classmethod
    def from_entity(cls, e: Mapping[str, Any]) -> Revocation:
        return cls(
            request_id=e["requestId"],
            at=e["at"],
            actor=e["actor"],
            reason=e.get("reason"),
            revoked_count=int(e["revokedCount"]),
            reinstated_count=int(e["reinstatedCount"]),
            job_id=e.get("jobId"),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; pass `next_cursor` as `after` for the next (None: last page)."""

    items: list[T]
    next_cursor: str | None


def _paging(limit: int, after: str | None) -> dict[str, Any]:
    return {"limit": limit, **({"after": after} if after is not None else {})}


def _present(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


class FindingCalls:
    """Lists, search, the revocations trail and exports; needs CouponClient's transport."""

    _http: httpx.Client
    _retry: RetryPolicy
    _sleep: Callable[[float], None]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def _stopped_during(self, seconds: float) -> bool:
        raise NotImplementedError

    def list_series(self, *, limit: int = 100, after: str | None = None) -> Page[Series]:
        """The org's series, newest first, with counts per state."""
        e = self._call("GET", "/v2/coupon/series", params=_paging(limit, after))
        return Page([Series.from_entity(s) for s in e["series"]], e.get("nextCursor"))

    def series_coupons(
        self,
        series_id: int,
        *,
        state: CouponState | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Coupon]:
        """A page of a series' coupons in id order, optionally in one state."""
        params = _paging(limit, after)
        params.update(_present(state=state))
        e = self._call("GET", f"/v2/coupon/series/{series_id}/coupons", params=params)
        return _coupons(e)

    def search_coupons(
        self,
        *,
        code: str | None = None,
        code_prefix: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Coupon]:
        """Coupons of every series of the org by exact code, or by prefix (>= 3 characters)."""
        params = _paging(limit, after)
        params.update(_present(code=code, codePrefix=code_prefix))
        return _coupons(self._call("GET", "/v2/coupon/search", params=params))

    def revocations(
        self,
        *,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[Revocation]:
        """A page of the revocations trail, newest first."""
        params = _paging(limit, after)
        params.update(_present(actor=actor, since=since, until=until))
        e = self._call("GET", "/v2/coupon/revocations", params=params)
        return Page([Revocation.from_entity(r) for r in e["revocations"]], e.get("nextCursor"))

    def iter_revocations(
        self, *, actor: str | None = None, since: str | None = None, until: str | None = None
    ) -> Iterator[Revocation]:
        """Every row of the trail in the range, newest first, fetched a page at a time."""
        after: str | None = None
        while True:
            page = self.revocations(
                actor=actor, since=since, until=until, limit=MAX_PAGE, after=after
            )
            yield from page.items
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def export_csv(self, path: str, out: IO[bytes], params: Mapping[str, str] | None = None) -> int:
        """Stream the CSV export at `path` (e.g. `/v2/coupon/series/7/coupons.csv`) into
        `out`; returns the bytes written. Retried only while nothing has been written: a
        failure mid-stream raises `CouponApiUnavailable`, and the caller starts again."""
        from coupons.client import CouponApiUnavailable, _error_of

        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            written = 0
            try:
                with self._http.stream(
                    "GET", path, params=params, headers=self._auth_headers()
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise _error_of(response)
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        written += len(chunk)
                return written
            except httpx.TransportError as error:
                # Bounded as every other call: by tries, by the deadline, and by `stop`.
                left = self._retry.deadline - (time.monotonic() - started)
                wait = min(self._retry.delay(attempt), max(left, 0.0))
                if (
                    written
                    or attempt >= self._retry.attempts
                    or left <= 0
                    or self._stopped_during(wait)
                ):
                    message = f"{type(error).__name__}: {error}"
                    raise CouponApiUnavailable(0, message, None) from error


def _coupons(entity: Mapping[str, Any]) -> Page[Coupon]:
    return Page([Coupon.from_entity(c) for c in entity["coupons"]], entity.get("nextCursor"))
