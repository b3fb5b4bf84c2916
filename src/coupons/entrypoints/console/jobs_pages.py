"""Bulk revoke as a server job (spec §8): start or preview one, watch it, cancel, undo.

The form's pasted codes and uploaded file go to the jobs service exactly as an API upload
does (`parse_codes`, `stage_upload`, `open_upload`); the job page reads the job as the API
renders it, and the report is the API's CSV.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from coupons.domain import errors
from coupons.domain.codes import CodeCase
from coupons.domain.codes_file import CodesFormat, parse_codes
from coupons.domain.jobs import Job, LineOutcome
from coupons.domain.model import Series
from coupons.domain.people import Person
from coupons.domain.revoke import FailureReason
from coupons.entrypoints.console.pages import needs_person
from coupons.entrypoints.console.web import (
    PREFIX,
    call,
    checked_form,
    console_of,
    error_page,
    form_id,
    form_once,
    form_reason,
    message_of,
    new_form_key,
    page,
    read,
    status_of,
)
from coupons.entrypoints.http import render
from coupons.entrypoints.http.jobs_routes import report_response
from coupons.entrypoints.http.middleware import request_id_of
from coupons.services import jobs, people
from coupons.services.auth import require
from coupons.services.common import Context, utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.runner import execute

MAX_UPLOAD = 64 * 1024 * 1024
# The form's other fields and part headers: a codes file the API takes fits in the form too
# (the file's own limit is `parse_codes`'s, as for an API upload).
FORM_ROOM = 64 * 1024
# A line's error code in words: the per-code failures, and the whole-request refusals a
# single-code revoke would answer, which a job reports per line (`LineOutcome.REFUSED`).
REASONS = {str(r.code): r.message for r in FailureReason} | {
    str(e.code): e.message
    for e in (
        errors.GenericCodeNeedsCustomer,
        errors.SeriesExpired,
        errors.NotSupportedForGenericRedeemable,
    )
}
# The report's outcome of a failed line, in words (the outcome itself is shown beside it).
OUTCOMES = {
    LineOutcome.REDEEMED: "Redeemed",
    LineOutcome.ALREADY_REVOKED: "Already revoked",
    LineOutcome.NOT_FOUND: "Not found",
    LineOutcome.NOT_THIS_CUSTOMERS: "Issued to another customer",
    LineOutcome.REFUSED: "Refused by its series",
    LineOutcome.CHANGED_SINCE: "Changed since, or no longer revoked",
}
CHUNK = 64 * 1024


# How many of the org's newest series the form suggests for its Series field.
SERIES_CHOICES = 50


async def _recent(request: Request, person: Person) -> tuple[list[Job], list[Series]]:
    """The org's recent jobs, and its newest series to suggest (the live ones)."""

    def both(uow: UnitOfWork, ctx: Context) -> tuple[list[Job], list[Series]]:
        return jobs.list_jobs(uow, ctx, None, 20), jobs.series_choices(uow, ctx, SERIES_CHOICES)

    return await read(request, person, both)


@needs_person
async def bulk_page(request: Request, person: Person) -> Response:
    recent, series = await _recent(request, person)
    return page(
        request,
        "bulk.html",
        title="Bulk revoke",
        series=series,
        form={"series": "", "codes": "", "reason": ""},
        jobs=[render.job(j) for j in recent],
        form_key=new_form_key(),
    )


def _chunks(upload: UploadFile | None, pasted: str) -> tuple[Iterator[bytes], CodesFormat]:
    if upload is not None and upload.filename:
        name = upload.filename.lower()
        fmt = CodesFormat.CSV if name.endswith(".csv") else CodesFormat.TEXT

        def read_file() -> Iterator[bytes]:
            while chunk := upload.file.read(CHUNK):
                yield chunk

        return read_file(), fmt
    return iter([pasted.encode()]), CodesFormat.TEXT


@needs_person
async def bulk_start(request: Request, person: Person) -> Response:
    form = await checked_form(request, person, max_bytes=MAX_UPLOAD + FORM_ROOM)
    series_raw = str(form.get("series") or "").strip()
    pasted = str(form.get("codes") or "")
    reason = form_reason(form)
    upload = form.get("codes_file")
    step = str(form.get("step") or "")
    dry_run = step == "preview"
    # The whole paste comes back with an error: cut short, a corrected form sent as it
    # stands would revoke part of the codes without a word.
    values = {"series": series_raw, "codes": pasted, "reason": reason}

    async def again(message: str, status: int = 400) -> Response:
        recent, series = await _recent(request, person)
        return page(
            request,
            "bulk.html",
            status=status,
            title="Bulk revoke",
            series=series,
            form=values,
            jobs=[render.job(j) for j in recent],
            error=message,
            form_key=new_form_key(),
        )

    if not reason:
        return await again("Give a reason: it is written into each coupon's history.")
    if len(reason) > 500:
        return await again("The reason is too long (at most 500 characters).")
    if step not in ("preview", "start"):
        # Only the form's two buttons send this: anything else is no choice to revoke.
        return await again("Press Preview or Start revoke job.")
    file = upload if isinstance(upload, UploadFile) else None
    chosen = file is not None and bool(file.filename)
    if not pasted.strip() and not chosen:
        return await again("Paste some codes or choose a codes file.")
    if pasted.strip() and chosen:
        # Taking one and dropping the other silently would revoke less than was asked.
        return await again(
            "Paste codes or choose a codes file, not both: clear the codes box or the file."
        )
    actor = people.actor_of(person)
    try:
        require(actor, "revoke")
        series_id = form_id("Series", series_raw)
        ctx = Context(actor=actor, request_id=request_id_of(request.scope), now=utcnow())
        spec = jobs.JobRequest(series_id, reason, dry_run, CodeCase.AS_IT_IS)
        chunks, fmt = _chunks(file, pasted)
        digest = hashlib.sha256()

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                digest.update(chunk)
                yield chunk

        db = console_of(request).db
        job_id = await run_in_threadpool(
            jobs.stage_upload, db, ctx, spec, parse_codes(hashed(), fmt)
        )
        # The same form sent again (a double click, Back and send) with the same codes starts
        # no second job: it answers with the first one's page.
        once = form_once(form, step, series_id, reason, fmt.value, digest.hexdigest())

        try:
            rendered = await run_in_threadpool(
                execute,
                db,
                ctx,
                lambda uow: jobs.open_upload(uow, ctx, job_id),
                lambda job: job.id.encode(),
                idempotency=once,
            )
        except BaseException:
            await run_in_threadpool(jobs.discard_upload, db, job_id)
            raise
        if rendered.replayed:
            await run_in_threadpool(jobs.discard_upload, db, job_id)
            job_id = rendered.body.decode()
    except errors.MalformedCodesFile as error:
        where = "Codes file" if chosen else "Codes"  # the field it came from, as labelled
        text = f"{where}, line {error.line}: {error.problem}"
        return await again(f"{text} (error {error.code})", status_of(error))
    except errors.CouponError as error:
        return await again(message_of(error), status_of(error))
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)


