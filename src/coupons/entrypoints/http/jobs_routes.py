"""Routes for revoke jobs (spec §8): upload or select, read, report, cancel, undo."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from tempfile import SpooledTemporaryFile
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ConfigDict, Field, StrictBool, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from coupons.domain import errors
from coupons.domain.codes import CodeCase
from coupons.domain.codes_file import MAX_FILE_BYTES, CodesFormat, parse_codes
from coupons.domain.jobs import Job, JobState, ReportRow
from coupons.entrypoints.http import csv_export, render, schemas
from coupons.entrypoints.http.deps import ReadActor, allowed
from coupons.entrypoints.http.envelope import JSON, success_body
from coupons.entrypoints.http.finding_routes import After
from coupons.entrypoints.http.handlers import (
    duplicate_name_detail,
    field_name,
    malformed_json,
    problem_message,
)
from coupons.entrypoints.http.middleware import request_id_of
from coupons.entrypoints.http.routes import (
    ERRORS,
    CodeCaseQuery,
    DryRunQuery,
    canonical_json,
    idempotency_key,
    perform,
    query_fingerprint,
    replay_headers,
)
from coupons.entrypoints.http.routing import ApiRoute, QueryWhole, strict_json, whole_query
from coupons.services import jobs
from coupons.services.common import Actor, Context, utcnow
from coupons.services.ports import Transactions
from coupons.services.runner import Idempotency, Rendered, execute

router = APIRouter(route_class=ApiRoute)

JOBS = "/v2/coupon/revoke/jobs"
UPLOADS = {"text/csv": CodesFormat.CSV, "text/plain": CodesFormat.TEXT}
REPORT_COLUMNS = ("code", "outcome", "errorCode", "couponId", "issuedToUserId")

RevokeActor = Annotated[Actor, Depends(allowed("revoke"))]
JobId = Annotated[str, Path(alias="jobId", min_length=1, max_length=40)]


class JobSelector(schemas.Body):
    """A whole series: every unredeemed coupon of it (a cancelled campaign). A `Body`, so
    its text is checked as every body's is (no NUL, which PostgreSQL cannot store).

    Unlike the vendor-shaped bodies, it refuses fields it does not know: a selector with
    `couponCodes` read as a whole-series revoke would take far more than was asked."""

    model_config = ConfigDict(**{**schemas.Body.model_config, "extra": "forbid"})

    coupon_series_id: schemas.Int = Field(alias="couponSeriesId", ge=1, le=2**62)
    reason: str | None = Field(default=None, max_length=500)
    # JSON's true or false only. Lax parsing took "yes", "on", "1" and 1 too: whether a whole
    # series is revoked for real hangs on this flag, so it takes only what every JSON
    # reader reads the same way.
    dry_run: StrictBool = Field(default=False, alias="dryRun")


def _location(job_id: str) -> dict[str, str]:
    return {"Location": f"{JOBS}/{job_id}"}


def _accepted(request: Request, rendered: Rendered) -> Response:
    entity = orjson.loads(rendered.body).get("entity") or {}
    headers = _location(str(entity.get("jobId", ""))) | replay_headers(request, rendered)
    return Response(
        rendered.body, status_code=rendered.status_code, media_type=JSON, headers=headers
    )


FILE_TYPES = "a codes file is sent as the whole body with Content-Type text/plain or text/csv"


def _fingerprint(request: Request, body_digest: str, media: str = "") -> str:
    """What makes two requests under one key the same: `media` too for an upload, as the same
    bytes are other codes as text/plain than as text/csv."""
    query = query_fingerprint(request)
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, repr(query), body_digest, media):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


@router.post(JOBS, tags=["revoke jobs"], status_code=202, responses=ERRORS)
async def create_job(
    request: Request,
    actor: RevokeActor,
    coupon_series_id: Annotated[
        QueryWhole | None, *whole_query(1, 2**62, alias="couponSeriesId")
    ] = None,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    dry_run: DryRunQuery = False,
    coupon_code_case: CodeCaseQuery = None,
) -> Response:
    """Start a revoke job: a codes file as the body (`text/csv` with a `code` column, or
    `text/plain`, one code a line; up to 1,000,000 codes / 64 MiB), or a JSON selector
    `{"couponSeriesId", "reason"}` for every unredeemed coupon of a series. 202 with the job."""
    case = CodeCase.parse(coupon_code_case)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    fmt = UPLOADS.get(media)
    if fmt is not None:
        spec = jobs.JobRequest(coupon_series_id, reason, dry_run, case)
        return await _upload(request, actor, fmt, spec)
    sent = getattr(request.state, "sent_media_type", media)  # before the edge relabelled it
    how = f"{FILE_TYPES} (this request's Content-Type is {sent or 'missing'})"
    for name, given in (("couponSeriesId", coupon_series_id), ("reason", reason)):
        if given is not None:
            # Ignored beside a selector, a query's series would have been silently replaced.
            # Most often a codes file sent without its type (curl's --data-binary, -F): say so.
            raise errors.InvalidField(
                name,
                f"{how}; with a JSON selector, give it in the body",
            )
    raw = await request.body()
    try:
        # As every other JSON body is read (9001 for no body, NaN or Infinity).
        data = strict_json(raw)
    except (ValueError, RecursionError) as error:
        if sent in ("multipart/form-data", "application/x-www-form-urlencoded") and raw:
            raise errors.InvalidField(
                "Content-Type", f"{how}, not as a form; a series job as a JSON object"
            ) from None
        reason = error.msg if isinstance(error, json.JSONDecodeError) else ""
        raise malformed_json(duplicate_name_detail(reason)) from None
    if not isinstance(data, dict):
        raise errors.MalformedJson()
    try:
        selector = JobSelector.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        message = problem_message(problem)
        if problem["type"] == "extra_forbidden":
            message = (
                "not a field of a series job (couponSeriesId, reason, dryRun); send codes as a "
                "text/csv or text/plain body"
            )
        raise errors.InvalidField(field_name(tuple(problem["loc"])), message) from None
    spec = jobs.JobRequest(
        selector.coupon_series_id, selector.reason, dry_run or selector.dry_run, case
    )
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
    key = idempotency_key(request)
    idempotency = None
    if key is not None:
        body_digest = hashlib.sha256(canonical_json(raw)).hexdigest()
        idempotency = Idempotency(key, _fingerprint(request, body_digest))
    rendered = await run_in_threadpool(
        execute,
        request.app.state.db,
        ctx,
        lambda uow: jobs.create_series_job(uow, ctx, spec),
        lambda job: success_body(render.job(job)),
        idempotency=idempotency,
        status_code=202,
    )
    return _accepted(request, rendered)


# An upload is read on the event loop into a spooled file, and only then parsed and staged
# in a worker thread: a thread never waits for a client. When the parser pulled the body from
# inside its thread, forty uploads that sent a line and stopped took the whole pool, and the
# API, `/health` included, stopped answering; a limit on upload threads only moved the queue
# (silent clients held the slots, and the uploads behind them waited). A client that sends
# nothing for UPLOAD_IDLE_SECONDS loses its upload (9027, nothing staged).
UPLOAD_IDLE_SECONDS = 30.0
SPOOL_IN_MEMORY = 1024 * 1024  # bytes of an upload held in memory; past that, a temporary file
_READ_BACK = 64 * 1024


async def _receive_into(request: Request, spool: SpooledTemporaryFile[bytes]) -> str:
    """Write the whole body to `spool`; its SHA-256. 9013 past the codes file's size limit."""
    digest = hashlib.sha256()
    stream: AsyncIterator[bytes] = request.stream().__aiter__()
    size, lines_begun = 0, 1
    while True:
        try:
            with anyio.fail_after(UPLOAD_IDLE_SECONDS):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise errors.MalformedCodesFile(
                lines_begun,
                f"nothing arrived for {UPLOAD_IDLE_SECONDS:g} s, so the upload was dropped "
                "before its end; nothing was staged",
            ) from None
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise errors.CodesFileTooLarge()
        digest.update(chunk)
        lines_begun += chunk.count(b"\n")
        spool.write(chunk)
    spool.seek(0)
    return digest.hexdigest()


