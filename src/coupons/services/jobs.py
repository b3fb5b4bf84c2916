"""Revoke jobs (spec §8): create, read, report, cancel and undo. Chunks run in `job_runner`.

An uploaded codes file is staged in batches, each its own short transaction, under a job in
the hidden STAGING state: nothing holds the write lock while a client uploads, and nobody sees
or runs the job. A malformed file then deletes what was staged, so it creates nothing; a
process that dies mid-upload leaves a STAGING job whose lease runs out, and the job worker
deletes it. Only a complete upload becomes QUEUED.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from coupons.domain import errors
from coupons.domain.codes import CodeCase, normalize
from coupons.domain.codes_file import FileCode
from coupons.domain.jobs import (
    JOB_ID_PREFIX,
    Job,
    JobKind,
    JobSource,
    JobState,
    NewJob,
    ReportRow,
    cancelled,
)
from coupons.domain.model import Series, SeriesType
from coupons.domain.paging import Page, decode_moment_cursor, list_kind, page_of
from coupons.services import revoke
from coupons.services.common import Context, utcnow
from coupons.services.ports import Transactions, UnitOfWork

STAGE_BATCH = 5_000
STAGING_LEASE = timedelta(minutes=30)
MAX_LIST = 1_000
JOBS_LIST = "jobs"  # the list's cursor tag
REPORT_PAGE = 5_000


@dataclass(frozen=True, slots=True)
class JobRequest:
    series_id: int | None
    reason: str | None
    dry_run: bool
    code_case: CodeCase


def new_job_id() -> str:
    """`job_` and 24 hex digits: also the history `requestId` of every change the job makes."""
    return JOB_ID_PREFIX + secrets.token_hex(12)


def _new_job(ctx: Context, request: JobRequest, source: JobSource, job_id: str) -> NewJob:
    return NewJob(
        id=job_id,
        org_id=ctx.org_id,
        kind=JobKind.REVOKE,
        source=source,
        dry_run=request.dry_run,
        series_id=request.series_id,
        reason=request.reason,
        code_case=request.code_case.value,
        client_id=ctx.actor.client_id,
        created_by=ctx.actor.username,
        created_at=ctx.now,
    )


def _series(uow: UnitOfWork, ctx: Context, series_id: int, *, by_code: bool) -> Series:
    """The revoke checks of a given series (707, 712, 811; 108 for codes of a GENERIC one)."""
    series = revoke.revocable_series(uow, ctx, series_id)
    if by_code and series.type is SeriesType.GENERIC:
        raise errors.GenericCodeNeedsCustomer()
    return series


# --- a codes file ----------------------------------------------------------------------------


def begin_upload(uow: UnitOfWork, ctx: Context, request: JobRequest) -> str:
    """Check the request and open a STAGING job for its lines."""
    if request.series_id is not None:
        _series(uow, ctx, request.series_id, by_code=True)
    job_id = new_job_id()
    uow.jobs.add(
        _new_job(ctx, request, JobSource.FILE, job_id), staging_until=ctx.now + STAGING_LEASE
    )
    uow.commit()
    return job_id


def stage_upload(
    db: Transactions, ctx: Context, request: JobRequest, codes: Iterable[FileCode]
) -> str:
    """Stage every code of a file under a new STAGING job, a batch per transaction.

    Any error (a malformed line, the client going away) deletes what was staged and re-raises.
    """
    job_id = db.run(lambda uow: begin_upload(uow, ctx, request))
    try:
        for batch in _batches(iter(codes)):
            # Each batch renews the lease from its own time: renewed from the request's, a
            # client sending for longer than the lease lost its upload to a cleanup.
            db.run(lambda uow, batch=batch: _stage(uow, job_id, batch, utcnow()))  # type: ignore[misc]
    except BaseException:
        discard_upload(db, job_id)
        raise
    return job_id


def _batches(codes: Iterator[FileCode]) -> Iterator[list[FileCode]]:
    while batch := list(islice(codes, STAGE_BATCH)):
        yield batch


def _stage(uow: UnitOfWork, job_id: str, batch: list[FileCode], now: datetime) -> None:
    uow.jobs.add_lines(job_id, [(c.line_no, c.code, normalize(c.code)) for c in batch])
    uow.jobs.keep_staging(job_id, now + STAGING_LEASE)
    uow.commit()


def open_upload(uow: UnitOfWork, ctx: Context, job_id: str) -> Job:
    """A fully staged upload becomes a QUEUED job (9027 when the file held no code)."""
    total = uow.jobs.staged_count(job_id)
    if total == 0:
        raise errors.MalformedCodesFile(1, "the file holds no codes")
    uow.jobs.lines_added(total)
    if not uow.jobs.open(job_id, total):
        raise RuntimeError(f"staged job {job_id} vanished")
    return _job(uow, ctx, job_id)


def discard_upload(db: Transactions, job_id: str) -> None:
    def work(uow: UnitOfWork) -> None:
        uow.jobs.delete_staged(job_id)
        uow.commit()

    db.run(work)


def clear_abandoned_uploads(uow: UnitOfWork, now: datetime, limit: int = 10) -> int:
    """Delete uploads whose process died before finishing them."""
    found = uow.jobs.abandoned_staging(now, limit)
    for job_id in found:
        uow.jobs.delete_staged(job_id)
    uow.commit()
    return len(found)


# --- a whole series --------------------------------------------------------------------------


def create_series_job(uow: UnitOfWork, ctx: Context, request: JobRequest) -> Job:
    """Every unredeemed coupon of the series, staged by one INSERT ... SELECT."""
    if request.series_id is None:
        raise errors.InvalidField("couponSeriesId", "required")
    _series(uow, ctx, request.series_id, by_code=False)
    job_id = new_job_id()
    uow.jobs.add(_new_job(ctx, request, JobSource.SERIES, job_id), staging_until=None)
    total = uow.jobs.stage_series(job_id, ctx.org_id, request.series_id)
    uow.jobs.lines_added(total)
    uow.jobs.set_total(job_id, total)
    return _job(uow, ctx, job_id)


def start_preview(uow: UnitOfWork, ctx: Context, preview_id: str) -> Job:
    """The revoke a preview showed, for real: a new job with the preview's series, reason and
    code case, of the same lines (an upload's, copied; a series' coupons, taken afresh, as a
    series job takes them when it is made). The preview stays as it was; the series is
    checked again, as it may have ended since.

    A preview starts one job for its whole org: once started, starting it again (anyone, any
    time, even after that job was undone) answers the job it started and changes nothing.
    The preview's row is locked first, so of two starts at once the second waits and then
    finds the first's job."""
    preview = _job(uow, ctx, preview_id, lock=True)
    if preview.started_job_id is not None:
        return _job(uow, ctx, preview.started_job_id)
    preview.check_can_start()
    request = JobRequest(preview.series_id, preview.reason, False, CodeCase(preview.code_case))
    if preview.source is JobSource.SERIES:
        job = create_series_job(uow, ctx, request)
    else:
        job = _copy_of_upload(uow, ctx, preview, request)
    if not uow.jobs.mark_started(preview.id, job.id):
        # Only without the row lock (which every start takes) could this happen: refuse.
        raise errors.JobStateConflict("the preview was started by another request")
    return job


