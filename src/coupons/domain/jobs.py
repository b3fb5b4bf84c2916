"""Revoke jobs (spec §8): the job's state machine and what each input line came to.

    QUEUED ──start──> RUNNING ──finish──> SUCCEEDED
       │                 │ └────fail────> FAILED
       └──cancel──> CANCELLING <──cancel──┘
                         └──settle──> CANCELLED

A cancel is seen at the next chunk boundary: what the job revoked so far stays revoked. A
QUEUED job that no worker holds is settled at once (nothing is running to see the request).
Undo is allowed only on a finished REVOKE job that revoked for real and was not undone yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from coupons.domain import errors
from coupons.domain.revoke import CodeDecision, FailureReason


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED

    @property
    def is_runnable(self) -> bool:
        """States a worker picks a job up in (CANCELLING: to settle it)."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)


# Every job id starts so; it is the request id of every change the job makes, which no
# client's X-Request-Id may take (the HTTP edge makes a fresh one instead).
JOB_ID_PREFIX = "job_"
FINISHED = frozenset({JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED})


class JobKind(StrEnum):
    REVOKE = "REVOKE"
    REINSTATE = "REINSTATE"


class JobSource(StrEnum):
    """Where a job's lines came from."""

    FILE = "FILE"  # an uploaded codes file: lines carry codes
    SERIES = "SERIES"  # every unredeemed coupon of a series: lines carry coupon ids
    UNDO = "UNDO"  # the coupons another job revoked: lines carry coupon ids


class LineOutcome(StrEnum):
    """The report's `outcome` column."""

    REVOKED = "revoked"
    WOULD_REVOKE = "would_revoke"
    REDEEMED = "redeemed"
    ALREADY_REVOKED = "already_revoked"
    NOT_FOUND = "not_found"
    NOT_THIS_CUSTOMERS = "not_this_customers"
    DUPLICATE_IN_FILE = "duplicate_in_file"
    # A code the single-code revoke refuses as a whole (108 generic code, 712 expired series,
    # 811 GENERIC_REDEEMABLE): in a job it is that line's outcome, not the job's.
    REFUSED = "refused"
    # REINSTATE (undo) jobs.
    REINSTATED = "reinstated"
    WOULD_REINSTATE = "would_reinstate"
    CHANGED_SINCE = "changed_since"

    @property
    def is_done(self) -> bool:
        """Whether the line's coupon was changed (or would be, in a dry run)."""
        return self in DONE

    @property
    def is_failure(self) -> bool:
        """Counted in `failedCount`; a duplicate line is neither done nor failed."""
        return not self.is_done and self is not LineOutcome.DUPLICATE_IN_FILE


DONE = frozenset(
    {
        LineOutcome.REVOKED,
        LineOutcome.WOULD_REVOKE,
        LineOutcome.REINSTATED,
        LineOutcome.WOULD_REINSTATE,
    }
)


@dataclass(frozen=True, slots=True)
class LineResult:
    """What one input line came to: the report row, less the code."""

    line_no: int
    outcome: LineOutcome
    error_code: int | None = None
    coupon_id: int | None = None
    issued_to: int | None = None
    # The code's further coupons (id, holder), after `coupon_id`: without a series a code
    # may be in several of the org's series, and a single-code revoke takes them all.
    more: tuple[tuple[int, int | None], ...] = ()


def line_of_decision(line_no: int, decision: CodeDecision, *, dry_run: bool) -> LineResult:
    """Map the revoke use case's decision for a code onto the report's vocabulary."""
    first = decision.coupons[0] if decision.coupons else None
    coupon_id = first.id if first else None
    issued_to = first.customer_id if first else None
    more = tuple((c.id, c.customer_id) for c in decision.coupons[1:])
    reason = decision.reason
    if reason is None:
        outcome = LineOutcome.WOULD_REVOKE if dry_run else LineOutcome.REVOKED
        return LineResult(line_no, outcome, None, coupon_id, issued_to, more)
    mapped = {
        FailureReason.REDEEMED: LineOutcome.REDEEMED,
        FailureReason.NOT_THIS_CUSTOMERS: LineOutcome.NOT_THIS_CUSTOMERS,
        FailureReason.NOT_FOUND_IN_ORG: LineOutcome.NOT_FOUND,
        FailureReason.NOT_REVOKED: LineOutcome.CHANGED_SINCE,
        FailureReason.CHANGED_SINCE: LineOutcome.CHANGED_SINCE,
    }.get(reason)
    # 682: found but not revocable means it was revoked already.
    already = LineOutcome.ALREADY_REVOKED if first else LineOutcome.NOT_FOUND
    return LineResult(line_no, mapped or already, reason.code, coupon_id, issued_to, more)


