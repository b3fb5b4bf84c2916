"""A revoke's writes — the guarded UPDATE, its history (the outbox) and its trail row — as
one statement on PostgreSQL.

Every revoke call and job chunk ends with these three writes. Sent apart they are three round
trips, each with its own driver and SQLAlchemy work, which on a 50-code revoke cost more of
the service's CPU than the writes cost PostgreSQL. As one data-modifying CTE they are one
round trip; the semantics stay those of the three statements in a row:

- `upd` is the guarded UPDATE: only coupons still AVAILABLE or ISSUED change (the caller holds
  their row locks, so all of them do; the count is checked). RETURNING gives each coupon as
  the UPDATE left it: its new version and the state it was revoked from.
- `trail` adds the call to the revocations trail (one row per call), counting what `upd`
  changed; a job's later chunks add to the job's own row. A request id that already names
  another call's or job's row writes no trail row, and then no history either: the statement
  reports 0 and the caller refuses the batch (`errors.RequestIdTaken`).
- the history insert takes the same fence as `SqlHistoryRepository` before it allocates event
  ids, and copies each coupon from `upd` (a CTE's snapshot does not see the UPDATE, so the
  insert cannot read `coupons` as the separate statement did), in the batch's order.

SQLite has no data-modifying CTEs: there the unit of work makes the three repository calls
in turn (`SqlUnitOfWork.apply_revoke`).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Connection, text

from coupons.adapters.driver_sql import DriverStatement
from coupons.adapters.pg_arrays import int_array
from coupons.adapters.repos.history import HISTORY_FENCE, PENDING_CHANGES
from coupons.domain import errors
from coupons.domain.model import Action
from coupons.domain.records import RevokeBatch

REVOKE_PG_SQL = (
    "WITH upd AS ("
    "UPDATE coupons SET state = 'REVOKED', revoked_from = coupons.state, "
    "updated_at = CAST(:at AS timestamptz), version = coupons.version + 1 "
    "WHERE coupons.id = ANY(CAST(:ids AS bigint[])) AND coupons.state IN ('AVAILABLE', 'ISSUED') "
    "RETURNING coupons.id, coupons.series_id, coupons.code, coupons.customer_id, "
    "coupons.version, coupons.revoked_from), "
    "trail AS ("
    "INSERT INTO revocations (org_id, request_id, at, actor, reason, revoked_count, "
    "reinstated_count, job_id) "
    "SELECT CAST(:org_id AS bigint), CAST(:request_id AS text), CAST(:at AS timestamptz), "
    "CAST(:actor AS text), CAST(:reason AS text), count(*), 0, CAST(:job_id AS text) FROM upd "
    "HAVING count(*) > 0 "
    "ON CONFLICT (org_id, request_id) DO UPDATE "
    "SET revoked_count = revocations.revoked_count + excluded.revoked_count "
    "WHERE revocations.job_id IS NOT NULL AND revocations.job_id = excluded.job_id "
    "RETURNING 1), " + HISTORY_FENCE.removeprefix("WITH ") + "e AS MATERIALIZED ("
    "SELECT u.coupon_id, u.ord, nextval('coupon_history_id_seq'::regclass) AS id "
    "FROM fence, unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS u(coupon_id, ord)) "
    "INSERT INTO coupon_history (id, org_id, coupon_id, action, from_state, to_state, at, "
    "actor, request_id, reason, series_id, code, customer_id, coupon_version) "
    "SELECT e.id, CAST(:org_id AS bigint), upd.id, 'REVOKE', upd.revoked_from, 'REVOKED', "
    "CAST(:at AS timestamptz), CAST(:actor AS text), CAST(:request_id AS text), "
    "CAST(:reason AS text), upd.series_id, upd.code, upd.customer_id, upd.version "
    "FROM e JOIN upd ON upd.id = e.coupon_id WHERE EXISTS (SELECT 1 FROM trail) ORDER BY e.ord"
)
_REVOKE_PG = DriverStatement(text(REVOKE_PG_SQL))


def write_revoke_pg(conn: Connection, batch: RevokeBatch) -> int:
    """Revoke the batch's coupons, record their history and the trail row in one statement;
    how many coupons changed (all of them, under the caller's locks; the caller checks)."""
    changed = _REVOKE_PG.rowcount(
        conn,
        {
            "ids": int_array(batch.coupon_ids),
            "org_id": batch.org_id,
            "at": batch.at,
            "actor": batch.actor,
            "request_id": batch.request_id,
            "reason": batch.reason,
            "job_id": batch.job_id,
        },
    )
    if not changed:
        # The coupons are locked, so the UPDATE changed each: the trail row was refused.
        raise errors.RequestIdTaken()
    pending: Counter[str] = conn.info.setdefault(PENDING_CHANGES, Counter())
    pending[Action.REVOKE.value] += changed
    return int(changed)
