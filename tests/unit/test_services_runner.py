"""The transaction runner on fakes: idempotent replays, 9006, dry runs and rollback on error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coupons.domain import errors
from coupons.domain.model import CouponState
from coupons.domain.revoke import Outcome
from coupons.services.ports import UnitOfWork
from coupons.services.revoke import RevokeRequest, revoke
from coupons.services.runner import Idempotency, execute
from tests.unit.fakes import FakeTransactions
from tests.unit.world import World

UseCase = Callable[[UnitOfWork], Outcome]


def revoke_code(world: World, code: str, series_id: int) -> tuple[list[Outcome], UseCase]:
    """A revoke of one code as a use case, and the list of its runs."""
    runs: list[Outcome] = []

    def use_case(uow: UnitOfWork) -> Outcome:
        outcome = revoke(uow, world.ctx(), RevokeRequest(series_id=series_id, codes=(code,)))
        runs.append(outcome)
        return outcome

    return runs, use_case


def test_a_repeated_idempotency_key_replays_the_stored_bytes_without_running_again() -> None:
    # Given a code, and a revoke of it under a key
    world = World()
    series = world.series()
    [coupon] = world.coupons(series, "K1")
    db = FakeTransactions(world.store)
    runs, use_case = revoke_code(world, "K1", series.id)
    key = Idempotency(key="k-1", fingerprint="f")

    # When the same call is made twice
    first = execute(db, world.ctx(), use_case, lambda o: b"done", idempotency=key)
    again = execute(db, world.ctx(), use_case, lambda o: b"other", idempotency=key)

    # Then the second is the first's status and bytes, replayed, and the use case ran once
    assert (first.status_code, first.body, first.replayed) == (200, b"done", False)
    assert (again.status_code, again.body, again.replayed) == (200, b"done", True)
    assert len(runs) == 1
    assert world.coupon(coupon.id).state is CouponState.REVOKED


def test_the_key_with_another_request_is_9006_and_changes_nothing() -> None:
    world = World()
    series = world.series()
    world.coupons(series, "K1", "K2")
    db = FakeTransactions(world.store)
    _, first = revoke_code(world, "K1", series.id)
    runs, second = revoke_code(world, "K2", series.id)
    execute(db, world.ctx(), first, lambda o: b"", idempotency=Idempotency("k", "one"))

    with pytest.raises(errors.IdempotencyKeyReused):
        execute(db, world.ctx(), second, lambda o: b"", idempotency=Idempotency("k", "two"))

    assert runs == []
    assert [row.coupon.state for row in world.store.coupons.values()] == [
        CouponState.REVOKED,
        CouponState.ISSUED,
    ]


def test_a_dry_run_answers_as_the_call_would_and_keeps_nothing() -> None:
    world = World()
    series = world.series()
    [coupon] = world.coupons(series, "D1")
    db = FakeTransactions(world.store)
    runs, use_case = revoke_code(world, "D1", series.id)

    answer = execute(db, world.ctx(), use_case, lambda o: b"%d" % len(o.done), dry_run=True)

    assert answer.body == b"1"
    assert len(runs[0].done) == 1
    assert world.coupon(coupon.id).state is CouponState.ISSUED
    assert world.store.history == [] and world.store.responses == {}


def test_a_whole_request_error_after_writes_rolls_every_write_back() -> None:
    # Given a use case that revokes a code and then fails as a whole
    world = World()
    series = world.series()
    [coupon] = world.coupons(series, "E1")
    db = FakeTransactions(world.store)

    def use_case(uow: UnitOfWork) -> None:
        revoke(uow, world.ctx(), RevokeRequest(series_id=series.id, codes=("E1",)))
        raise errors.SeriesExpired()

    # When it runs, then the error propagates and the revoke is gone
    with pytest.raises(errors.SeriesExpired):
        execute(db, world.ctx(), use_case, lambda o: b"", idempotency=Idempotency("k", "f"))
    assert world.coupon(coupon.id).state is CouponState.ISSUED
    assert world.store.history == [] and world.store.responses == {}


class _Watched(FakeTransactions):
    """Says whether a transaction is open at the moment of asking."""

    open = False

    def run(self, work, *, write=True, retry_integrity=False):  # type: ignore[no-untyped-def]
        self.open = True
        try:
            return super().run(work, write=write, retry_integrity=retry_integrity)
        finally:
            self.open = False


def _watched_revoke() -> tuple[World, _Watched, UseCase, list[bool], Callable[[Outcome], bytes]]:
    """A revoke of one code, its transactions watched, and a renderer noting whether one was
    open when it ran."""
    world = World()
    series = world.series()
    world.coupons(series, "K1")
    db = _Watched(world.store)
    _, use_case = revoke_code(world, "K1", series.id)
    seen: list[bool] = []

    def render(outcome: Outcome) -> bytes:
        seen.append(db.open)
        return b"done"

    return world, db, use_case, seen, render


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_answer_is_rendered_once_the_transaction_has_ended(dry_run: bool) -> None:
    # Given a revoke without an idempotency key (a SQLite transaction holds the write lock)
    world, db, use_case, seen, render = _watched_revoke()

    # When it runs, Then its answer is rendered after the transaction, not inside it
    rendered = execute(db, world.ctx(), use_case, render, dry_run=dry_run)
    assert rendered.body == b"done" and seen == [False]


def test_an_answer_stored_under_a_key_is_rendered_inside_its_transaction() -> None:
    world, db, use_case, seen, render = _watched_revoke()
    execute(db, world.ctx(), use_case, render, idempotency=Idempotency("k", "f"))
    assert seen == [True]