@dataclass(slots=True)
class Tally:
    """Counters a chunk adds to its job, in the chunk's own transaction."""

    processed: int = 0
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    failed_by_code: dict[int, int] = field(default_factory=dict)
    failed_by_outcome: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, lines: Iterable[LineResult]) -> Tally:
        tally = cls()
        for line in lines:
            tally.processed += 1
            if line.outcome.is_done:
                tally.done += 1
            elif line.outcome is LineOutcome.DUPLICATE_IN_FILE:
                tally.duplicates += 1
            else:
                tally.failed += 1
                code = line.error_code or 0
                tally.failed_by_code[code] = tally.failed_by_code.get(code, 0) + 1
                outcome = line.outcome.value
                tally.failed_by_outcome[outcome] = tally.failed_by_outcome.get(outcome, 0) + 1
        return tally


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    org_id: int
    kind: JobKind
    source: JobSource
    state: JobState
    dry_run: bool
    series_id: int | None
    reason: str | None
    code_case: str
    client_id: int
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    cursor: int
    processed: int
    done_count: int
    failed_count: int
    duplicate_count: int
    failed_by_code: dict[int, int]
    undo_of_job_id: str | None
    undone_by_job_id: str | None
    error: str | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    # For a preview: the real job it was started as. A preview starts one job for the whole
    # org, whoever presses its button and however often.
    started_job_id: str | None = None
    # The failed lines by the report's outcome (`failed_by_code` blurs two into 682).
    failed_by_outcome: dict[str, int] = field(default_factory=dict)

    def is_held(self, now: datetime) -> bool:
        """Whether a worker holds the job's lease right now."""
        return (
            self.claimed_by is not None and self.lease_until is not None and self.lease_until > now
        )

    def check_can_cancel(self) -> None:
        if self.state.is_finished:
            raise errors.JobStateConflict(f"job is {self.state.value}; it cannot be cancelled")

    def undo_refusal(self) -> str | None:
        """Why this job cannot be undone now (9026), or None when it can: the one rule the
        undo call enforces and the console asks before offering an Undo button."""
        if not self.state.is_finished:
            return f"job is {self.state.value}; undo is possible once it has finished"
        if self.kind is not JobKind.REVOKE:
            return "only a REVOKE job can be undone"
        if self.dry_run:
            return "a dry run changed nothing; there is nothing to undo"
        if self.done_count == 0:
            return "the job revoked nothing; there is nothing to undo"
        if self.undone_by_job_id is not None:
            return f"job was already undone by {self.undone_by_job_id}"
        return None

    def check_can_undo(self) -> None:
        refusal = self.undo_refusal()
        if refusal is not None:
            raise errors.JobStateConflict(refusal)

    def check_can_start(self) -> None:
        """Only a preview (a dry-run revoke job) that ran to its end is started as the real
        thing: a queued, running or cancelled one has not shown what the job would do."""
        if self.kind is not JobKind.REVOKE or not self.dry_run:
            raise errors.JobStateConflict("only a preview (a dry-run revoke job) can be started")
        if self.state is not JobState.SUCCEEDED:
            raise errors.JobStateConflict(
                f"the preview is {self.state.value}: only a finished preview can be started"
            )


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    org_id: int
    kind: JobKind
    source: JobSource
    dry_run: bool
    series_id: int | None
    reason: str | None
    code_case: str
    client_id: int
    created_by: str
    created_at: datetime
    undo_of_job_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingLine:
    """A line not yet done: its code, and the coupon it names when the job was made of ids."""

    line_no: int
    code: str
    norm: str
    coupon_id: int | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReportRow:
    line_no: int
    code: str
    outcome: str
    error_code: int | None
    coupon_id: int | None
    issued_to: int | None
    more: tuple[tuple[int, int | None], ...] = ()  # as `LineResult.more`
    # The code as its (first) coupon stores it: what `AS_IT_IS` writes, as a revoke call does.
    stored: str | None = field(default=None, compare=False)

    @property
    def written(self) -> str:
        """The code to write in a case: the coupon's own when the line found one, else the
        line as it was sent (trimmed)."""
        return self.code if self.stored is None else self.stored

    @property
    def coupon_cells(self) -> tuple[str, str]:
        """The couponId and issuedToUserId cells: every coupon of the code, space-separated
        and in the same order, `none` for one issued to nobody, when there is more than one."""
        if not self.more:
            return (
                "" if self.coupon_id is None else str(self.coupon_id),
                "" if self.issued_to is None else str(self.issued_to),
            )
        pairs = [(self.coupon_id, self.issued_to), *self.more]
        return (
            " ".join(str(i) for i, _ in pairs),
            " ".join("none" if holder is None else str(holder) for _, holder in pairs),
        )


def cancelled(state: JobState, *, held: bool) -> JobState:
    """The state after a cancel request; `held` says whether a worker holds the job now."""
    if state.is_finished:
        raise errors.JobStateConflict(f"job is {state.value}; it cannot be cancelled")
    if state is JobState.QUEUED and not held:
        return JobState.CANCELLED  # nothing is running to see the request: settle it now
    return JobState.CANCELLING


def started(state: JobState) -> JobState:
    """A worker takes a job up: QUEUED starts; a resumed or cancelling job stays as it is."""
    if state is JobState.QUEUED:
        return JobState.RUNNING
    if state in (JobState.RUNNING, JobState.CANCELLING):
        return state
    raise errors.JobStateConflict(f"job is {state.value}; it cannot run")


def after_chunk(state: JobState, *, lines_left: bool) -> JobState:
    """The state at a chunk boundary: a cancel settles, the last chunk finishes the job."""
    if state is JobState.CANCELLING:
        return JobState.CANCELLED
    if state is JobState.RUNNING and not lines_left:
        return JobState.SUCCEEDED
    if state is JobState.RUNNING:
        return state
    raise errors.JobStateConflict(f"job is {state.value}; it cannot run")


def failed(state: JobState) -> JobState:
    if state.is_finished:
        raise errors.JobStateConflict(f"job is {state.value}")
    return JobState.FAILED
