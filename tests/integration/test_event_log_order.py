"""Event ids become visible in order: a reader that has seen id N never sees a lower id later.

This is what lets a consumer of `GET /v2/events?after=N` (and the webhook worker) keep only
the last id it saw. Writers race on both backends while a reader polls the log. On PostgreSQL
writers take no lock that others wait on and may commit ids out of order; the log holds back
any id that a still-running writer could yet be joined below (docs/events.md).
"""

from __future__ import annotations

import functools
import threading
import uuid

import pytest

from coupons.adapters.sql_uow import SqlUnitOfWork
from coupons.domain.codes import normalize
from coupons.domain.model import Action, CouponState, StateChange
from coupons.services import revoke, runner
from coupons.services.auth import actor_of
from coupons.services.common import Context, utcnow
from tests.conftest import Backend
from tests.e2e.conftest import Api

WRITERS = 6
REVOKES_EACH = 25


def test_a_polling_reader_never_sees_an_event_id_below_one_it_already_saw(
    api: Api, backend: Backend
) -> None:
    # Given a series of codes and the admin client's identity
    codes = [f"ORD{i:04}" for i in range(WRITERS * REVOKES_EACH)]
    series_id = api.series(codes=codes)
    client = backend.db.run(lambda uow: uow.clients.client_by_username("acme-admin"), write=False)
    assert client is not None
    actor = actor_of(client)
    start = threading.Barrier(WRITERS + 1)
    writing = threading.Event()
    writing.set()

    def write(mine: list[str]) -> None:
        start.wait()
        for code in mine:
            ctx = Context(actor=actor, request_id=uuid.uuid4().hex, now=utcnow())
            request = revoke.RevokeRequest(series_id=series_id, codes=(code,))
            runner.execute(
                backend.db, ctx, functools.partial(revoke.revoke, ctx=ctx, request=request),
                lambda outcome: b"",
            )  # fmt: skip

    snapshots: list[set[int]] = []

    def read() -> None:
        start.wait()
        while writing.is_set():
            events = backend.db.run(
                lambda uow: uow.history.events(actor.org_id, 0, 10_000), write=False
            )
            snapshots.append({e.id for e in events})

    # When writers revoke one code a request, side by side, while a reader polls the log
    writers = [threading.Thread(target=write, args=(codes[i::WRITERS],)) for i in range(WRITERS)]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writing.clear()
    reader.join(timeout=30)
    final = {e.id for e in backend.db.run(lambda uow: uow.history.events(actor.org_id, 0, 10_000))}

    # Then every event exists, and no snapshot ever lacked an id below its highest one
    assert len(final) == len(codes)
    assert len(snapshots) > 5
    gaps = [
        sorted(i for i in final if i < max(seen) and i not in seen)[:5]
        for seen in snapshots
        if seen
    ]
    assert [g for g in gaps if g] == []


def _revoke(uow: SqlUnitOfWork, org_id: int, coupon_id: int) -> None:
    """Revoke one coupon and write its event, leaving the transaction open."""
    assert uow.coupons.mark_revoked([coupon_id], utcnow()) == 1
    change = StateChange(
        Action.REVOKE, CouponState.AVAILABLE, CouponState.REVOKED, utcnow(), "t", "r", None
    )
    uow.history.write(org_id, [(coupon_id, change)])


def _two_coupons(api: Api, backend: Backend, prefix: str) -> tuple[int, int, int]:
    """The org's id and two coupons of a new series, lower id first (PostgreSQL only: on
    SQLite one writer runs at a time, so ids commit in order)."""
    if backend.name == "sqlite":
        pytest.skip("SQLite runs one writer at a time: ids commit in order there")
    codes = [f"{prefix}1", f"{prefix}2"]
    series_id = api.series(codes=codes)
    org_id = backend.db.run(lambda uow: uow.clients.org_id_by_name("acme"), write=False)
    assert org_id is not None
    found = backend.db.run(
        lambda uow: uow.coupons.coupons_by_codes(
            org_id, [normalize(c) for c in codes], series_id=series_id, lock=False
        ),
        write=False,
    )
    first, second = sorted(c.id for c in found)
    return org_id, first, second


def test_an_event_committed_after_a_higher_one_is_never_skipped_by_a_cursor_reader(
    api: Api, backend: Backend
) -> None:
    # given two coupons of one org
    org_id, first_coupon, second_coupon = _two_coupons(api, backend, "LATE")

    def log_after(after: int) -> list[int]:
        found = backend.db.run(lambda uow: uow.history.events(org_id, after, 100), write=False)
        return [e.id for e in found]

    # when one transaction writes its event (the lower id) and stays open, while a second
    # writes the next id and commits first
    with backend.db.unit_of_work() as slow:
        _revoke(slow, org_id, first_coupon)
        with backend.db.unit_of_work() as fast:
            _revoke(fast, org_id, second_coupon)
            fast.commit()
        # then a reader is not handed the committed higher id yet
        seen_meanwhile = log_after(0)
        slow.commit()

    # and once the slow one commits, the reader's cursor gets both, in id order
    cursor = seen_meanwhile[-1] if seen_meanwhile else 0
    later = log_after(cursor)
    assert seen_meanwhile == []
    assert len(later) == 2 and later == sorted(later)


def test_a_webhook_created_while_a_writer_holds_lower_ids_still_gets_that_writers_events(
    api: Api, backend: Backend
) -> None:
    # given two coupons of one org
    org_id, first_coupon, second_coupon = _two_coupons(api, backend, "SUB")

    # when a subscription is created while one writer holds the lower event id open and a
    # second has committed the higher one (it started above the higher one, and the lower
    # one, committed after it, was never delivered)
    with backend.db.unit_of_work() as slow:
        _revoke(slow, org_id, first_coupon)
        with backend.db.unit_of_work() as fast:
            _revoke(fast, org_id, second_coupon)
            fast.commit()
        created = api.ok(api.post("/v2/webhooks", json={"url": "http://127.0.0.1:9/hook"}))
        slow.commit()

    # then what the subscription has still to send holds both events
    cursor = created["lastEventId"]
    pending = backend.db.run(lambda uow: uow.history.events(org_id, cursor, 100), write=False)
    assert sorted(e.coupon_id or 0 for e in pending) == [first_coupon, second_coupon]