def _copy_of_upload(uow: UnitOfWork, ctx: Context, preview: Job, request: JobRequest) -> Job:
    if preview.series_id is not None:
        _series(uow, ctx, preview.series_id, by_code=True)
    job_id = new_job_id()
    uow.jobs.add(_new_job(ctx, request, JobSource.FILE, job_id), staging_until=None)
    total = uow.jobs.stage_copy(job_id, preview.id)
    uow.jobs.lines_added(total)
    uow.jobs.set_total(job_id, total)
    return _job(uow, ctx, job_id)


# --- reading, cancel, undo -------------------------------------------------------------------


def _job(uow: UnitOfWork, ctx: Context, job_id: str, *, lock: bool = False) -> Job:
    found = uow.jobs.get(ctx.org_id, job_id, lock=lock)
    if found is None:
        raise errors.JobNotFound()
    return found


def get_job(uow: UnitOfWork, ctx: Context, job_id: str) -> Job:
    """The caller's org's job, or 9025 (another org's job behaves as absent)."""
    return _job(uow, ctx, job_id)


def undoable(uow: UnitOfWork, ctx: Context, job_ids: Sequence[str]) -> set[str]:
    """Which of the org's jobs `undo_job` would undo now (finished, revoking, not a dry run,
    not undone yet) and would find something to reinstate (not every coupon it revoked has
    been reinstated since): where the console offers an Undo button."""
    allowed = {j.id for j in uow.jobs.many(ctx.org_id, job_ids) if j.undo_refusal() is None}
    spent = {
        row.request_id
        for row in uow.revocations.many(ctx.org_id, sorted(allowed))
        if row.reinstated_count >= row.revoked_count
    }
    return allowed - spent


