"""Revoke jobs on in-memory fakes: a codes file run chunk by chunk, dry runs, cancel, leases,
undo, whole-series jobs and the trail and events a job leaves (no database)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from coupons.domain import errors
from coupons.domain.codes import CodeCase
from coupons.domain.codes_file import FileCode
from coupons.domain.jobs import Job, JobKind, JobSource, JobState, ReportRow
from coupons.domain.model import Action, CouponState, SeriesType
from coupons.services import job_runner, jobs
from coupons.services.common import Context
from coupons.services.revoke import RevokeRequest, reinstate, revoke
from tests.unit.fakes import FakeTransactions
from tests.unit.world import NOW, ORG, OTHER_ORG, World

LEASE = timedelta(minutes=1)
ALICE_MOBILE = "+1 555 0100"
AVAILABLE, ISSUED = CouponState.AVAILABLE, CouponState.ISSUED
REDEEMED, REVOKED = CouponState.REDEEMED, CouponState.REVOKED


@pytest.fixture
def world() -> World:
    return World()


def file_job(
    world: World,
    codes: Sequence[str],
    *,
    series_id: int | None,
    dry_run: bool = False,
    reason: str | None = None,
    ctx: Context | None = None,
) -> Job:
    """Stage a codes file (one code a line) and open it, as the upload endpoint does."""
    ctx = ctx or world.ctx()
    request = jobs.JobRequest(series_id, reason, dry_run, CodeCase.UPPER)
    lines = [FileCode(n, code) for n, code in enumerate(codes, 1)]
    job_id = jobs.stage_upload(FakeTransactions(world.store), ctx, request, lines)
    uow = world.uow()
    job = jobs.open_upload(uow, ctx, job_id)
    uow.commit()
    return job


def claim(world: World, owner: str, now: datetime = NOW) -> str | None:
    return job_runner.claim(world.uow(), owner, now, LEASE)


def chunk(world: World, job_id: str, owner: str, *, size: int, now: datetime = NOW) -> bool:
    return job_runner.run_chunk(world.uow(), job_id, owner, now, LEASE, size)


def drain(world: World, *, size: int = 500, owner: str = "worker-1") -> list[bool]:
    """Run every runnable job to its end as a worker does; what each chunk answered."""
    answers: list[bool] = []
    while (job_id := claim(world, owner)) is not None:
        while more := chunk(world, job_id, owner, size=size):
            answers.append(more)
            assert len(answers) < 100, "the job never ended"
        answers.append(more)
        uow = world.uow()
        uow.jobs.release(job_id, owner)
        uow.commit()
    return answers


def job_of(world: World, job_id: str) -> Job:
    found = world.uow().jobs.get(ORG, job_id)
    assert found is not None
    return found


def report(world: World, job_id: str, after: int = 0) -> list[ReportRow]:
    return world.uow().jobs.report(job_id, after, 1_000)


def outcomes(world: World, job_id: str) -> list[tuple[str, str, int | None]]:
    return [(r.code, r.outcome, r.error_code) for r in report(world, job_id)]


# --- a codes file ----------------------------------------------------------------------------


def test_a_job_starts_when_a_worker_first_takes_it_not_when_its_first_chunk_ends(
    world: World,
) -> None:
    # a one-chunk job showed startedAt == finishedAt, to the microsecond
    series = world.series()
    world.coupons(series, "ST1", to=world.customer(ALICE_MOBILE))
    job = file_job(world, ["ST1"], series_id=series.id)
    assert job_of(world, job.id).started_at is None

    assert claim(world, "worker-1") == job.id
    assert chunk(world, job.id, "worker-1", size=10, now=NOW + timedelta(seconds=5)) is False

    done = job_of(world, job.id)
    assert (done.state, done.started_at) == (JobState.SUCCEEDED, NOW)
    assert done.finished_at == NOW + timedelta(seconds=5)


def test_a_codes_file_job_revokes_chunk_by_chunk_and_reports_each_line_in_input_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a coupon in each case a job meets, and a file of them staged two lines a batch
    monkeypatch.setattr(jobs, "STAGE_BATCH", 2)
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    ok1, ok2 = world.coupons(series, "OK1", "OK2", to=alice)
    [red1] = world.coupons(series, "RED1", state=REDEEMED, to=alice)
    [rev1] = world.coupons(series, "REV1", state=REVOKED, to=alice)
    [av1] = world.coupons(series, "AV1", state=AVAILABLE)
    lines = ["ok1", "RED1", "rev1", "nope", "OK1", "av1", "ok2"]
    job = file_job(world, lines, series_id=series.id, reason="leak 42")
    assert (job.state, job.kind, job.source, job.total) == (
        JobState.QUEUED,
        JobKind.REVOKE,
        JobSource.FILE,
        7,
    )

    # When a worker takes it and runs one chunk of three
    assert claim(world, "worker-1") == job.id
    assert chunk(world, job.id, "worker-1", size=3) is True

    # Then the first three lines are done and checkpointed, and the job runs on under lease
    running = job_of(world, job.id)
    assert (running.state, running.cursor, running.processed) == (JobState.RUNNING, 3, 3)
    assert (running.claimed_by, running.lease_until) == ("worker-1", NOW + LEASE)
    assert [r.line_no for r in report(world, job.id)] == [1, 2, 3]
    assert world.states([ok1, ok2, av1]) == [REVOKED, ISSUED, AVAILABLE]

    # When the next two chunks run
    assert chunk(world, job.id, "worker-1", size=3) is True
    assert chunk(world, job.id, "worker-1", size=3) is False

    # Then the job succeeded with exact counts, OK1 again (a chunk later) being a duplicate
    done = job_of(world, job.id)
    assert (done.state, done.cursor, done.processed) == (JobState.SUCCEEDED, 7, 7)
    assert (done.done_count, done.failed_count, done.duplicate_count) == (3, 3, 1)
    assert done.failed_by_code == {405: 1, 682: 2}
    assert (done.started_at, done.finished_at) == (NOW, NOW)
    assert (done.claimed_by, done.lease_until, done.error) == (None, None, None)
    # and the report has one row per line, in input order, as the codes were written
    assert report(world, job.id) == [
        ReportRow(1, "ok1", "revoked", None, ok1.id, alice.id),
        ReportRow(2, "RED1", "redeemed", 405, red1.id, alice.id),
        ReportRow(3, "rev1", "already_revoked", 682, rev1.id, alice.id),
        ReportRow(4, "nope", "not_found", 682, None, None),
        ReportRow(5, "OK1", "duplicate_in_file", None, None, None),
        ReportRow(6, "av1", "revoked", None, av1.id, None),
        ReportRow(7, "ok2", "revoked", None, ok2.id, alice.id),
    ]
    assert [r.line_no for r in report(world, job.id, after=5)] == [6, 7]
    assert world.states([ok1, ok2, red1, rev1, av1]) == [
        REVOKED,
        REVOKED,
        REDEEMED,
        REVOKED,
        REVOKED,
    ]
    assert world.coupon(av1.id).revoked_from is AVAILABLE


def test_without_a_series_each_code_is_looked_up_in_the_org_as_a_single_code_revoke(
    world: World,
) -> None:
    # Given a code of this org, a generic series' code and another org's code
    [mine] = world.coupons(world.series(), "MINE1")
    world.series(SeriesType.GENERIC, generic_code="SHARED")
    world.coupons(world.series(org_id=OTHER_ORG), "THEIRS1")

    # When a file of them runs without a series
    job = file_job(world, ["mine1", "shared", "theirs1"], series_id=None)
    drain(world)

    # Then the generic code is refused on its line alone, the other org's code is not found
    assert outcomes(world, job.id) == [
        ("mine1", "revoked", None),
        ("shared", "refused", 108),
        ("theirs1", "not_found", 404),
    ]
    assert world.coupon(mine.id).state is REVOKED


def test_a_dry_run_job_reports_what_it_would_do_and_changes_nothing(world: World) -> None:
    # Given an issued and a redeemed code
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    world.coupons(series, "OK1", to=alice)
    world.coupons(series, "RED1", state=REDEEMED, to=alice)
    coupons_before = copy.deepcopy(world.store.coupons)

    # When a dry run of both runs
    job = file_job(world, ["OK1", "RED1"], series_id=series.id, dry_run=True)
    drain(world)

    # Then it reports what it would do, counted, and no coupon, history or trail changed
    assert outcomes(world, job.id) == [("OK1", "would_revoke", None), ("RED1", "redeemed", 405)]
    done = job_of(world, job.id)
    assert (done.state, done.done_count, done.failed_count) == (JobState.SUCCEEDED, 1, 1)
    assert world.store.coupons == coupons_before
    assert world.store.history == []
    assert world.store.trail == []
    # and there is nothing to undo
    with pytest.raises(errors.JobStateConflict):
        jobs.undo_job(world.uow(), world.ctx(), job.id, None)


# --- cancel and leases -----------------------------------------------------------------------


def test_cancel_part_way_keeps_what_was_revoked_and_stops_at_the_next_chunk(
    world: World,
) -> None:
    # Given a ten-line job that has run two chunks of three
    series = world.series()
    coupons = world.coupons(series, *[f"C{i:03}" for i in range(10)], state=AVAILABLE)
    job = file_job(world, [c.code for c in coupons], series_id=series.id)
    assert claim(world, "worker-1") == job.id
    assert chunk(world, job.id, "worker-1", size=3) is True
    assert chunk(world, job.id, "worker-1", size=3) is True

    # When it is cancelled while the worker holds it
    asked = jobs.cancel_job(world.uow(), world.ctx(), job.id)

    # Then it is CANCELLING until the worker's next chunk, which settles it without a line
    assert (asked.state, asked.processed) == (JobState.CANCELLING, 6)
    assert chunk(world, job.id, "worker-1", size=3) is False
    cancelled = job_of(world, job.id)
    assert (cancelled.state, cancelled.processed, cancelled.done_count, cancelled.cursor) == (
        JobState.CANCELLED,
        6,
        6,
        6,
    )
    assert (cancelled.finished_at, cancelled.claimed_by) == (NOW, None)
    # and what it revoked stays revoked, reported; the rest is untouched
    assert [(r.line_no, r.outcome) for r in report(world, job.id)] == [
        (n, "revoked") for n in range(1, 7)
    ]
    assert world.states(coupons) == [REVOKED] * 6 + [AVAILABLE] * 4
    assert claim(world, "worker-2") is None
    finished = [e for e in world.uow().history.events(ORG, 0, 100) if e.coupon_id is None]
    assert [(e.request_id, e.job_state) for e in finished] == [(job.id, "CANCELLED")]
    # and a finished job cannot be cancelled
    with pytest.raises(errors.JobStateConflict):
        jobs.cancel_job(world.uow(), world.ctx(), job.id)


def test_a_queued_job_no_worker_holds_is_cancelled_at_once(world: World) -> None:
    series = world.series()
    [coupon] = world.coupons(series, "OK1")
    job = file_job(world, ["OK1"], series_id=series.id)

    cancelled = jobs.cancel_job(world.uow(), world.ctx(), job.id)

    assert (cancelled.state, cancelled.finished_at, cancelled.processed) == (
        JobState.CANCELLED,
        NOW,
        0,
    )
    assert claim(world, "worker-1") is None
    assert world.coupon(coupon.id).state is ISSUED
    assert report(world, job.id) == []


def test_a_job_whose_lease_ran_out_is_not_run_by_its_old_owner_and_another_claims_it(
    world: World,
) -> None:
    # Given a six-line job whose worker ran one chunk of two, then stalled
    series = world.series()
    coupons = world.coupons(series, *[f"L{i}" for i in range(6)], state=AVAILABLE)
    job = file_job(world, [c.code for c in coupons], series_id=series.id)
    assert claim(world, "old") == job.id
    assert chunk(world, job.id, "old", size=2) is True

    # When another worker looks for work while the lease runs, and after it ran out
    during = claim(world, "new", now=NOW + LEASE / 2)
    later = NOW + 2 * LEASE
    after = claim(world, "new", now=later)

    # Then it gets the job only once the lease ran out
    assert (during, after) == (None, job.id)
    taken = job_of(world, job.id)
    assert (taken.claimed_by, taken.lease_until, taken.processed) == ("new", later + LEASE, 2)
    # and the old owner's next chunk does nothing, nor can it let the job go
    assert chunk(world, job.id, "old", size=2, now=later) is False
    uow = world.uow()
    uow.jobs.release(job.id, "old")
    uow.jobs.extend(job.id, "old", later + 10 * LEASE)
    uow.commit()
    still = job_of(world, job.id)
    assert (still.claimed_by, still.lease_until, still.processed) == ("new", later + LEASE, 2)
    assert world.states(coupons) == [REVOKED] * 2 + [AVAILABLE] * 4

    # When the new owner runs the rest
    assert chunk(world, job.id, "new", size=2, now=later) is True
    assert chunk(world, job.id, "new", size=2, now=later) is False

    # Then every line was done once, and each coupon revoked once
    done = job_of(world, job.id)
    assert (done.state, done.processed, done.done_count) == (JobState.SUCCEEDED, 6, 6)
    assert [(r.line_no, r.outcome) for r in report(world, job.id)] == [
        (n, "revoked") for n in range(1, 7)
    ]
    assert [len(world.uow().history.history(c.id)) for c in coupons] == [1] * 6


# --- undo --------------------------------------------------------------------------------------


def test_undo_reinstates_what_the_job_revoked_and_reports_what_changed_since(
    world: World,
) -> None:
    # Given a finished job that revoked three coupons (not the redeemed one)
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    ok1, ok2 = world.coupons(series, "OK1", "OK2", to=alice)
    [av1] = world.coupons(series, "AV1", state=AVAILABLE)
    [red1] = world.coupons(series, "RED1", state=REDEEMED, to=alice)
    job = file_job(world, ["OK1", "OK2", "AV1", "RED1"], series_id=series.id, reason="leak")
    with pytest.raises(errors.JobStateConflict):
        jobs.undo_job(world.uow(), world.ctx(), job.id, None)  # not finished yet
    drain(world)
    # and OK2 reinstated and revoked again by someone else since
    one = RevokeRequest(series_id=series.id, codes=("OK2",))
    reinstate(world.uow(), world.ctx("fix-1"), one)
    revoke(world.uow(), world.ctx("again-1"), one)

    # When the job is undone
    undo = jobs.undo_job(world.uow(), world.ctx("undo-call"), job.id, None)

    # Then a queued REINSTATE job holds the three coupons the job revoked
    assert (undo.kind, undo.source, undo.state, undo.total) == (
        JobKind.REINSTATE,
        JobSource.UNDO,
        JobState.QUEUED,
        3,
    )
    # (with no reason of its own: the job's "leak" is why they were revoked, not reinstated)
    assert (undo.undo_of_job_id, undo.reason, undo.dry_run) == (job.id, None, False)
    assert job_of(world, job.id).undone_by_job_id == undo.id

    # When it runs in chunks of two
    assert drain(world, size=2) == [True, False]

    # Then OK1 and AV1 are back as they were, OK2 is reported and stays revoked
    assert report(world, undo.id) == [
        ReportRow(1, "OK1", "reinstated", None, ok1.id, alice.id),
        ReportRow(2, "OK2", "changed_since", 9018, ok2.id, alice.id),
        ReportRow(3, "AV1", "reinstated", None, av1.id, None),
    ]
    done = job_of(world, undo.id)
    assert (done.state, done.done_count, done.failed_count) == (JobState.SUCCEEDED, 2, 1)
    assert done.failed_by_code == {9018: 1}
    assert world.states([ok1, ok2, av1, red1]) == [ISSUED, REVOKED, AVAILABLE, REDEEMED]
    last = world.uow().history.history(ok1.id)[-1]
    assert (last.action, last.request_id, last.reason) == (Action.REINSTATE, undo.id, None)
    # and a job is undone once
    with pytest.raises(errors.JobStateConflict):
        jobs.undo_job(world.uow(), world.ctx(), job.id, None)


def test_a_dry_run_undo_reports_what_it_would_reinstate_and_leaves_the_job_undoable(
    world: World,
) -> None:
    # Given a finished job that revoked two coupons
    series = world.series()
    ok1, ok2 = world.coupons(series, "OK1", "OK2")
    job = file_job(world, ["OK1", "OK2"], series_id=series.id)
    drain(world)
    history_before = len(world.store.history)

    # When its undo is previewed and the preview runs
    preview = jobs.undo_job(world.uow(), world.ctx("preview"), job.id, None, dry_run=True)
    drain(world)

    # Then the preview reports both as would_reinstate and changed nothing
    assert (preview.kind, preview.dry_run, preview.undo_of_job_id) == (
        JobKind.REINSTATE,
        True,
        job.id,
    )
    assert outcomes(world, preview.id) == [
        ("OK1", "would_reinstate", None),
        ("OK2", "would_reinstate", None),
    ]
    assert world.states([ok1, ok2]) == [REVOKED, REVOKED]
    assert len(world.store.history) == history_before
    assert job_of(world, job.id).undone_by_job_id is None
    # and the job can still be undone for real
    undo = jobs.undo_job(world.uow(), world.ctx("undo"), job.id, None)
    drain(world)
    assert world.states([ok1, ok2]) == [ISSUED, ISSUED]
    assert job_of(world, job.id).undone_by_job_id == undo.id


def test_an_undo_cancelled_or_failed_leaves_the_job_undoable_again(world: World) -> None:
    # Given a finished job that revoked three coupons, and its undo cancelled part way
    series = world.series()
    coupons = world.coupons(series, "U1", "U2", "U3")
    job = file_job(world, ["U1", "U2", "U3"], series_id=series.id)
    drain(world)
    first = jobs.undo_job(world.uow(), world.ctx("undo-1"), job.id, None)
    assert claim(world, "worker-1") == first.id
    assert chunk(world, first.id, "worker-1", size=1) is True
    jobs.cancel_job(world.uow(), world.ctx(), first.id)
    assert chunk(world, first.id, "worker-1", size=1) is False
    assert job_of(world, first.id).state is JobState.CANCELLED

    # Then the job is no longer marked undone, and a second undo finishes the work
    assert job_of(world, job.id).undone_by_job_id is None
    assert jobs.undoable(world.uow(), world.ctx(), [job.id]) == {job.id}
    second = jobs.undo_job(world.uow(), world.ctx("undo-2"), job.id, None)
    drain(world)
    assert outcomes(world, second.id) == [
        ("U1", "changed_since", 9017),
        ("U2", "reinstated", None),
        ("U3", "reinstated", None),
    ]
    assert world.states(coupons) == [ISSUED, ISSUED, ISSUED]
    assert job_of(world, job.id).undone_by_job_id == second.id
    # and a successful undo still uses the job's one undo up
    with pytest.raises(errors.JobStateConflict, match="already undone"):
        jobs.undo_job(world.uow(), world.ctx(), job.id, None)


def test_an_undo_that_fails_leaves_the_job_undoable_again_and_a_dry_run_undo_marks_nothing(
    world: World,
) -> None:
    # Given a finished job, and its undo ended by the worker as failed
    series = world.series()
    world.coupons(series, "F1", "F2")
    job = file_job(world, ["F1", "F2"], series_id=series.id)
    drain(world)
    undo = jobs.undo_job(world.uow(), world.ctx("undo-1"), job.id, None)
    assert claim(world, "worker-1") == undo.id
    job_runner.fail_job(world.uow(), undo.id, "worker-1", NOW, "series expired")

    # Then the failed undo no longer holds the job's one undo
    assert job_of(world, undo.id).state is JobState.FAILED
    assert job_of(world, job.id).undone_by_job_id is None
    assert jobs.undoable(world.uow(), world.ctx(), [job.id]) == {job.id}
    # and a cancelled preview never marked it in the first place
    preview = jobs.undo_job(world.uow(), world.ctx("preview"), job.id, None, dry_run=True)
    jobs.cancel_job(world.uow(), world.ctx(), preview.id)
    assert job_of(world, job.id).undone_by_job_id is None


def test_a_job_cancelled_before_it_revoked_anything_has_nothing_to_undo(world: World) -> None:
    # Given a job cancelled while still queued
    series = world.series()
    world.coupons(series, "OK1")
    job = file_job(world, ["OK1"], series_id=series.id)
    jobs.cancel_job(world.uow(), world.ctx(), job.id)
    assert job_of(world, job.id).state is JobState.CANCELLED

    # When it is undone, Then that is refused (9026) and no job was added
    with pytest.raises(errors.JobStateConflict, match="revoked nothing"):
        jobs.undo_job(world.uow(), world.ctx(), job.id, None)
    assert [j.id for j in jobs.list_jobs(world.uow(), world.ctx(), None, 100)] == [job.id]
    assert job_of(world, job.id).undone_by_job_id is None
    assert jobs.undoable(world.uow(), world.ctx(), [job.id]) == set()


# --- the trail and the outbox ----------------------------------------------------------------


def test_a_job_is_one_trail_entry_under_its_id_and_its_changes_carry_that_id(
    world: World,
) -> None:
    # Given a code revoked by a call, and a dry run
    series = world.series()
    alice = world.customer(ALICE_MOBILE)
    ok1, ok2 = world.coupons(series, "OK1", "OK2", to=alice)
    [av1] = world.coupons(series, "AV1", state=AVAILABLE)
    world.coupons(series, "RED1", state=REDEEMED, to=alice)
    world.coupons(series, "REV1", to=alice)
    revoke(world.uow(), world.ctx("call-1"), RevokeRequest(series_id=series.id, codes=("REV1",)))
    dry = file_job(world, ["OK1"], series_id=series.id, dry_run=True)

    # When a job of four codes runs one line a chunk
    job = file_job(world, ["OK1", "OK2", "AV1", "RED1"], series_id=series.id, reason="leak")
    drain(world, size=1)

    # Then its three revoking chunks are one trail entry under its id, beside the call's
    assert world.store.trail == [(ORG, "call-1", 1), (ORG, job.id, 3)]
    # and each change it made carries its id as the request id, its creator and its reason
    mine = [h for h in world.store.history if h.change.request_id == job.id]
    assert [h.coupon_id for h in mine] == [ok1.id, ok2.id, av1.id]
    assert {(h.change.action, h.change.actor, h.change.reason) for h in mine} == {
        (Action.REVOKE, "acme-ops", "leak")
    }
    # and its end is one org-level event after its coupon events; the dry run writes none
    events = world.uow().history.events(ORG, 0, 100)
    assert [(e.coupon_id, e.action, e.job_state) for e in events if e.request_id == job.id] == [
        (ok1.id, Action.REVOKE, None),
        (ok2.id, Action.REVOKE, None),
        (av1.id, Action.REVOKE, None),
        (None, None, "SUCCEEDED"),
    ]
    ended = [e for e in events if e.coupon_id is None]
    assert [(e.request_id, e.series_id, e.actor) for e in ended] == [
        (job.id, series.id, "acme-ops")
    ]
    assert not [e for e in events if e.request_id == dry.id]
    assert world.uow().history.last_event_id(ORG) == events[-1].id


# --- a whole series ----------------------------------------------------------------------------


def test_a_series_job_revokes_every_unredeemed_coupon_in_id_order(world: World) -> None:
    # Given a series with coupons in every state, and another series
    series, other = world.series(), world.series()
    alice = world.customer(ALICE_MOBILE)
    [a1] = world.coupons(series, "A1", state=AVAILABLE)
    [i1] = world.coupons(series, "I1", to=alice)
    [r1] = world.coupons(series, "R1", state=REDEEMED, to=alice)
    [v1] = world.coupons(series, "V1", state=REVOKED, to=alice)
    [a2] = world.coupons(series, "A2", state=AVAILABLE)
    [elsewhere] = world.coupons(other, "O1")

    # When a job for the whole series is made and run
    request = jobs.JobRequest(series.id, "campaign off", False, CodeCase.UPPER)
    uow = world.uow()
    job = jobs.create_series_job(uow, world.ctx(), request)
    uow.commit()
    drain(world, size=2)

    # Then it took the unredeemed, unrevoked coupons, in id order, and revoked them
    assert (job.source, job.state, job.total) == (JobSource.SERIES, JobState.QUEUED, 3)
    assert report(world, job.id) == [
        ReportRow(1, "A1", "revoked", None, a1.id, None),
        ReportRow(2, "I1", "revoked", None, i1.id, alice.id),
        ReportRow(3, "A2", "revoked", None, a2.id, None),
    ]
    assert job_of(world, job.id).done_count == 3
    assert world.states([a1, i1, r1, v1, a2, elsewhere]) == [
        REVOKED,
        REVOKED,
        REDEEMED,
        REVOKED,
        REVOKED,
        ISSUED,
    ]


def test_a_series_preview_started_takes_the_series_afresh_and_an_ended_series_refuses(
    world: World,
) -> None:
    # Given a preview of a whole series, run, and a coupon added to the series since
    series = world.series()
    [a1] = world.coupons(series, "A1", state=AVAILABLE)
    uow = world.uow()
    request = jobs.JobRequest(series.id, "campaign off", True, CodeCase.UPPER)
    preview = jobs.create_series_job(uow, world.ctx(), request)
    uow.commit()
    drain(world)
    [a2] = world.coupons(series, "A2", state=AVAILABLE)

    # When it is started
    uow = world.uow()
    job = jobs.start_preview(uow, world.ctx(), preview.id)
    uow.commit()
    drain(world)

    # Then the real job took the series as it is now, and the preview changed nothing
    assert (job.source, job.dry_run, job.reason, job.total) == (
        JobSource.SERIES,
        False,
        "campaign off",
        2,
    )
    assert world.states([a1, a2]) == [REVOKED, REVOKED]
    assert job_of(world, preview.id).dry_run
    # And a real job, another org's preview or an undo is no preview to start
    for refused_id, ctx in ((job.id, world.ctx()), (preview.id, world.ctx(org_id=OTHER_ORG))):
        with pytest.raises((errors.JobStateConflict, errors.JobNotFound)):
            jobs.start_preview(world.uow(), ctx, refused_id)
    # And a preview that has not run to its end (queued, or cancelled) has shown nothing yet
    uow = world.uow()
    queued = jobs.create_series_job(uow, world.ctx(), request)
    uow.commit()
    with pytest.raises(errors.JobStateConflict, match="QUEUED"):
        jobs.start_preview(world.uow(), world.ctx(), queued.id)
    uow = world.uow()
    jobs.cancel_job(uow, world.ctx(), queued.id)
    uow.commit()
    with pytest.raises(errors.JobStateConflict, match="CANCELLED"):
        jobs.start_preview(world.uow(), world.ctx(), queued.id)
    # And once the series has ended, a preview of it not started yet starts nothing
    uow = world.uow()
    unstarted = jobs.create_series_job(uow, world.ctx(), request)
    uow.commit()
    drain(world)
    world.store.series[series.id] = replace(series, valid_till=NOW - timedelta(days=1))
    with pytest.raises(errors.CouponError) as ended:
        jobs.start_preview(world.uow(), world.ctx(), unstarted.id)
    assert ended.value.code == 712


def test_a_preview_started_again_by_anyone_answers_its_first_job_even_after_an_undo(
    world: World,
) -> None:
    # Given a finished preview of two codes, started once and that job run and undone
    series = world.series()
    a1, a2 = world.coupons(series, "A1", "A2", state=AVAILABLE)
    preview_id = file_job(world, ["A1", "A2"], series_id=series.id, dry_run=True, reason="x").id
    drain(world)
    uow = world.uow()
    first = jobs.start_preview(uow, world.ctx(), preview_id)
    uow.commit()
    drain(world)
    uow = world.uow()
    jobs.undo_job(uow, world.ctx(), first.id, None)
    uow.commit()
    drain(world)
    assert world.states([a1, a2]) == [AVAILABLE, AVAILABLE]
    jobs_before = len(world.store.jobs)

    # When another person of the org (another API client) starts the same preview
    other = world.ctx(request_id="req-2")
    other = replace(other, actor=replace(other.actor, client_id=8, username="bo@acme.example"))
    uow = world.uow()
    again = jobs.start_preview(uow, other, preview_id)
    uow.commit()
    drain(world)

    # Then it answers the job the preview started, creates no job and revokes nothing again
    assert again.id == first.id
    assert len(world.store.jobs) == jobs_before
    assert world.states([a1, a2]) == [AVAILABLE, AVAILABLE]
    assert job_of(world, preview_id).started_job_id == first.id


# --- reading, and uploads that never became jobs ---------------------------------------------


def test_jobs_are_listed_newest_first_filtered_by_state_and_only_to_their_org(
    world: World,
) -> None:
    # Given a finished job, then a queued one made a minute later
    series = world.series()
    world.coupons(series, "OK1", "OK2")
    first = file_job(world, ["OK1"], series_id=series.id)
    drain(world)
    later = replace(world.ctx(), now=NOW + timedelta(minutes=1))
    second = file_job(world, ["OK2"], series_id=series.id, ctx=later)

    # When the org's jobs are listed, all and by state
    uow = world.uow()
    listed = jobs.list_jobs(uow, world.ctx(), None, 10)
    queued = jobs.list_jobs(uow, world.ctx(), "queued", 10)
    succeeded = jobs.list_jobs(uow, world.ctx(), "SUCCEEDED", 10)

    # Then the newest comes first and the filter keeps one state
    assert [j.id for j in listed] == [second.id, first.id]
    assert [j.id for j in queued] == [second.id]
    assert [j.id for j in succeeded] == [first.id]
    assert [j.id for j in jobs.list_jobs(uow, world.ctx(), None, 1)] == [second.id]
    # and another org sees none of them
    theirs = world.ctx(org_id=OTHER_ORG)
    assert jobs.list_jobs(uow, theirs, None, 10) == []
    with pytest.raises(errors.JobNotFound):
        jobs.get_job(uow, theirs, first.id)


def test_a_malformed_upload_deletes_what_was_staged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file whose fourth code is bad, staged two codes a batch
    monkeypatch.setattr(jobs, "STAGE_BATCH", 2)
    series = world.series()

    def codes() -> Iterator[FileCode]:
        yield from (FileCode(n, f"C{n}") for n in (1, 2, 3))
        raise errors.MalformedCodesFile(4, "not UTF-8")

    # When it is uploaded
    request = jobs.JobRequest(series.id, None, False, CodeCase.UPPER)
    with pytest.raises(errors.MalformedCodesFile):
        jobs.stage_upload(FakeTransactions(world.store), world.ctx(), request, codes())

    # Then no job and no line is left
    assert (world.store.jobs, world.store.job_lines) == ({}, {})


def test_an_upload_still_arriving_keeps_its_staging_lease_from_batch_to_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file staged two codes a batch, each batch arriving 20 minutes after the last
    # (a slow client: longer in all than the staging lease)
    monkeypatch.setattr(jobs, "STAGE_BATCH", 2)
    clock = [NOW]
    monkeypatch.setattr(jobs, "utcnow", lambda: clock[0])
    series = world.series()
    leases: list[datetime] = []

    def codes() -> Iterator[FileCode]:
        for n in range(1, 7):
            yield FileCode(n, f"C{n}")
            if n % 2 == 0:
                [staged] = world.store.jobs.values()
                leases.append(staged.job.lease_until)  # type: ignore[arg-type]
                clock[0] += timedelta(minutes=20)

    # When it is uploaded
    request = jobs.JobRequest(series.id, None, False, CodeCase.UPPER)
    job_id = jobs.stage_upload(FakeTransactions(world.store), world.ctx(), request, codes())

    # Then every batch renewed the lease from its own time, so no cleanup took the upload
    assert leases == [NOW + jobs.STAGING_LEASE + timedelta(minutes=20 * k) for k in range(3)]
    uow = world.uow()
    jobs.clear_abandoned_uploads(uow, clock[0])
    assert jobs.open_upload(uow, world.ctx(), job_id).total == 6


def test_an_abandoned_upload_is_hidden_and_cleared_once_its_staging_lease_ran_out(
    world: World,
) -> None:
    # Given an upload whose process died after staging a line
    series = world.series()
    request = jobs.JobRequest(series.id, None, False, CodeCase.UPPER)
    job_id = jobs.begin_upload(world.uow(), world.ctx(), request)
    uow = world.uow()
    uow.jobs.add_lines(job_id, [(1, "OK1", "ok1")])
    uow.commit()

    # Then nobody sees or runs it
    assert jobs.list_jobs(world.uow(), world.ctx(), None, 10) == []
    with pytest.raises(errors.JobNotFound):
        jobs.get_job(world.uow(), world.ctx(), job_id)
    assert claim(world, "worker-1") is None

    # When the job worker clears abandoned uploads, before and after its lease ran out
    ends = NOW + jobs.STAGING_LEASE
    before = jobs.clear_abandoned_uploads(world.uow(), ends)
    after = jobs.clear_abandoned_uploads(world.uow(), ends + timedelta(seconds=1))

    # Then only the second clears it, lines and all
    assert (before, after) == (0, 1)
    assert (world.store.jobs, world.store.job_lines) == ({}, {})


def test_every_way_of_staging_a_job_says_how_many_lines_it_staged(world: World) -> None:
    # (the store refreshes its planner statistics after a big staging; see `lines_added`)
    series = world.series()
    world.coupons(series, "S1", "S2")
    world.coupons(series, "S3", state=AVAILABLE)

    # When a file job, a series job and an undo job are staged
    from_file = file_job(world, ["S1", "S2", "S1", "NOPE"], series_id=series.id)
    drain(world)
    request = jobs.JobRequest(series.id, None, True, CodeCase.UPPER)
    uow = world.uow()
    jobs.create_series_job(uow, world.ctx(), request)
    uow.commit()
    drain(world)
    uow = world.uow()
    jobs.undo_job(uow, world.ctx("undo-1"), from_file.id, None)
    uow.commit()

    # Then each reported its own line count: 4 file lines, 1 coupon left, 2 revoked to undo
    assert world.store.lines_added == [4, 1, 2]
