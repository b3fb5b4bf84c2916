"""Revoke job calls of the Python client (spec §8), mixed into `CouponClient`.

Kept apart so the client module stays one readable size; these methods use the client's own
transport, so retries, idempotency keys and authentication are the same as for every call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from coupons.client_finding import Page

JOBS = "/v2/coupon/revoke/jobs"
# The server answers an upload once every line is staged: a million lines take a while.
UPLOAD_TIMEOUT = 600.0
JobState = Literal["QUEUED", "RUNNING", "CANCELLING", "CANCELLED", "SUCCEEDED", "FAILED"]
FINISHED = frozenset({"CANCELLED", "SUCCEEDED", "FAILED"})


@dataclass(frozen=True, slots=True)
class RevokeJob:
    """The job entity; `replayed` when an idempotency key replayed its creation."""

    job_id: str
    kind: str
    state: str
    dry_run: bool
    series_id: int | None
    reason: str | None
    created_by: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    total: int
    processed: int
    revoked_count: int
    reinstated_count: int
    failed_count: int
    duplicate_count: int
    failed_by_code: dict[int, int]
    undone_by_job_id: str | None
    undo_of_job_id: str | None
    error: str | None
    replayed: bool = False

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED

    @classmethod
    def from_entity(cls, e: Mapping[str, Any], replayed: bool = False) -> RevokeJob:
        return cls(
            job_id=e["jobId"],
            kind=e["kind"],
            state=e["state"],
            dry_run=bool(e["dryRun"]),
            series_id=e.get("couponSeriesId"),
            reason=e.get("reason"),
            created_by=e["createdBy"],
            created_at=e["createdAt"],
            started_at=e.get("startedAt"),
            finished_at=e.get("finishedAt"),
            total=int(e["total"]),
            processed=int(e["processed"]),
            revoked_count=int(e["revokedCount"]),
            reinstated_count=int(e.get("reinstatedCount", 0)),
            failed_count=int(e["failedCount"]),
            duplicate_count=int(e.get("duplicateCount", 0)),
            failed_by_code={int(k): int(v) for k, v in e.get("failedByCode", {}).items()},
            undone_by_job_id=e.get("undoneByJobId"),
            undo_of_job_id=e.get("undoOfJobId"),
            error=e.get("error"),
            replayed=replayed,
        )


class _Transport(Protocol):
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
    ) -> httpx.Response: ...


def _job(response: httpx.Response) -> RevokeJob:
    replayed = response.headers.get("idempotent-replayed") == "true"
    return RevokeJob.from_entity(response.json()["entity"], replayed)


class RevokeJobCalls:
    """`POST /v2/coupon/revoke/jobs` and the job resource."""

    def start_revoke_job(
        self: _Transport,
        codes_file: Path | bytes,
        *,
        series_id: int | None = None,
        csv: bool | None = None,
        reason: str | None = None,
        dry_run: bool = False,
        code_case: str | None = None,
        idempotency_key: str | None = None,
    ) -> RevokeJob:
        """Upload a codes file (a path, streamed; or bytes). `csv` defaults to the suffix."""
        if csv is None:
            csv = isinstance(codes_file, Path) and codes_file.suffix.lower() == ".csv"
        params: dict[str, str] = {}
        if series_id is not None:
            params["couponSeriesId"] = str(series_id)
        if reason is not None:
            params["reason"] = reason
        if dry_run:
            params["dryRun"] = "true"
        if code_case is not None:
            params["couponCodeCase"] = code_case
        return _job(
            self._send(
                "POST",
                JOBS,
                params=params,
                content=codes_file,
                content_type="text/csv" if csv else "text/plain",
                idempotency_key=idempotency_key,
                timeout=UPLOAD_TIMEOUT,
            )
        )

    def start_series_revoke_job(
        self: _Transport,
        series_id: int,
        *,
        reason: str | None = None,
        dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> RevokeJob:
        """Revoke every unredeemed coupon of a series (a cancelled campaign)."""
        body: dict[str, Any] = {"couponSeriesId": series_id}
        if reason is not None:
            body["reason"] = reason
        params = {"dryRun": "true"} if dry_run else None
        return _job(
            self._send("POST", JOBS, json=body, params=params, idempotency_key=idempotency_key)
        )

    def revoke_job(self: _Transport, job_id: str) -> RevokeJob:
        return _job(self._send("GET", f"{JOBS}/{job_id}"))

    def revoke_jobs(self: _Transport, state: JobState | None = None) -> list[RevokeJob]:
        """The org's newest 100 jobs, newest first (`revoke_job_page` pages through all)."""
        return RevokeJobCalls.revoke_job_page(self, state).items

    def revoke_job_page(
        self: _Transport,
        state: JobState | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[RevokeJob]:
        """A page of the org's jobs, newest first; pass `next_cursor` back as `after`."""
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        if after is not None:
            params["after"] = after
        entity = self._send("GET", JOBS, params=params).json()["entity"]
        return Page([RevokeJob.from_entity(j) for j in entity["jobs"]], entity.get("nextCursor"))

    def cancel_revoke_job(self: _Transport, job_id: str) -> RevokeJob:
        return _job(self._send("POST", f"{JOBS}/{job_id}/cancel"))

    def undo_revoke_job(
        self: _Transport, job_id: str, *, reason: str | None = None, dry_run: bool = False
    ) -> RevokeJob:
        """Start the REINSTATE job that undoes a finished job (a preview with `dry_run`)."""
        params: dict[str, str] = {}
        if reason is not None:
            params["reason"] = reason
        if dry_run:
            params["dryRun"] = "true"
        return _job(self._send("POST", f"{JOBS}/{job_id}/undo", params=params or None))

    def revoke_job_report(self: _Transport, job_id: str) -> Iterator[bytes]:
        """The report CSV, streamed in pieces (write them to a file)."""
        from coupons.client import CouponApiUnavailable

        response = self._send("GET", f"{JOBS}/{job_id}/report", stream=True)
        try:
            yield from response.iter_bytes()
        except httpx.TransportError as error:
            # Cut short (the server stops a report whose database went away): as `export_csv`,
            # the client's own error, never httpx's; the caller downloads it again.
            raise CouponApiUnavailable(0, f"{type(error).__name__}: {error}", None) from error
        finally:
            response.close()
