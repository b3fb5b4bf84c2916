"""The three revoke workloads: what the HTTP side sends and what the raw side runs instead.

The raw side is the database limit of one request: the same repository calls, so the same SQL
statements, transactions and retries the service issues for that request (the client lookup
of Basic authentication, then one write transaction), through the same engine setup and
driver, with no HTTP, framework, validation or rendering. `capture_statements` records the
statements either side sends, so a test can prove they stay identical as the service changes.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

from bench.load import Layout, pick_codes, pick_customers
from coupons.adapters.sql_uow import Database
from coupons.domain.codes import normalize
from coupons.domain.model import Action, Coupon, CouponState, StateChange
from coupons.services.common import utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.revoke import MAX_CUSTOMER_COUPONS

WORKLOADS = ("codes50", "code1", "customer")
REVOKE_PATH = "/v2/coupon/revoke"
REASON = "benchmark"
CODES_PER_REQUEST = 50
REVOCABLE = (CouponState.AVAILABLE, CouponState.ISSUED)


@dataclass(frozen=True, slots=True)
class Job:
    """One revoke request, as a JSON body for HTTP and as arguments for the raw side."""

    series_id: int | None = None
    codes: tuple[str, ...] = ()
    external_id: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": REASON}
        if self.series_id is not None:
            body["couponSeriesId"] = self.series_id
        if self.codes:
            body["couponCodes"] = list(self.codes)
        if self.external_id is not None:
            body["customer"] = {"externalId": self.external_id}
        return body


def make_jobs(
    layout: Layout, workload: str, count: int, rng: random.Random
) -> tuple[list[Job], list[Job]]:
    """`count` jobs for each side (HTTP, raw); the two lists never share a coupon."""
    if workload == "codes50":
        picked = pick_codes(layout, 2 * count * CODES_PER_REQUEST, rng)
        by_series: dict[int, list[str]] = {}
        for series_id, code in picked:
            by_series.setdefault(series_id, []).append(code)
        jobs = [
            Job(series_id=series_id, codes=tuple(codes[i : i + CODES_PER_REQUEST]))
            for series_id, codes in by_series.items()
            for i in range(0, len(codes) - CODES_PER_REQUEST + 1, CODES_PER_REQUEST)
        ]
    elif workload == "code1":
        jobs = [Job(codes=(code,)) for _, code in pick_codes(layout, 2 * count, rng)]
    elif workload == "customer":
        jobs = [Job(external_id=ext) for ext, _ in pick_customers(layout, 2 * count, rng)]
    else:
        raise ValueError(f"unknown workload {workload!r}")
    rng.shuffle(jobs)
    return jobs[0::2], jobs[1::2]


# --- the raw side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the raw side acts as: the benchmark's API client."""

    org_id: int
    username: str


def run_raw(db: Database, caller: Caller, job: Job, *, commit: bool = True) -> int:
    """Issue the statements the service issues for `job`; returns coupons revoked.

    Without `commit` it rolls back, as the service's dry run does: used to warm up."""
    # Basic authentication reads the client row on every request (its own read transaction).
    db.run(lambda uow: uow.clients.client_by_username(caller.username), write=False)
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
            uow.coupons.mark_revoked([c.id for c in done], now)
            uow.history.write(caller.org_id, _history(done, caller, request_id, now))
        if commit:
            uow.commit()
        return len(done)

    return db.run(work, retry_integrity=True)


def _history(
    done: Sequence[Coupon], caller: Caller, request_id: str, now: Any
) -> list[tuple[int, StateChange]]:
    return [
        (
            c.id,
            StateChange(
                action=Action.REVOKE,
                from_state=c.state,
                to_state=CouponState.REVOKED,
                at=now,
                actor=caller.username,
                request_id=request_id,
                reason=REASON,
            ),
        )
        for c in done
    ]


# --- statement capture ------------------------------------------------------------------------

_PARAM = re.compile(r"\b(\w+?)(_\d+)+\b")


@contextmanager
def capture_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through `engine` while the block runs, in order."""
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def statement_shapes(statements: Sequence[str]) -> list[str]:
    """Statements with numbered bind names made generic, so runs compare equal."""
    return [_PARAM.sub(r"\1_N", s) for s in statements]