def series_choices(uow: UnitOfWork, ctx: Context, limit: int) -> list[Series]:
    """Of the org's newest `limit` series, those a revoke job may name now (the console
    suggests them). The rows alone: the series list's counts would count every coupon."""
    newest = uow.series.series_page(ctx.org_id, before_id=None, limit=limit)
    return [s for s in newest if revoke.revocable_now(s, ctx.now)]


def list_jobs(uow: UnitOfWork, ctx: Context, state: str | None, limit: int) -> list[Job]:
    """The org's newest jobs, optionally in one state (the console's recent ones)."""
    return job_page(uow, ctx, state, limit, None).items


def job_page(
    uow: UnitOfWork, ctx: Context, state: str | None, limit: int, after: str | None
) -> Page[Job]:
    """A page of the org's jobs, newest first, optionally in one state (an empty `state` is
    none, as on the other lists), from after a cursor of this list with the same filter."""
    wanted = None
    if state is not None and state.strip():
        try:
            wanted = JobState(state.strip().upper())
        except ValueError:
            names = ", ".join(s.value for s in JobState)
            raise errors.InvalidField("state", f"one of {names}") from None
    if not 1 <= limit <= MAX_LIST:
        raise errors.InvalidField("limit", f"must be 1 to {MAX_LIST}")
    kind = list_kind(JOBS_LIST, ctx.org_id, wanted.value if wanted else None)
    before = None
    if after is not None:
        at, job_id = decode_moment_cursor(kind, after, str)
        before = (at, str(job_id))
    found = uow.jobs.of_org(ctx.org_id, wanted, limit + 1, before=before)
    return page_of(found, limit, kind, lambda j: (j.created_at.isoformat(), j.id))


def report_page(uow: UnitOfWork, ctx: Context, job_id: str, after: int) -> list[ReportRow]:
    """The next page of done lines after line `after`, in input order."""
    _job(uow, ctx, job_id)
    return uow.jobs.report(job_id, after, REPORT_PAGE)


def cancel_job(uow: UnitOfWork, ctx: Context, job_id: str) -> Job:
    """Ask the job to stop at its next chunk boundary (9026 once it has finished)."""
    job = _job(uow, ctx, job_id, lock=True)
    state = cancelled(job.state, held=job.is_held(ctx.now))
    uow.jobs.set_state(job.id, state, ctx.now)
    if state.is_finished:
        job_ended(uow, job, state, ctx.now)
    return _job(uow, ctx, job_id)


def job_ended(uow: UnitOfWork, job: Job, state: JobState, now: datetime) -> None:
    """What every job's end records: its `revoke_job.finished` event, unless it was a dry run
    (it changed nothing, and events are changes: a subscriber could not tell a preview from a
    revoke); and for an undo that was cancelled or failed, the job it undid becomes undoable
    again. Left marked, that job could never be undone: what the stopped undo did not
    reinstate would stay revoked, and a new undo reports what the stopped one did reinstate as
    changed since."""
    if not job.dry_run:
        uow.jobs.add_finished_event(job, state, now)
    if job.undo_of_job_id is not None and not job.dry_run and state is not JobState.SUCCEEDED:
        uow.jobs.release_undone(job.undo_of_job_id, job.id)


def undo_job(
    uow: UnitOfWork, ctx: Context, job_id: str, reason: str | None, *, dry_run: bool = False
) -> Job:
    """A REINSTATE job of the coupons `job_id` revoked that are still revoked by it; a dry
    run's only reports them, and leaves the job to be undone for real."""
    job = _job(uow, ctx, job_id, lock=True)
    job.check_can_undo()
    undo_id = new_job_id()
    uow.jobs.add(
        NewJob(
            id=undo_id,
            org_id=ctx.org_id,
            kind=JobKind.REINSTATE,
            source=JobSource.UNDO,
            dry_run=dry_run,
            series_id=job.series_id,
            # The undo's own why, or none: the revoke's reason in a reinstate's history
            # would read as the reason it was reinstated.
            reason=reason,
            code_case=job.code_case,
            client_id=ctx.actor.client_id,
            created_by=ctx.actor.username,
            created_at=ctx.now,
            undo_of_job_id=job.id,
        ),
        staging_until=None,
    )
    total = uow.jobs.stage_undo(undo_id, ctx.org_id, job.id)
    uow.jobs.lines_added(total)
    uow.jobs.set_total(undo_id, total)
    if not dry_run:
        uow.jobs.mark_undone(job.id, undo_id)
    return _job(uow, ctx, undo_id)
