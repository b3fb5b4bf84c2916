"""Running revoke jobs: one chunk per transaction, checkpointed with the changes it makes.

A chunk locks the job's row (it must still hold the lease), reads the next lines after the
job's checkpoint, revokes them through the very steps a `POST /v2/coupon/revoke` takes (same
lookups, locks, guarded UPDATE and history, `requestId` = the job id), writes each line's
outcome, and moves the checkpoint and counters, all in ONE transaction. A process killed at
any moment therefore leaves either the whole chunk or none of it, and whoever resumes the job
starts after the last committed chunk: no code is revoked, counted or reported twice.

Chunks are small (500 lines by default) so live traffic waits for at most one of them: a
redeem of a coupon the job has not reached yet is never blocked behind the whole job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from coupons.domain.codes import normalize
from coupons.domain.jobs import (
    Job,
    JobKind,
    JobSource,
    JobState,
    LineOutcome,
    LineResult,
    PendingLine,
    Tally,
    after_chunk,
    failed,
    line_of_decision,
    started,
)
from coupons.domain.model import Series
from coupons.domain.revoke import CodeDecision, Outcome
from coupons.services import revoke
from coupons.services.common import Actor, Context
from coupons.services.jobs import job_ended
from coupons.services.ports import UnitOfWork

CHUNK_SIZE = 500


def claim(uow: UnitOfWork, owner: str, now: datetime, lease: timedelta) -> str | None:
    """Lease the oldest runnable job nobody holds (or whose holder's lease ran out)."""
    job_id = uow.jobs.claim(owner, now, now + lease)
    uow.commit()
    return job_id


def run_chunk(
    uow: UnitOfWork,
    job_id: str,
    owner: str,
    now: datetime,
    lease: timedelta,
    chunk_size: int = CHUNK_SIZE,
) -> bool:
    """Do the job's next chunk and commit; False when the job is over or no longer ours."""
    job = uow.jobs.held(job_id, owner, lock=True)
    if job is None:
        return False  # the lease ran out and another worker took the job
    if not job.state.is_runnable:
        uow.jobs.release(job.id, owner)
        uow.commit()
        return False
    state = started(job.state)
    lines: list[PendingLine] = []
    if state is JobState.RUNNING:
        lines = uow.jobs.pending(
            job.id, job.cursor, chunk_size + 1, duplicates=job.source is JobSource.FILE
        )
    more = len(lines) > chunk_size
    lines = lines[:chunk_size]
    results = _process(uow, job, lines, now) if lines else []
    uow.jobs.finish_lines(job.id, results)
    state = after_chunk(state, lines_left=more)
    cursor = lines[-1].line_no if lines else job.cursor
    uow.jobs.advance(job, state=state, cursor=cursor, tally=Tally.of(results), now=now)
    if state.is_finished:
        job_ended(uow, job, state, now)
    else:
        uow.jobs.extend(job.id, owner, now + lease)
    uow.commit()
    return not state.is_finished


def fail_job(uow: UnitOfWork, job_id: str, owner: str, now: datetime, error: str) -> None:
    """End a job that cannot go on (its series expired meanwhile, say), keeping what it did."""
    job = uow.jobs.held(job_id, owner, lock=True)
    if job is None or job.state.is_finished:
        return
    state = failed(job.state)
    uow.jobs.advance(job, state=state, cursor=job.cursor, tally=Tally(), now=now, error=error)
    job_ended(uow, job, state, now)
    uow.commit()


def _context(job: Job, now: datetime) -> Context:
    """The job acts as its creator, under its own id as the request id of every change."""
    actor = Actor(
        org_id=job.org_id, client_id=job.client_id, username=job.created_by, groups=frozenset()
    )
    return Context(actor=actor, request_id=job.id, now=now, job_id=job.id)


def _process(
    uow: UnitOfWork, job: Job, lines: list[PendingLine], now: datetime
) -> list[LineResult]:
    ctx = _context(job, now)
    apply = not job.dry_run
    if job.source is JobSource.FILE:
        return _process_codes(uow, ctx, job, lines)
    ids = [line.coupon_id for line in lines if line.coupon_id is not None]
    if job.kind is JobKind.REINSTATE:
        assert job.undo_of_job_id is not None
        outcome = revoke.reinstate_revoked(
            uow, ctx, job.undo_of_job_id, ids, job.reason, apply=apply
        )
    else:
        _series(uow, ctx, job)  # a series that expired meanwhile fails the job (712)
        outcome = revoke.revoke_coupons(uow, ctx, ids, job.reason, apply=apply)
    by_id = {d.coupons[0].id: d for d in outcome.decisions}
    return [_by_id(line, by_id, job) for line in lines]


def _series(uow: UnitOfWork, ctx: Context, job: Job) -> Series | None:
    """The job's series, checked again at every chunk as a call's would be."""
    if job.series_id is None:
        return None
    return revoke.revocable_series(uow, ctx, job.series_id)


def _by_id(line: PendingLine, decisions: dict[int, CodeDecision], job: Job) -> LineResult:
    decision = decisions.get(line.coupon_id or 0)
    if decision is None:  # the coupon is gone from the org (it cannot be, short of a purge)
        return LineResult(line.line_no, LineOutcome.NOT_FOUND, 682, line.coupon_id)
    result = line_of_decision(line.line_no, decision, dry_run=job.dry_run)
    if job.kind is JobKind.REINSTATE and result.outcome.is_done:
        done = LineOutcome.WOULD_REINSTATE if job.dry_run else LineOutcome.REINSTATED
        return LineResult(line.line_no, done, None, result.coupon_id, result.issued_to)
    return result


def _process_codes(
    uow: UnitOfWork, ctx: Context, job: Job, lines: list[PendingLine]
) -> list[LineResult]:
    """A chunk of file lines: the first line of each code is decided, later ones are
    duplicates (known from the lines table, across chunks)."""
    series = _series(uow, ctx, job)
    codes = [line.code for line in lines if not line.duplicate]
    outcome, refusals = (
        revoke.revoke_codes(uow, ctx, codes, series, job.reason, apply=not job.dry_run)
        if codes
        else (Outcome(), {})
    )
    decided = {normalize(d.code): d for d in outcome.decisions}
    results = []
    for line in lines:
        if line.duplicate:
            results.append(LineResult(line.line_no, LineOutcome.DUPLICATE_IN_FILE))
        elif line.norm in refusals:
            refusal = refusals[line.norm]
            results.append(LineResult(line.line_no, LineOutcome.REFUSED, refusal.code))
        else:
            decision = decided[line.norm]
            results.append(line_of_decision(line.line_no, decision, dry_run=job.dry_run))
    return results
