"""Revoke jobs and their lines: set-based, a fixed number of statements per chunk."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import aliased

from coupons.adapters.driver_sql import as_sqlalchemy_error
from coupons.adapters.pg_arrays import int_array, text_array
from coupons.adapters.repos.history import SqlHistoryRepository
from coupons.adapters.repos.rows import REVOCABLE_STATES
from coupons.adapters.stall_watch import WATCH
from coupons.adapters.tables import (
    coupon_history,
    coupons,
    revoke_job_lines,
    revoke_jobs,
)
from coupons.domain.jobs import (
    Job,
    JobKind,
    JobSource,
    JobState,
    LineResult,
    NewJob,
    PendingLine,
    ReportRow,
    Tally,
)
from coupons.domain.model import Action

STAGING = "STAGING"

# Staged lines from which a job refreshes the lines table's statistics (`lines_added`).
ANALYZE_AFTER_LINES = 10_000

_LINE_UPDATE_PG = text(
    "UPDATE revoke_job_lines AS l SET outcome = v.outcome, error_code = v.error_code, "
    "coupon_id = v.coupon_id, issued_to = v.issued_to, more_coupons = v.more_coupons "
    "FROM unnest(CAST(:line_nos AS bigint[]), CAST(:outcomes AS text[]), "
    "CAST(:error_codes AS integer[]), CAST(:coupon_ids AS bigint[]), "
    "CAST(:issued_tos AS bigint[]), CAST(:more AS text[])) "
    "AS v(line_no, outcome, error_code, coupon_id, issued_to, more_coupons) "
    "WHERE l.job_id = :job_id AND l.line_no = v.line_no"
)


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        org_id=row.org_id,
        kind=JobKind(row.kind),
        source=JobSource(row.source),
        state=JobState(row.state),
        dry_run=bool(row.dry_run),
        series_id=row.series_id,
        reason=row.reason,
        code_case=row.code_case,
        client_id=row.client_id,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        total=row.total,
        cursor=int(row.cursor),
        processed=row.processed,
        done_count=row.done_count,
        failed_count=row.failed_count,
        duplicate_count=row.duplicate_count,
        failed_by_code={int(k): v for k, v in json.loads(row.failed_by_code).items()},
        failed_by_outcome=json.loads(row.failed_by_outcome),
        undo_of_job_id=row.undo_of_job_id,
        undone_by_job_id=row.undone_by_job_id,
        started_job_id=row.started_job_id,
        error=row.error,
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
    )


# The bound of the one statement that stages a whole series (or an undo) as a job's lines.
STAGING_TIMEOUT = "10min"


class SqlJobRepository:
    """Jobs over one open connection inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def _postgres(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    # --- creating a job ----------------------------------------------------------------------

    def add(self, new: NewJob, *, staging_until: datetime | None) -> None:
        """A new job: STAGING (invisible, never run) while its lines are still arriving."""
        self.conn.execute(
            insert(revoke_jobs).values(
                id=new.id,
                org_id=new.org_id,
                kind=new.kind.value,
                source=new.source.value,
                state=STAGING if staging_until else JobState.QUEUED.value,
                dry_run=new.dry_run,
                series_id=new.series_id,
                reason=new.reason,
                code_case=new.code_case,
                client_id=new.client_id,
                created_by=new.created_by,
                created_at=new.created_at,
                total=0,
                cursor=0,
                processed=0,
                done_count=0,
                failed_count=0,
                duplicate_count=0,
                failed_by_code="{}",
                failed_by_outcome="{}",
                undo_of_job_id=new.undo_of_job_id,
                lease_until=staging_until,
            )
        )

    def add_lines(self, job_id: str, lines: Sequence[tuple[int, str, str]]) -> None:
        """Stage (line number, code, matching key) rows of an upload, at driver speed: a
        million-line upload spends its time here (COPY on PostgreSQL, executemany on SQLite)."""
        if not lines:
            return
        if self._postgres:
            sql = "COPY revoke_job_lines (job_id, line_no, code, norm) FROM STDIN"
            cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                with cursor.copy(sql) as copy:
                    for line_no, code, norm in lines:
                        copy.write_row((job_id, line_no, code, norm))
            except self.conn.dialect.loaded_dbapi.Error as error:
                # Past SQLAlchemy, so wrapped here: a statement timeout raw was a 500, not
                # the 9023 (or the retry) any other statement's is.
                raise as_sqlalchemy_error(self.conn, sql, (), error, cursor) from error
            return
        self.conn.exec_driver_sql(
            "INSERT INTO revoke_job_lines (job_id, line_no, code, norm) VALUES (?, ?, ?, ?)",
            [(job_id, n, c, k) for n, c, k in lines],
        )

    def keep_staging(self, job_id: str, until: datetime) -> None:
        self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.state == STAGING)
            .values(lease_until=until)
        )

    def stage_series(self, job_id: str, org_id: int, series_id: int) -> int:
        """Every unredeemed coupon of the series, as lines in id order (one statement)."""
        c = coupons.c
        line_no = func.row_number().over(order_by=c.id)
        source = select(literal(job_id), line_no, c.code, c.code_norm, c.id).where(
            c.org_id == org_id, c.series_id == series_id, c.state.in_(REVOCABLE_STATES)
        )
        return self._stage(job_id, source)

    def stage_undo(self, job_id: str, org_id: int, undone_job_id: str) -> int:
        """The coupons another job revoked, as lines in the order it revoked them."""
        h = coupon_history.c
        line_no = func.row_number().over(order_by=h.id)
        source = (
            select(literal(job_id), line_no, coupons.c.code, coupons.c.code_norm, h.coupon_id)
            .join(coupons, coupons.c.id == h.coupon_id)
            .where(
                h.org_id == org_id,
                h.request_id == undone_job_id,
                h.action == Action.REVOKE.value,
            )
        )
        return self._stage(job_id, source)

    def stage_copy(self, job_id: str, from_job_id: str) -> int:
        """A preview's uploaded lines, for the job that does it for real (one statement)."""
        c = revoke_job_lines.c
        source = select(literal(job_id), c.line_no, c.code, c.norm, literal(None)).where(
            c.job_id == from_job_id
        )
        return self._stage(job_id, source)

    def _stage(self, job_id: str, source: Any) -> int:
        c = revoke_job_lines.c
        # One statement over a whole series: on millions of coupons it may run longer than
        # the stall watch's limit without a byte back, and that is no outage. Nor longer
        # than the role's `statement_timeout` (docs/deployment.md: 10 s), which would refuse
        # such a job on every try: it gets its own bound, for this statement alone.
        with WATCH.patient(self.conn.connection.driver_connection):
            if self._postgres:
                self.conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{STAGING_TIMEOUT}'")
            self.conn.execute(
                insert(revoke_job_lines).from_select(
                    [c.job_id, c.line_no, c.code, c.norm, c.coupon_id], source
                )
            )
            if self._postgres:
                self.conn.exec_driver_sql("SET LOCAL statement_timeout TO DEFAULT")  # the role's
        # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT.
        return self.staged_count(job_id)

    def staged_count(self, job_id: str) -> int:
        count = self.conn.scalar(select(func.count()).where(revoke_job_lines.c.job_id == job_id))
        return int(count or 0)

    def open(self, job_id: str, total: int) -> bool:
        """A staged job becomes QUEUED with its line count."""
        result = self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.state == STAGING)
            .values(state=JobState.QUEUED.value, total=total, lease_until=None)
        )
        return result.rowcount == 1

    def set_total(self, job_id: str, total: int) -> None:
        self.conn.execute(update(revoke_jobs).where(revoke_jobs.c.id == job_id).values(total=total))

    def delete_staged(self, job_id: str) -> None:
        """Remove an upload that failed or was replayed: it never existed."""
        still = select(revoke_jobs.c.id).where(
            revoke_jobs.c.id == job_id, revoke_jobs.c.state == STAGING
        )
        self.conn.execute(delete(revoke_job_lines).where(revoke_job_lines.c.job_id.in_(still)))
        self.conn.execute(
            delete(revoke_jobs).where(revoke_jobs.c.id == job_id, revoke_jobs.c.state == STAGING)
        )

    def abandoned_staging(self, now: datetime, limit: int) -> list[str]:
        """Uploads whose process died mid-way (their staging lease ran out)."""
        rows = self.conn.scalars(
            select(revoke_jobs.c.id)
            .where(revoke_jobs.c.state == STAGING, revoke_jobs.c.lease_until < now)
            .limit(limit)
        )
        return [str(r) for r in rows]

    # --- reading -------------------------------------------------------------------------------

    def get(self, org_id: int, job_id: str, *, lock: bool = False) -> Job | None:
        query = select(revoke_jobs).where(
            revoke_jobs.c.id == job_id,
            revoke_jobs.c.org_id == org_id,
            revoke_jobs.c.state != STAGING,
        )
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _job(row)

    def many(self, org_id: int, job_ids: Sequence[str]) -> list[Job]:
        if not job_ids:
            return []
        rows = self.conn.execute(
            select(revoke_jobs).where(
                revoke_jobs.c.id.in_(list(job_ids)),
                revoke_jobs.c.org_id == org_id,
                revoke_jobs.c.state != STAGING,
            )
        )
        return [_job(r) for r in rows]

    def of_org(
        self,
        org_id: int,
        state: JobState | None,
        limit: int,
        *,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        """Newest first, from just below `before` (a job's creation time and id)."""
        query = select(revoke_jobs).where(
            revoke_jobs.c.org_id == org_id, revoke_jobs.c.state != STAGING
        )
        if state is not None:
            query = query.where(revoke_jobs.c.state == state.value)
        if before is not None:
            query = query.where(
                tuple_(revoke_jobs.c.created_at, revoke_jobs.c.id)
                < tuple_(
                    bindparam("before_at", before[0], type_=revoke_jobs.c.created_at.type),
                    bindparam("before_id", before[1], type_=revoke_jobs.c.id.type),
                )
            )
        rows = self.conn.execute(
            query.order_by(revoke_jobs.c.created_at.desc(), revoke_jobs.c.id.desc()).limit(limit)
        )
        return [_job(r) for r in rows]

    def report(self, job_id: str, after: int, limit: int) -> list[ReportRow]:
        """Done lines after line `after`, in input order."""
        c = revoke_job_lines.c
        rows = self.conn.execute(
            select(
                c.line_no,
                c.code,
                c.outcome,
                c.error_code,
                c.coupon_id,
                c.issued_to,
                c.more_coupons,
                coupons.c.code,
            )
            .select_from(revoke_job_lines.outerjoin(coupons, coupons.c.id == c.coupon_id))
            .where(c.job_id == job_id, c.line_no > after, c.outcome.is_not(None))
            .order_by(c.line_no)
            .limit(limit)
        )
        return [
            ReportRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], _more_of(r[6]), stored=r[7])
            for r in rows
        ]

    # --- running -------------------------------------------------------------------------------

    def claim(self, owner: str, now: datetime, lease_until: datetime) -> str | None:
        """Lease the oldest runnable job nobody holds; PostgreSQL workers skip locked rows."""
        free = or_(revoke_jobs.c.lease_until.is_(None), revoke_jobs.c.lease_until < now)
        runnable = [s.value for s in JobState if s.is_runnable]
        job_id = self.conn.scalar(
            select(revoke_jobs.c.id)
            .where(revoke_jobs.c.state.in_(runnable), free)
            .order_by(revoke_jobs.c.created_at, revoke_jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job_id is None:
            return None
        result = self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, free)
            .values(
                claimed_by=owner,
                lease_until=lease_until,
                # A job starts when a worker first takes it, not when its first chunk ends:
                # a one-chunk job showed `startedAt == finishedAt`, an empty one none at all.
                started_at=func.coalesce(revoke_jobs.c.started_at, now),
            )
        )
        return str(job_id) if result.rowcount == 1 else None

    def held(self, job_id: str, owner: str, *, lock: bool) -> Job | None:
        """The job, if `owner` still holds its lease (locked for the chunk's transaction)."""
        query = select(revoke_jobs).where(
            revoke_jobs.c.id == job_id, revoke_jobs.c.claimed_by == owner
        )
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _job(row)

    def release(self, job_id: str, owner: str) -> None:
        self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.claimed_by == owner)
            .values(claimed_by=None, lease_until=None)
        )

    def lines_added(self, count: int) -> None:
        """PostgreSQL: ANALYZE the lines table after a big staging. Its statistics otherwise
        lag until autovacuum gets to them, and `pending` planned with stale ones read every
        remaining line of a 1M-line job per chunk (a bitmap scan and a sort, 330 ms) instead
        of the next 501 in index order. Sampling costs a fraction of a second, once a job."""
        if self._postgres and count >= ANALYZE_AFTER_LINES:
            self.conn.exec_driver_sql("ANALYZE revoke_job_lines")

    def pending(
        self, job_id: str, after: int, limit: int, *, duplicates: bool
    ) -> list[PendingLine]:
        """The next lines after the checkpoint; with `duplicates`, whether an earlier line of
        the file had the same code (answered by the (job, norm, line) index)."""
        line = revoke_job_lines.alias("line")
        earlier: Any = literal(False)
        if duplicates:
            prior = aliased(revoke_job_lines, name="prior")
            earlier = exists().where(
                prior.c.job_id == line.c.job_id,
                prior.c.norm == line.c.norm,
                prior.c.line_no < line.c.line_no,
            )
        rows = self.conn.execute(
            select(line.c.line_no, line.c.code, line.c.norm, line.c.coupon_id, earlier)
            .where(line.c.job_id == job_id, line.c.line_no > after)
            .order_by(line.c.line_no)
            .limit(limit)
        )
        return [PendingLine(int(r[0]), r[1], r[2], r[3], bool(r[4])) for r in rows]

    def finish_lines(self, job_id: str, results: Sequence[LineResult]) -> None:
        """Write a chunk's outcomes: one statement (PostgreSQL) or one batch (SQLite)."""
        if not results:
            return
        if self._postgres:
            self.conn.execute(
                _LINE_UPDATE_PG,
                {
                    "job_id": job_id,
                    # One array literal each (see adapters/pg_arrays), not 500 adapted items.
                    "line_nos": int_array([r.line_no for r in results]),
                    "outcomes": text_array([r.outcome.value for r in results]),
                    "error_codes": int_array([r.error_code for r in results]),
                    "coupon_ids": int_array([r.coupon_id for r in results]),
                    "issued_tos": int_array([r.issued_to for r in results]),
                    "more": text_array([_more_text(r.more) for r in results]),
                },
            )
            return
        # Plain tuples through the driver: SQLAlchemy's per-row parameter processing was most
        # of this step's time.
        self.conn.exec_driver_sql(
            "UPDATE revoke_job_lines SET outcome = ?, error_code = ?, coupon_id = ?, "
            "issued_to = ?, more_coupons = ? WHERE job_id = ? AND line_no = ?",
            [
                (
                    r.outcome.value, r.error_code, r.coupon_id, r.issued_to,
                    _more_text(r.more), job_id, r.line_no,
                )
                for r in results
            ],
        )  # fmt: skip

    def advance(
        self,
        job: Job,
        *,
        state: JobState,
        cursor: int,
        tally: Tally,
        now: datetime,
        error: str | None = None,
    ) -> None:
        """Move the checkpoint and counters (the caller holds the job's row and lease)."""
        by_code = Counter(job.failed_by_code) + Counter(tally.failed_by_code)
        by_outcome = Counter(job.failed_by_outcome) + Counter(tally.failed_by_outcome)
        values: dict[str, Any] = {
            "state": state.value,
            "cursor": cursor,
            "processed": revoke_jobs.c.processed + tally.processed,
            "done_count": revoke_jobs.c.done_count + tally.done,
            "failed_count": revoke_jobs.c.failed_count + tally.failed,
            "duplicate_count": revoke_jobs.c.duplicate_count + tally.duplicates,
            "failed_by_code": json.dumps({str(k): v for k, v in sorted(by_code.items())}),
            "failed_by_outcome": json.dumps(dict(sorted(by_outcome.items()))),
        }
        if state.is_finished:
            values.update(finished_at=now, claimed_by=None, lease_until=None, error=error)
        self.conn.execute(update(revoke_jobs).where(revoke_jobs.c.id == job.id).values(**values))

    def extend(self, job_id: str, owner: str, lease_until: datetime) -> None:
        self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.claimed_by == owner)
            .values(lease_until=lease_until)
        )

    def set_state(self, job_id: str, state: JobState, now: datetime) -> None:
        values: dict[str, Any] = {"state": state.value}
        if state.is_finished:
            values.update(finished_at=now, claimed_by=None, lease_until=None)
        self.conn.execute(update(revoke_jobs).where(revoke_jobs.c.id == job_id).values(**values))

    def mark_undone(self, job_id: str, by_job_id: str) -> None:
        self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.undone_by_job_id.is_(None))
            .values(undone_by_job_id=by_job_id)
        )

    def mark_started(self, preview_id: str, job_id: str) -> bool:
        result = self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == preview_id, revoke_jobs.c.started_job_id.is_(None))
            .values(started_job_id=job_id)
        )
        return result.rowcount == 1

    def release_undone(self, job_id: str, by_job_id: str) -> None:
        self.conn.execute(
            update(revoke_jobs)
            .where(revoke_jobs.c.id == job_id, revoke_jobs.c.undone_by_job_id == by_job_id)
            .values(undone_by_job_id=None)
        )

    def add_finished_event(self, job: Job, state: JobState, now: datetime) -> None:
        """The `revoke_job.finished` event, written through the outbox's own repository."""
        SqlHistoryRepository(self.conn).write_job_finished(
            job.org_id,
            job.id,
            state.value,
            at=now,
            actor=job.created_by,
            reason=job.reason,
            series_id=job.series_id,
        )


def _more_text(more: Sequence[tuple[int, int | None]]) -> str | None:
    return json.dumps([list(pair) for pair in more]) if more else None


def _more_of(text: str | None) -> tuple[tuple[int, int | None], ...]:
    return (
        tuple((int(i), None if h is None else int(h)) for i, h in json.loads(text)) if text else ()
    )