def _read_back(spool: SpooledTemporaryFile[bytes]) -> Iterator[bytes]:
    while chunk := spool.read(_READ_BACK):
        yield chunk


async def _upload(
    request: Request, actor: Actor, fmt: CodesFormat, spec: jobs.JobRequest
) -> Response:
    """Receive the file, stage it as a job, then open it (or replay / refuse, deleting it)."""
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
    key = idempotency_key(request)
    db = request.app.state.db
    with SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        digest = await _receive_into(request, spool)
        codes = parse_codes(_read_back(spool), fmt)
        job_id = await run_in_threadpool(jobs.stage_upload, db, ctx, spec, codes)
    idempotency = None
    if key is not None:
        idempotency = Idempotency(key, _fingerprint(request, digest, fmt.value))
    try:
        rendered = await run_in_threadpool(
            execute,
            db,
            ctx,
            lambda uow: jobs.open_upload(uow, ctx, job_id),
            lambda job: success_body(render.job(job)),
            idempotency=idempotency,
            status_code=202,
        )
    except BaseException:
        await run_in_threadpool(jobs.discard_upload, db, job_id)
        raise
    if rendered.replayed:
        # The same upload under the same key: the first job answers, this copy never existed.
        await run_in_threadpool(jobs.discard_upload, db, job_id)
    return _accepted(request, rendered)


