"""The revoke job's state machine and the mapping of revoke decisions onto report lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.domain import errors
from coupons.domain import jobs as j
from coupons.domain.jobs import JobKind, JobSource, JobState, LineOutcome, LineResult, Tally
from coupons.domain.model import Coupon, CouponState
from coupons.domain.revoke import decide_revoke

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def job(state: JobState, **changes: object) -> j.Job:
    values: dict[str, object] = {
        "id": "job_x",
        "org_id": 1,
        "kind": JobKind.REVOKE,
        "source": JobSource.FILE,
        "state": state,
        "dry_run": False,
        "series_id": 1,
        "reason": None,
        "code_case": "UPPER",
        "client_id": 1,
        "created_by": "ops",
        "created_at": NOW,
        "started_at": None,
        "finished_at": None,
        "total": 0,
        "cursor": 0,
        "processed": 0,
        "done_count": 3,
        "failed_count": 0,
        "duplicate_count": 0,
        "failed_by_code": {},
        "undo_of_job_id": None,
        "undone_by_job_id": None,
    }
    values.update(changes)
    return j.Job(**values)  # type: ignore[arg-type]


# --- state machine ---------------------------------------------------------------------------


def test_a_queued_job_starts_running_and_finishes_after_its_last_chunk() -> None:
    state = j.started(JobState.QUEUED)
    assert state is JobState.RUNNING
    assert j.after_chunk(state, lines_left=True) is JobState.RUNNING
    assert j.after_chunk(state, lines_left=False) is JobState.SUCCEEDED


def test_cancel_of_a_running_job_settles_at_the_next_chunk_boundary() -> None:
    state = j.cancelled(JobState.RUNNING, held=True)
    assert state is JobState.CANCELLING
    assert j.after_chunk(state, lines_left=True) is JobState.CANCELLED


def test_cancel_of_a_queued_job_nobody_holds_settles_at_once() -> None:
    assert j.cancelled(JobState.QUEUED, held=False) is JobState.CANCELLED
    assert j.cancelled(JobState.QUEUED, held=True) is JobState.CANCELLING


@pytest.mark.parametrize("state", sorted(j.FINISHED))
def test_cancel_or_restart_of_a_finished_job_is_9026(state: JobState) -> None:
    with pytest.raises(errors.JobStateConflict) as refused:
        j.cancelled(state, held=False)
    assert (refused.value.code, refused.value.http_status) == (9026, 409)
    with pytest.raises(errors.JobStateConflict):
        job(state).check_can_cancel()
    with pytest.raises(errors.JobStateConflict):
        j.started(state)
    with pytest.raises(errors.JobStateConflict):
        j.failed(state)


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING])
def test_undo_of_an_unfinished_job_is_9026(state: JobState) -> None:
    with pytest.raises(errors.JobStateConflict, match="once it has finished"):
        job(state).check_can_undo()


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"dry_run": True}, "dry run"),
        ({"kind": JobKind.REINSTATE}, "only a REVOKE job"),
        ({"undone_by_job_id": "job_y"}, "already undone by job_y"),
        ({"done_count": 0}, "revoked nothing"),
    ],
)
def test_undo_of_a_dry_run_an_undo_or_an_undone_job_is_9026(
    changes: dict[str, object], why: str
) -> None:
    with pytest.raises(errors.JobStateConflict, match=why):
        job(JobState.SUCCEEDED, **changes).check_can_undo()


@pytest.mark.parametrize("state", sorted(j.FINISHED))
def test_a_finished_revoke_job_can_be_undone(state: JobState) -> None:
    job(state).check_can_undo()


@given(st.lists(st.sampled_from(["start", "cancel", "chunk", "last", "fail"]), max_size=12))
def test_no_sequence_of_events_leaves_a_finished_state(events: list[str]) -> None:
    state = JobState.QUEUED
    for event in events:
        before = state
        try:
            if event == "start":
                state = j.started(state)
            elif event == "cancel":
                state = j.cancelled(state, held=True)
            elif event == "chunk":
                state = j.after_chunk(j.started(state), lines_left=True)
            elif event == "last":
                state = j.after_chunk(j.started(state), lines_left=False)
            else:
                state = j.failed(state)
        except errors.JobStateConflict:
            assert before.is_finished or before is JobState.QUEUED
            continue
        assert not before.is_finished, f"{before} moved to {state} on {event}"


# --- outcomes --------------------------------------------------------------------------------


def coupon(id: int, code: str, state: CouponState, customer: int | None = 9) -> Coupon:
    return Coupon(id=id, series_id=1, code=code, state=state, customer_id=customer)


def test_each_revoke_decision_maps_to_its_report_outcome() -> None:
    # given coupons in every state, and a code with no coupon
    found = [
        coupon(1, "OK1", CouponState.ISSUED),
        coupon(2, "RED", CouponState.REDEEMED),
        coupon(3, "REV", CouponState.REVOKED),
        coupon(4, "AV", CouponState.AVAILABLE, None),
    ]
    # when the revoke rules decide (series given)
    outcome = decide_revoke(
        ["ok1", "RED", "rev", "nope", "av"], found, customer_id=None, series_given=True
    )
    lines = [j.line_of_decision(n, d, dry_run=False) for n, d in enumerate(outcome.decisions, 1)]
    # then each line says what happened, with the coupon when there is one
    assert lines == [
        LineResult(1, LineOutcome.REVOKED, None, 1, 9),
        LineResult(2, LineOutcome.REDEEMED, 405, 2, 9),
        LineResult(3, LineOutcome.ALREADY_REVOKED, 682, 3, 9),
        LineResult(4, LineOutcome.NOT_FOUND, 682, None, None),
        LineResult(5, LineOutcome.REVOKED, None, 4, None),
    ]
    dry = j.line_of_decision(1, outcome.decisions[0], dry_run=True)
    assert dry.outcome is LineOutcome.WOULD_REVOKE


def test_a_code_unknown_in_the_org_is_not_found_with_404() -> None:
    outcome = decide_revoke(["zz"], [], customer_id=None, series_given=False)
    assert j.line_of_decision(1, outcome.decisions[0], dry_run=False) == LineResult(
        1, LineOutcome.NOT_FOUND, 404
    )


def test_another_customers_coupon_is_not_this_customers_703() -> None:
    outcome = decide_revoke(
        ["a"], [coupon(1, "A", CouponState.ISSUED, 5)], customer_id=6, series_given=True
    )
    line = j.line_of_decision(1, outcome.decisions[0], dry_run=False)
    assert (line.outcome, line.error_code) == (LineOutcome.NOT_THIS_CUSTOMERS, 703)


def test_the_tally_counts_done_failed_and_duplicates_apart() -> None:
    tally = Tally.of(
        [
            LineResult(1, LineOutcome.REVOKED),
            LineResult(2, LineOutcome.REDEEMED, 405),
            LineResult(3, LineOutcome.NOT_FOUND, 682),
            LineResult(4, LineOutcome.ALREADY_REVOKED, 682),
            LineResult(5, LineOutcome.DUPLICATE_IN_FILE),
        ]
    )
    assert (tally.processed, tally.done, tally.failed, tally.duplicates) == (5, 1, 3, 1)
    assert tally.failed_by_code == {405: 1, 682: 2}
