"""Runs one use case in one transaction, with idempotency keys and dry runs.

The runner owns the transaction around a use case: it replays a stored response for a known
`Idempotency-Key` (9006 when the request differs), runs the use case, renders the response,
stores it under the key in the same transaction, and commits, or rolls back for a dry run.

What a response looks like is the entrypoint's business: it passes `render` (result to body
bytes) and the status code, and the runner stores and replays both as opaque values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from coupons.domain import errors
from coupons.services.common import Context
from coupons.services.ports import Transactions, UnitOfWork

T = TypeVar("T")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Stored answers are deleted this long after their window ends (hosts' clocks may differ).
FORGET_AFTER = IDEMPOTENCY_WINDOW + timedelta(hours=1)
FORGET_BATCH = 20_000  # a minute's worth of 28 million writes a day


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Rendered:
    status_code: int
    body: bytes
    replayed: bool = False
    request_id: str | None = None  # a replay's: the id of the request that did the work


def execute(
    db: Transactions,
    ctx: Context,
    use_case: Callable[[UnitOfWork], T],
    render: Callable[[T], bytes],
    *,
    idempotency: Idempotency | None = None,
    dry_run: bool = False,
    write: bool = True,
    status_code: int = 200,
    replay: Callable[[T], bytes] | None = None,
) -> Rendered:
    """Run `use_case` once, atomically; a `CouponError` rolls everything back.

    The answer is rendered after the transaction ends, unless it must be stored under an
    idempotency key with the work: on SQLite the transaction holds the database's one write
    lock, and every writer waits while it is held.

    `replay`, if given, renders what a replay under the key answers instead of the first
    answer's bytes: for what may be shown only once (a webhook's signing secret)."""

    def stored_answer(uow: UnitOfWork) -> Rendered | None:
        """The answer stored under the key, if a request with it has committed."""
        if idempotency is None:
            return None
        stored = uow.idempotency.stored_response(
            ctx.actor.client_id, idempotency.key, ctx.now - IDEMPOTENCY_WINDOW
        )
        if stored is None:
            return None
        if stored.fingerprint != idempotency.fingerprint:
            raise errors.IdempotencyKeyReused()
        return Rendered(
            stored.status_code, stored.body, replayed=True, request_id=stored.request_id
        )

    def attempt(uow: UnitOfWork) -> Rendered | _Done[T]:
        replayed = stored_answer(uow)
        if replayed is not None:
            return replayed
        result = use_case(uow)
        if dry_run or not write:
            uow.rollback()
            return _Done(result)
        if idempotency is None:
            uow.commit()
            return _Done(result)
        body = render(result)
        uow.idempotency.store_response(
            client_id=ctx.actor.client_id,
            org_id=ctx.org_id,
            key=idempotency.key,
            fingerprint=idempotency.fingerprint,
            status_code=status_code,
            body=body if replay is None else replay(result),
            request_id=ctx.request_id,
            now=ctx.now,
            expired_before=ctx.now - IDEMPOTENCY_WINDOW,
        )
        uow.commit()
        return Rendered(status_code, body)

    # A dry run writes for real (under the same locks) and then rolls back.
    try:
        done = db.run(attempt, write=write, retry_integrity=True)
    except errors.DatabaseUnavailable:
        raise  # the store is away: a retry with the key will find out what happened
    except errors.CouponError:
        # A request with the same key may have committed while this one waited for its
        # locks (two retries racing, on PostgreSQL): what it did is why this one is refused
        # (711: the coupon it redeemed is redeemed now). The caller gets the first answer,
        # as a replay, not a refusal of its own request. Looked up afresh: the refused
        # transaction may not read any more.
        replayed = None if idempotency is None else db.run(stored_answer, write=False)
        if replayed is None:
            raise
        return replayed
    if isinstance(done, Rendered):
        return done
    return Rendered(status_code, render(done.result))


@dataclass(frozen=True, slots=True)
class _Done(Generic[T]):
    """A use case's result, its transaction ended, still to be rendered."""

    result: T


def forget_old_answers(uow: UnitOfWork, now: datetime) -> int:
    """Delete up to `FORGET_BATCH` answers whose key's window has passed, oldest first (a
    worker runs this every minute); how many.

    Without it every write's stored answer stayed for good: a client sending a fresh key
    with each write (as the shipped client does) added up to 2 KB a write, for ever."""
    forgotten = uow.idempotency.delete_expired(now - FORGET_AFTER, FORGET_BATCH)
    uow.commit()
    return forgotten
