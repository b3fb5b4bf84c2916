"""Every call the benchmark makes into the service's repositories, in one place.

The raw side is the database limit of one request: the same repository calls, so the same SQL
statements, transactions and retries the service issues for that request (one write
transaction; a busy client's row comes from the authentication cache), through the same
engine setup and driver, with no HTTP, framework, validation or rendering. When the
repositories are renamed or split, this module is the only one in `bench/` that changes.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.workloads import REASON, Caller, Job
from coupons.adapters.sql_uow import Database
from coupons.domain.codes import normalize
from coupons.domain.model import CouponState
from coupons.domain.records import RevokeBatch
from coupons.services.common import utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.revoke import MAX_CUSTOMER_COUPONS

REVOCABLE = (CouponState.AVAILABLE, CouponState.ISSUED)


def run_raw(db: Database, caller: Caller, job: Job, *, commit: bool = True) -> int:
    """Issue the statements the service issues for `job`; returns coupons revoked.

    Without `commit` it rolls back, as the service's dry run does: used to warm up."""
    # No client lookup: the service reads a busy client's row about once a second per worker.
    request_id = uuid.uuid4().hex

    def work(uow: UnitOfWork) -> int:
        now = utcnow()
        if job.external_id is not None:
            found = uow.customers.find_customers(caller.org_id, external_id=job.external_id)
            customer_id = found[0][0].id
            matches = uow.coupons.coupons_of_customer(
                caller.org_id,
                customer_id,
                states=(CouponState.ISSUED,),
                unexpired_at=now,
                revocable_only=True,
                limit=MAX_CUSTOMER_COUPONS + 1,
                lock=True,
            )
        else:
            norms = [normalize(c) for c in job.codes]
            if job.series_id is not None:
                uow.series.series(caller.org_id, job.series_id)
            matches = uow.coupons.coupons_by_codes(
                caller.org_id, norms, series_id=job.series_id, lock=True
            )
            if job.series_id is None:
                uow.series.series_many(caller.org_id, {c.series_id for c in matches})
                uow.series.generic_series_by_codes(caller.org_id, norms)
        done = [c for c in matches if c.state in REVOCABLE]
        if done:
            batch = RevokeBatch(
                org_id=caller.org_id,
                coupon_ids=tuple(c.id for c in done),
                from_states=tuple(c.state for c in done),
                at=now,
                actor=caller.username,
                request_id=request_id,
                reason=REASON,
            )
            uow.apply_revoke(batch)
        if commit:
            uow.commit()
        return len(done)

    return db.run(work, retry_integrity=True)


def webhooks_left(url: str, org_id: int) -> tuple[list[Any], list[Any]]:
    """(deliveries due now, subscriptions of the org): both empty once a benchmark cleaned up."""
    db = Database.from_url(url)
    try:
        due = db.run(lambda uow: uow.webhooks.due_webhooks(utcnow(), 10), write=False)
        subscribed = db.run(lambda uow: uow.webhooks.webhooks_of_org(org_id), write=False)
    finally:
        db.dispose()
    return list(due), list(subscribed)
