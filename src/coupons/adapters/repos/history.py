"""Coupon history, which is also the outbox of events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    exists,
    func,
    insert,
    select,
    text,
)

from coupons.adapters.driver_sql import DriverStatement
from coupons.adapters.pg_arrays import int_array, text_array
from coupons.adapters.sqlite_arrays import json_array
from coupons.adapters.tables import (
    coupon_history,
    revoke_jobs,
)
from coupons.domain.model import (
    Action,
    CouponState,
    StateChange,
)
from coupons.domain.records import (
    EventRecord,
    RevokeBatch,
)

_ACTIONS = {a.value: a for a in Action}
_STATES = {s.value: s for s in CouponState}
# The action of an org-level history row: a revoke job ended (its final state in `to_state`).
JOB_FINISHED = "JOB_FINISHED"
# Key in a connection's `info`: history actions written in its open transaction, counted
# into metrics on commit (see entrypoints/http/metrics.py).
PENDING_CHANGES = "coupons_pending_changes"

# PostgreSQL: one statement for the whole batch, with no lock anyone waits on. Event ids come
# from a sequence before COMMIT, so transactions may commit them out of order. Each writer
# first takes a *shared* advisory lock keyed just below the ids it is about to get (`fence`:
# the sequence's last value, minus one), then allocates them (`e`, whose rows need `fence`'s
# row first). The lock is visible in pg_locks until COMMIT, so a reader can tell the smallest
# id any unfinished writer may still commit (`_FINAL_BOUND`). Shared locks never conflict.
HISTORY_FENCE = (
    "WITH fence AS MATERIALIZED ("
    "SELECT pg_advisory_xact_lock_shared(last_value - 1) AS held FROM coupon_history_id_seq), "
)
# The changes of one use case share their action, time, actor, request id and reason: those
# go once, as scalars; only the coupon ids and states are arrays (see `_uniform_runs`).
_INSERT_HISTORY_PG = DriverStatement(
    text(
        HISTORY_FENCE + "e AS MATERIALIZED ("
        "SELECT u.*, nextval('coupon_history_id_seq'::regclass) AS id "
        "FROM fence, unnest(CAST(:coupon_ids AS bigint[]), CAST(:from_states AS text[]), "
        "CAST(:to_states AS text[])) WITH ORDINALITY AS u(coupon_id, from_state, to_state, ord)) "
        "INSERT INTO coupon_history (id, org_id, coupon_id, action, from_state, to_state, at, "
        "actor, request_id, reason, series_id, code, customer_id, coupon_version) "
        "SELECT e.id, :org_id, c.id, CAST(:action AS text), e.from_state, e.to_state, "
        "CAST(:at AS timestamptz), CAST(:actor AS text), CAST(:request_id AS text), "
        "CAST(:reason AS text), c.series_id, c.code, c.customer_id, c.version "
        "FROM e JOIN coupons c ON c.id = e.coupon_id ORDER BY e.ord"
    )
)

# The same fence for an org-level event (a revoke job finished): one row, no coupon.
_INSERT_ORG_EVENT_PG = text(
    HISTORY_FENCE
    + "e AS MATERIALIZED (SELECT nextval('coupon_history_id_seq'::regclass) AS id FROM fence) "
    "INSERT INTO coupon_history (id, org_id, coupon_id, action, from_state, to_state, at, "
    "actor, request_id, reason, series_id) "
    "SELECT e.id, :org_id, NULL, :action, NULL, :to_state, :at, :actor, :request_id, "
    ":reason, :series_id FROM e"
)

# PostgreSQL: the highest event id a cursor reader may hand out now. First the highest id
# allocated so far (`seq`), then (the subquery needs `seq`'s row) the smallest fence of any
# writer still running in this database; ids above either may still be joined by lower ones.
_FINAL_BOUND = text(
    "WITH seq AS MATERIALIZED (SELECT last_value FROM coupon_history_id_seq) "
    "SELECT least(seq.last_value, (SELECT min((l.classid::bigint << 32) | l.objid::bigint) "
    "FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND seq.last_value IS NOT NULL)) FROM seq"
)

# SQLite: the same one statement per run, the arrays as one JSON text of [coupon id, from
# state, to state] triples (`adapters.sqlite_arrays`), inserted in the order given.
_INSERT_HISTORY_SQLITE = DriverStatement(
    text(
        "INSERT INTO coupon_history (org_id, coupon_id, action, from_state, to_state, at, actor, "
        "request_id, reason, series_id, code, customer_id, coupon_version) "
        "SELECT :org_id, c.id, :action, json_extract(e.value, '$[1]'), "
        "json_extract(e.value, '$[2]'), :at, :actor, :request_id, :reason, c.series_id, c.code, "
        "c.customer_id, c.version FROM json_each(:changes) AS e "
        "JOIN coupons AS c ON c.id = json_extract(e.value, '$[0]') ORDER BY e.key"
    ).bindparams(bindparam("at", type_=coupon_history.c.at.type))
)


def _uniform_runs(
    changes: Sequence[tuple[int, StateChange]],
) -> Iterator[tuple[tuple[Action, datetime, str, str, str | None], list[tuple[int, StateChange]]]]:
    """Consecutive changes that share action, time, actor, request id and reason (a use
    case's whole batch is one run), in order."""

    def shared(pair: tuple[int, StateChange]) -> tuple[Action, datetime, str, str, str | None]:
        e = pair[1]
        return (e.action, e.at, e.actor, e.request_id, e.reason)

    for key, run in groupby(changes, key=shared):
        yield key, list(run)


# An event's columns, in EventRecord's field order: rows are read by position.
_EVENT_COLUMNS = tuple(
    getattr(coupon_history.c, name)
    for name in (
        "id", "org_id", "coupon_id", "action", "from_state", "to_state", "at", "actor",
        "request_id", "reason", "series_id", "code", "customer_id", "coupon_version",
    )
)  # fmt: skip


def _coupon_event(r: Any) -> EventRecord:
    """A coupon's history row as an event. By position with dict look-ups: a delivery reads
    up to 1,000 rows a batch, and attribute access on rows and Enum() calls were most of its
    CPU time."""
    return EventRecord(
        r[0], r[1], r[2], _ACTIONS[r[3]], _STATES[r[4]] if r[4] else None, _STATES[r[5]],
        r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
    )  # fmt: skip


class SqlHistoryRepository:
    """History and events over one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def write(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
        """Record (coupon id, change) pairs now, in one statement; each row is also an event.

        Each event copies the version its change gave the coupon (the change bumped it under
        the coupon's row lock), so one coupon's events carry 1, 2, 3, ... in id order.
        """
        if changes:
            self._insert_history(org_id, changes)

    def _insert_history(self, org_id: int, changes: Sequence[tuple[int, StateChange]]) -> None:
        # The event copies the coupon as it is at commit (after the change), read by the
        # insert itself rather than by a separate query. Two changes of one coupon in one
        # batch would copy the same version.
        if len({cid for cid, _ in changes}) != len(changes):
            raise RuntimeError("one coupon changed twice in one history write")
        for (action, at, actor, request_id, reason), run in _uniform_runs(changes):
            self._insert_run(
                org_id,
                [(cid, e.from_state, e.to_state) for cid, e in run],
                action=action,
                at=at,
                actor=actor,
                request_id=request_id,
                reason=reason,
            )

    def write_revoke(self, batch: RevokeBatch) -> None:
        """`write` for a revoke batch (SQLite's revoke path; PostgreSQL writes a revoke's
        history inside its one statement, `revoke_batch`): one run straight from the batch,
        with no change object per coupon, as the SQLite revoke holds the database's write
        lock while it writes this. The batch itself holds each coupon once."""
        revoked = CouponState.REVOKED
        self._insert_run(
            batch.org_id,
            [
                (cid, before, revoked)
                for cid, before in zip(batch.coupon_ids, batch.from_states, strict=True)
            ],
            action=Action.REVOKE,
            at=batch.at,
            actor=batch.actor,
            request_id=batch.request_id,
            reason=batch.reason,
        )

    def _insert_run(
        self,
        org_id: int,
        changes: Sequence[tuple[int, CouponState | None, CouponState]],
        *,
        action: Action,
        at: datetime,
        actor: str,
        request_id: str,
        reason: str | None,
    ) -> None:
        """One statement for changes that share action, time, actor, request id and reason:
        those go once, as scalars; (coupon id, from, to) go as arrays. The enums are
        StrEnums: their members are the strings themselves, in both array forms.

        PostgreSQL: no org-wide lock, see _INSERT_HISTORY_PG and `events`. SQLite writers are
        serialized by BEGIN IMMEDIATE, so there ids commit in order."""
        if not changes:
            return
        values: dict[str, Any] = {
            "org_id": org_id,
            "action": action.value,
            "at": at,
            "actor": actor,
            "request_id": request_id,
            "reason": reason,
        }
        if self.conn.dialect.name == "postgresql":
            values["coupon_ids"] = int_array([cid for cid, _, _ in changes])
            values["from_states"] = text_array([before for _, before, _ in changes])
            values["to_states"] = text_array([after for _, _, after in changes])
            insert = _INSERT_HISTORY_PG
        else:
            values["changes"] = json_array(changes)
            insert = _INSERT_HISTORY_SQLITE
        written = insert.rowcount(self.conn, values)
        # A coupon id that matches no row would silently lose its history and its event.
        if written not in (-1, len(changes)):
            raise RuntimeError("history rows written do not match the changes recorded")
        pending = self.conn.info.setdefault(PENDING_CHANGES, Counter())
        pending[action.value] += len(changes)

    def write_job_finished(
        self,
        org_id: int,
        job_id: str,
        state: str,
        *,
        at: datetime,
        actor: str,
        reason: str | None,
        series_id: int | None,
    ) -> None:
        """The `revoke_job.finished` event: an org-level row of the outbox, ordered for cursor
        readers exactly as coupon events are (the same fence on PostgreSQL)."""
        values = {
            "org_id": org_id,
            "action": JOB_FINISHED,
            "to_state": state,
            "at": at,
            "actor": actor,
            "request_id": job_id,
            "reason": reason,
            "series_id": series_id,
        }
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(_INSERT_ORG_EVENT_PG, values)
        else:
            self.conn.execute(insert(coupon_history).values(coupon_id=None, **values))

    def history(self, coupon_id: int) -> list[StateChange]:
        rows = self.conn.execute(
            select(coupon_history)
            .where(coupon_history.c.coupon_id == coupon_id)
            .order_by(coupon_history.c.id)
        )
        return [
            StateChange(
                action=Action(r.action),
                from_state=CouponState(r.from_state) if r.from_state else None,
                to_state=CouponState(r.to_state),
                at=r.at,
                actor=r.actor,
                request_id=r.request_id,
                reason=r.reason,
            )
            for r in rows
        ]

    def revoked_by_request(
        self, org_id: int, request_id: str, limit: int | None = None
    ) -> list[int]:
        """Coupons a revoke request changed, in id order, at most `limit` (whether each is
        still revoked by it is `still_revoked_by`'s to say, under the coupons' locks)."""
        h = coupon_history.c
        rows = self.conn.execute(
            select(h.coupon_id)
            .where(
                h.org_id == org_id,
                h.request_id == request_id,
                h.action == Action.REVOKE.value,
            )
            .distinct()
            .order_by(h.coupon_id)
            .limit(limit)
        )
        return [int(cid) for cid in rows.scalars()]

    def still_revoked_by(self, request_id: str, coupon_ids: Sequence[int]) -> set[int]:
        """Of these coupons, those whose latest history entry is the revoke of `request_id`."""
        if not coupon_ids:
            return set()
        h = coupon_history.c
        later = coupon_history.alias("later")
        rows = self.conn.scalars(
            select(h.coupon_id).where(
                h.coupon_id.in_(coupon_ids),
                h.request_id == request_id,
                h.action == Action.REVOKE.value,
                ~exists().where(later.c.coupon_id == h.coupon_id, later.c.id > h.id),
            )
        )
        return {int(r) for r in rows}

    def events(self, org_id: int, after: int, limit: int) -> list[EventRecord]:
        """The org's events with ids above `after`, oldest first, as far as they are final.

        On PostgreSQL a page ends before any id that a still-running writer could yet be
        joined below (`_FINAL_BOUND`); those events follow once it has finished, so a reader
        that passes `nextAfter` back never skips one. The bound is read in its own statement
        first: under READ COMMITTED the events query then gets a later snapshot, in which
        every writer the bound did not wait for has committed (or rolled back).
        """
        h = coupon_history.c
        query = select(*_EVENT_COLUMNS).where(h.org_id == org_id, h.id > after)
        if self.conn.dialect.name == "postgresql":
            query = query.where(h.id <= self.conn.scalar(_FINAL_BOUND))
        rows = self.conn.execute(query.order_by(h.id).limit(limit)).all()
        # Which kind of job ended (a revoke, or an undo's reinstate) is the job's: read for
        # the page's few job events only, so a page of coupon events costs nothing more.
        job_ids = [r[8] for r in rows if r[3] == JOB_FINISHED]
        kinds: dict[str, str] = {}
        if job_ids:
            j = revoke_jobs.c
            kinds = {
                str(i): str(k)
                for i, k in self.conn.execute(select(j.id, j.kind).where(j.id.in_(job_ids)))
            }
        return [
            _coupon_event(r)
            if r[3] != JOB_FINISHED
            else EventRecord(
                r[0],
                r[1],
                None,
                None,
                None,
                None,
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                None,
                None,
                0,
                job_state=r[5],
                job_kind=kinds.get(r[8]),
            )
            for r in rows
        ]

    def history_range(
        self,
        org_id: int,
        *,
        since: datetime | None,
        until: datetime | None,
        after_id: int | None,
        limit: int,
    ) -> list[EventRecord]:
        """The org's coupon history entries with `since <= at < until`, in id order from just
        above `after_id`, on the (org, id) index. A time range reads through the org's
        earlier entries once, on its first page; later pages start at their cursor."""
        h = coupon_history.c
        query = select(*_EVENT_COLUMNS).where(h.org_id == org_id, h.coupon_id.is_not(None))
        if after_id is not None:
            query = query.where(h.id > after_id)
        if since is not None:
            query = query.where(h.at >= since)
        if until is not None:
            query = query.where(h.at < until)
        rows = self.conn.execute(query.order_by(h.id).limit(limit))
        return [_coupon_event(r) for r in rows]

    def last_event_id(self, org_id: int) -> int:
        return final_event_id(self.conn, org_id)


def final_event_id(conn: Connection, org_id: int) -> int:
    """The org's highest event id that no still-running writer can be joined below: where a
    new reader (a webhook subscription) may start without missing an event that commits
    later. On PostgreSQL the highest id may belong to a writer that committed before one
    holding lower ids; starting above it skipped that writer's events for good."""
    h = coupon_history.c
    query = select(func.max(h.id)).where(h.org_id == org_id)
    if conn.dialect.name == "postgresql":
        query = query.where(h.id <= conn.scalar(_FINAL_BOUND))
    value = conn.scalar(query)
    return 0 if value is None else int(value)