@router.get(JOBS, tags=["revoke jobs"], responses=ERRORS)
async def list_jobs(
    request: Request,
    actor: ReadActor,
    state: Annotated[
        str | None,
        Query(
            max_length=20,
            json_schema_extra={"enum": [s.value for s in JobState]},
        ),
    ] = None,
    limit: Annotated[QueryWhole, *whole_query(1, jobs.MAX_LIST)] = 100,
    after: After = None,
) -> Response:
    """The org's revoke jobs, newest first; `state` filters; pages like every list (`limit`,
    `after` = the previous page's `nextCursor`)."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: jobs.job_page(uow, ctx, state, limit, after),
        lambda page, ctx: {
            "jobs": [render.job(j) for j in page.items],
            "nextCursor": page.next_cursor,
        },
        write=False,
    )


@router.get(JOBS + "/{jobId}", tags=["revoke jobs"], responses=ERRORS)
async def get_job(job_id: JobId, request: Request, actor: ReadActor) -> Response:
    """A job with its progress and counts."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: jobs.get_job(uow, ctx, job_id),
        lambda job, ctx: render.job(job),
        write=False,
    )


@router.post(JOBS + "/{jobId}/cancel", tags=["revoke jobs"], responses=ERRORS)
async def cancel_job(job_id: JobId, request: Request, actor: RevokeActor) -> Response:
    """Stop at the next chunk boundary; what was revoked stays revoked (9026 once finished)."""
    return await perform(
        request,
        actor,
        lambda uow, ctx: jobs.cancel_job(uow, ctx, job_id),
        lambda job, ctx: render.job(job),
    )


@router.post(JOBS + "/{jobId}/undo", tags=["revoke jobs"], status_code=202, responses=ERRORS)
async def undo_job(
    job_id: JobId,
    request: Request,
    actor: Annotated[Actor, Depends(allowed("reinstate"))],
    reason: Annotated[str | None, Query(max_length=500)] = None,
    dry_run: DryRunQuery = False,
) -> Response:
    """A REINSTATE job of what this job revoked and is still revoked by it (9026 unless the
    job has finished, or when nothing it revoked is still revoked by it). With `dryRun=true`
    the job only reports what it would reinstate (`would_reinstate`), and the job can still
    be undone for real afterwards."""
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
    key = idempotency_key(request)
    idempotency = None
    if key is not None:
        idempotency = Idempotency(key, _fingerprint(request, ""))
    rendered = await run_in_threadpool(
        execute,
        request.app.state.db,
        ctx,
        lambda uow: jobs.undo_job(uow, ctx, job_id, reason, dry_run=dry_run),
        lambda job: success_body(render.job(job)),
        idempotency=idempotency,
        status_code=202,
    )
    return _accepted(request, rendered)


@router.get(
    JOBS + "/{jobId}/report",
    tags=["revoke jobs"],
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
async def job_report(job_id: JobId, request: Request, actor: ReadActor) -> Response:
    """CSV, one row per input line in input order: `code,outcome,errorCode,couponId,
    issuedToUserId`; while the job runs, the lines done so far."""
    ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
    db = request.app.state.db
    job: Job = await run_in_threadpool(
        db.run, lambda uow: jobs.get_job(uow, ctx, job_id), write=False
    )
    return report_response(db, ctx, job)


def report_row(r: ReportRow, case: CodeCase) -> Sequence[csv_export.Cell]:
    """One report line: the code as the job was asked to write it, then what happened."""
    coupons, holders = r.coupon_cells
    return (case.render(r.written), r.outcome, r.error_code, coupons, holders)


def report_response(db: Transactions, ctx: Context, job: Job) -> csv_export.CsvStream:
    """A job's report as CSV (the API's and the console's download), one short read per page:
    no transaction stays open while the client reads, and memory holds one page."""
    case = CodeCase(job.code_case)

    async def body() -> AsyncIterator[bytes]:
        yield csv_export.encode_rows([REPORT_COLUMNS])
        after = 0
        while True:
            page: list[ReportRow] = await run_in_threadpool(
                db.run,
                lambda uow, after=after: jobs.report_page(uow, ctx, job.id, after),
                write=False,
            )
            if not page:
                return
            yield csv_export.encode_rows(report_row(r, case) for r in page)
            after = page[-1].line_no

    return csv_export.CsvStream(body(), filename=f"{job.id}.csv")