@needs_person
async def job_page(request: Request, person: Person) -> Response:
    job_id = request.path_params["job_id"][:40]

    def job_and_undo(uow: UnitOfWork, ctx: Context) -> tuple[Job, bool]:
        job = jobs.get_job(uow, ctx, job_id)
        return job, job.id in jobs.undoable(uow, ctx, [job.id])

    try:
        job, undoable = await read(request, person, job_and_undo)
    except errors.CouponError as error:
        return error_page(request, "Job", error)
    return page(
        request,
        "job.html",
        action_key=new_form_key(),
        title=f"Job {job.id}",
        job=render.job(job),
        source=job.source.value,  # an undo or a whole series has no file and no duplicates
        started=job.started_job_id,
        reasons=REASONS,
        outcomes={str(k): v for k, v in OUTCOMES.items()},
        undoable=undoable,  # as on the activity page: while something is left to reinstate
    )


@needs_person
async def job_progress(request: Request, person: Person) -> Response:
    job_id = request.path_params["job_id"][:40]
    try:
        job = await read(request, person, lambda uow, ctx: jobs.get_job(uow, ctx, job_id))
    except errors.CouponError as error:
        return JSONResponse({"error": message_of(error)}, status_code=status_of(error))
    return JSONResponse(render.job(job))


@needs_person
async def job_report(request: Request, person: Person) -> Response:
    job_id = request.path_params["job_id"][:40]
    try:
        job = await read(request, person, lambda uow, ctx: jobs.get_job(uow, ctx, job_id))
    except errors.CouponError as error:
        return error_page(request, "Job", error)
    ctx = Context(
        actor=people.actor_of(person), request_id=request_id_of(request.scope), now=utcnow()
    )
    return report_response(console_of(request).db, ctx, job)


@needs_person
async def job_cancel(request: Request, person: Person) -> Response:
    await checked_form(request, person)
    job_id = request.path_params["job_id"][:40]
    try:
        await call(
            request,
            person,
            lambda uow, ctx: jobs.cancel_job(uow, ctx, job_id),
            lambda job, ctx: render.job(job),
            permission="revoke",
        )
    except errors.CouponError as error:
        return error_page(request, "Cancel job", error, _back_to(job_id))
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)


@needs_person
async def job_start(request: Request, person: Person) -> Response:
    """A preview's "Start revoke job": the same codes, series and reason, for real, without
    sending the codes again. A preview starts one job for the whole org: sent again (a double
    click, Back, or another person on the same preview), the form leads to the job it started
    first (`jobs.start_preview` records it on the preview)."""
    await checked_form(request, person)
    job_id = request.path_params["job_id"][:40]
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: jobs.start_preview(uow, ctx, job_id),
            lambda job, ctx: render.job(job),
            permission="revoke",
        )
    except errors.CouponError as error:
        return error_page(request, "Start revoke job", error, _back_to(job_id))
    return RedirectResponse(f"{PREFIX}/jobs/{entity['jobId']}", status_code=303)


@needs_person
async def job_undo(request: Request, person: Person) -> Response:
    form = await checked_form(request, person)
    job_id = request.path_params["job_id"][:40]
    try:
        entity = await call(
            request,
            person,
            lambda uow, ctx: jobs.undo_job(uow, ctx, job_id, f"undo of job {job_id}"),
            lambda job, ctx: render.job(job),
            permission="reinstate",
            # Sent twice, the second leads to the undo the first started, not to a refusal.
            once=form_once(form, "undo-job", job_id),
        )
    except errors.CouponError as error:
        return error_page(request, "Undo job", error, _back_to(job_id))
    return RedirectResponse(f"{PREFIX}/jobs/{entity['jobId']}", status_code=303)


def _back_to(job_id: str) -> tuple[str, str]:
    return f"{PREFIX}/jobs/{quote(job_id, safe='')}", "Back to the job"


routes = [
    Route("/bulk", bulk_page, methods=["GET"]),
    Route("/bulk", bulk_start, methods=["POST"]),
    Route("/jobs/{job_id}", job_page),
    Route("/jobs/{job_id}/progress", job_progress),
    Route("/jobs/{job_id}/report", job_report),
    Route("/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
    Route("/jobs/{job_id}/undo", job_undo, methods=["POST"]),
    Route("/jobs/{job_id}/start", job_start, methods=["POST"]),
]
