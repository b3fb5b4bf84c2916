"""Races between real transactions: revoke and redeem never both win.

Racers are real threads sharing one engine (both backends) or, on SQLite, real processes each
with its own engine on the same database file. Each round, a `Barrier` lines the racers up on
one coupon; a few hundred rounds run per test. Use cases go through the service layer's runner
(`coupons.services.runner.execute`), so each call is one real transaction with the production
retry policy. Any exception other than a coded `CouponError` (say "database is locked", a
deadlock or a serialization failure) is recorded as a crash and fails the test.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from coupons.adapters.db import create_db_engine
from coupons.adapters.repos import SqlHistoryRepository
from coupons.adapters.sql_uow import Database, is_transient
from coupons.adapters.tables import coupon_history, coupons, redemptions
from coupons.domain import codes as code_rules
from coupons.domain.errors import CouponError
from coupons.domain.model import CouponState, DiscountType, SeriesType, replay
from coupons.services import customers, issue, redeem, revoke, series
from coupons.services.common import Actor, Context, CustomerRef, utcnow
from coupons.services.ports import UnitOfWork
from coupons.services.runner import execute

if TYPE_CHECKING:
    from tests.conftest import Backend

T = TypeVar("T")

ROUNDS = 200
BARRIER_TIMEOUT_S = 60.0
# SQLite races run as threads and as processes; PostgreSQL as threads on separate connections.
RACE_MODES = pytest.mark.parametrize(
    ("backend", "mode"),
    [("sqlite", "threads"), ("sqlite", "processes"), ("postgresql", "threads")],
    indirect=["backend"],
)

Result = tuple[Any, ...]  # ("OK", detail...) | ("ERROR", code) | ("CRASH", text)


@dataclass(frozen=True, slots=True)
class Who:
    """What a racer needs to act as an API client; plain values so processes can take it."""

    url: str
    org_id: int
    client_id: int
    username: str

    def context(self, request_id: str) -> Context:
        actor = Actor(self.org_id, self.client_id, self.username, frozenset({"default"}))
        return Context(actor=actor, request_id=request_id, now=utcnow())


# --- the operations racers perform -----------------------------------------------------------


def _call(db: Database, ctx: Context, use_case: Callable[[UnitOfWork], T]) -> T:
    """Run a use case like a route does: one transaction, retried on transient conflicts."""
    results: list[T] = []

    def render(result: T) -> bytes:
        results.append(result)
        return b""

    execute(db, ctx, use_case, render)
    return results[-1]


def op_revoke(db: Database, ctx: Context, arg: tuple[int, str]) -> Result:
    series_id, code = arg
    request = revoke.RevokeRequest(series_id=series_id, codes=(code,))
    outcome = _call(db, ctx, lambda uow: revoke.revoke(uow, ctx, request))
    if outcome.done:
        return ("OK",)
    [reason] = outcome.failed
    return ("ERROR", reason.code)


def op_reinstate(db: Database, ctx: Context, arg: tuple[int, str]) -> Result:
    series_id, code = arg
    request = revoke.RevokeRequest(series_id=series_id, codes=(code,))
    outcome = _call(db, ctx, lambda uow: revoke.reinstate(uow, ctx, request))
    if outcome.done:
        return ("OK",)
    [reason] = outcome.failed
    return ("ERROR", reason.code)


def op_redeem(db: Database, ctx: Context, arg: tuple[int, str]) -> Result:
    customer_id, code = arg
    lines = [redeem.RedeemLine(code=code)]
    done = _call(
        db,
        ctx,
        lambda uow: redeem.redeem(
            uow, ctx, CustomerRef(id=customer_id), lines, "T-race", Decimal("10")
        ),
    )
    return ("OK", done[0].redemption_id, done[0].coupon_id)


def op_issue(db: Database, ctx: Context, arg: tuple[int, int]) -> Result:
    series_id, customer_id = arg
    done = _call(db, ctx, lambda uow: issue.issue(uow, ctx, series_id, CustomerRef(id=customer_id)))
    return ("OK", done[0].coupon_id, done[0].code)


OPS: dict[str, Callable[[Database, Context, Any], Result]] = {
    "revoke": op_revoke,
    "reinstate": op_reinstate,
    "redeem": op_redeem,
    "issue": op_issue,
}

# One racer's plan: per round, the operations it performs in order, as (op name, argument).
Plan = list[list[tuple[str, Any]]]


def _run_plan(db: Database, who: Who, name: str, plan: Plan, barrier: Any, seed: int) -> list[Any]:
    """Perform the plan, waiting at the barrier before each round; never raises."""
    jitter = random.Random(seed)
    rounds: list[list[tuple[str, Result]]] = []
    for number, steps in enumerate(plan):
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        # Up to a millisecond of jitter, so each racer sometimes gets there first.
        time.sleep(jitter.uniform(0, 0.001))
        done: list[tuple[str, Result]] = []
        for step, (op, arg) in enumerate(steps):
            request_id = f"{name}-{number}-{step}"
            try:
                result = OPS[op](db, who.context(request_id), arg)
            except CouponError as error:
                result = ("ERROR", error.code)
            except Exception as error:  # recorded, so the test can fail with the message
                result = ("CRASH", f"{type(error).__name__}: {error}")
            done.append((request_id, result))
        rounds.append(done)
    return rounds


def _process_racer(who: Who, name: str, plan: Plan, barrier: Any, out: Any, seed: int) -> None:
    """A racer in its own process, with its own engine on the same database file."""
    db = Database.from_url(who.url, pool_size=2)
    try:
        out.put((name, _run_plan(db, who, name, plan, barrier, seed)))
    except BaseException as error:
        barrier.abort()
        out.put((name, f"{type(error).__name__}: {error}"))
    finally:
        db.dispose()


def _process_context() -> Any:
    """Processes forked from a clean server that has the project imported already.

    Forking the test process itself would hand children its open connections; spawning pays
    the imports again for every racer.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def race(backend: Backend, mode: str, who: Who, plans: dict[str, Plan]) -> dict[str, Any]:
    """Run every racer's plan concurrently, round by round; each racer's results by name."""
    seeds = {name: index for index, name in enumerate(plans)}
    if mode == "threads":
        barrier = threading.Barrier(len(plans))
        results: dict[str, Any] = {}

        def run(name: str) -> None:
            try:
                results[name] = _run_plan(backend.db, who, name, plans[name], barrier, seeds[name])
            except BaseException as error:
                barrier.abort()
                results[name] = f"{type(error).__name__}: {error}"

        threads = [threading.Thread(target=run, args=(name,)) for name in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results
    spawn = _process_context()
    process_barrier = spawn.Barrier(len(plans))
    out = spawn.Queue()
    processes = [
        spawn.Process(
            target=_process_racer,
            args=(who, name, plan, process_barrier, out, seeds[name]),
        )
        for name, plan in plans.items()
    ]
    for process in processes:
        process.start()
    try:
        return dict(out.get(timeout=120) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)


def results_of(outcome: dict[str, Any], name: str) -> list[list[tuple[str, Result]]]:
    """One racer's rounds; fails loudly if the racer died or any call crashed."""
    rounds = outcome[name]
    assert isinstance(rounds, list), f"racer {name} died: {rounds}"
    crashes = [r for steps in rounds for _, r in steps if r[0] == "CRASH"]
    assert crashes == [], f"racer {name} crashed {len(crashes)} times, first: {crashes[0]}"
    return rounds


# --- given ------------------------------------------------------------------------------------


def _who(backend: Backend) -> Who:
    def load(uow: UnitOfWork) -> Who:
        org_id = uow.clients.org_id_by_name("acme")
        client = uow.clients.client_by_username("acme-agent")
        assert org_id is not None and client is not None
        return Who(backend.url, org_id, client.id, client.username)

    return backend.db.run(load, write=False)


def _given(backend: Backend, who: Who, work: Callable[[UnitOfWork, Context], T]) -> T:
    def attempt(uow: UnitOfWork) -> T:
        result = work(uow, who.context("given"))
        uow.commit()
        return result

    return backend.db.run(attempt)


def _series(
    backend: Backend, who: Who, codes: Sequence[str], type: SeriesType = SeriesType.DISC_CODE
) -> int:
    def work(uow: UnitOfWork, ctx: Context) -> int:
        created = series.create_series(
            uow,
            ctx,
            series.NewSeries(
                description=f"race {type.value}",
                type=type,
                generic_code="RACE-ALL" if type.is_generic else None,
                valid_till=datetime.now(UTC) + timedelta(days=30),
                discount_type=DiscountType.ABS,
                discount_value=Decimal("5"),
            ),
        )
        if codes:
            upload = series.CodeUpload(codes=[(code, None) for code in codes])
            series.add_codes(uow, ctx, created.id, upload)
        return created.id

    return _given(backend, who, work)


def _customers(backend: Backend, who: Who, count: int) -> list[int]:
    def work(uow: UnitOfWork, ctx: Context) -> list[int]:
        return [
            customers.create_customer(uow, ctx, customers.NewCustomer(external_id=f"racer-{i}")).id
            for i in range(count)
        ]

    return _given(backend, who, work)


def _issued(backend: Backend, who: Who, count: int) -> tuple[int, int, list[tuple[int, str]]]:
    """A series of `count` codes, all issued to one customer: (series, customer, coupons)."""
    series_id = _series(backend, who, [f"race{i:04d}" for i in range(count)])
    [customer_id] = _customers(backend, who, 1)
    done = _given(
        backend,
        who,
        lambda uow, ctx: issue.issue(uow, ctx, series_id, CustomerRef(id=customer_id), count),
    )
    return series_id, customer_id, [(c.coupon_id, c.code) for c in done]


def _history(backend: Backend) -> dict[int, list[tuple[str, str]]]:
    """Each coupon's history as (action, request id), in order."""
    with backend.db.engine.connect() as conn:
        rows = conn.execute(
            select(
                coupon_history.c.coupon_id, coupon_history.c.action, coupon_history.c.request_id
            ).order_by(coupon_history.c.coupon_id, coupon_history.c.id)
        ).all()
    found: dict[int, list[tuple[str, str]]] = {}
    for coupon_id, action, request_id in rows:
        found.setdefault(coupon_id, []).append((action, request_id))
    return found


def _states(backend: Backend) -> dict[int, str]:
    with backend.db.engine.connect() as conn:
        return {cid: state for cid, state in conn.execute(select(coupons.c.id, coupons.c.state))}


def _redemption_counts(backend: Backend) -> Counter[int]:
    with backend.db.engine.connect() as conn:
        return Counter(conn.scalars(select(redemptions.c.coupon_id)).all())


# --- the races ----------------------------------------------------------------------------------


@RACE_MODES
def test_revoke_racing_redeem_on_an_issued_coupon_has_exactly_one_truthful_winner(
    backend: Backend, mode: str
) -> None:
    # given ROUNDS coupons issued to one customer
    who = _who(backend)
    series_id, customer_id, issued = _issued(backend, who, ROUNDS)

    # when, for each coupon, a revoke and a redeem start at the same moment
    outcome = race(
        backend,
        mode,
        who,
        {
            "revoker": [[("revoke", (series_id, code))] for _, code in issued],
            "redeemer": [[("redeem", (customer_id, code))] for _, code in issued],
        },
    )

    # then exactly one wins each race, the loser says why, and the state is the winner's
    revokes = [steps[0][1] for steps in results_of(outcome, "revoker")]
    redeems = [steps[0][1] for steps in results_of(outcome, "redeemer")]
    states, history, redeemed = _states(backend), _history(backend), _redemption_counts(backend)
    winners: Counter[str] = Counter()
    for (coupon_id, _), revoked, redeemed_result in zip(issued, revokes, redeems, strict=True):
        actions = [action for action, _ in history[coupon_id]]
        if revoked == ("OK",):
            winners["revoke"] += 1
            assert redeemed_result == ("ERROR", 682)
            assert states[coupon_id] == "REVOKED"
            assert actions == ["ISSUE", "REVOKE"]
            assert redeemed[coupon_id] == 0
        else:
            winners["redeem"] += 1
            assert revoked == ("ERROR", 405)
            assert redeemed_result[0] == "OK" and redeemed_result[2] == coupon_id
            assert states[coupon_id] == "REDEEMED"
            assert actions == ["ISSUE", "REDEEM"]
            assert redeemed[coupon_id] == 1
    # Both sides won some races: the racers really did overlap rather than take turns.
    assert winners["revoke"] > 0 and winners["redeem"] > 0, winners


@RACE_MODES
def test_two_redeems_racing_on_one_coupon_redeem_it_once(backend: Backend, mode: str) -> None:
    # given ROUNDS coupons issued to one customer
    who = _who(backend)
    _, customer_id, issued = _issued(backend, who, ROUNDS)

    # when, for each coupon, two redeems for that customer start at the same moment
    plan = [[("redeem", (customer_id, code))] for _, code in issued]
    outcome = race(backend, mode, who, {"first": plan, "second": plan})

    # then one redeem wins, the other is told 711, and there is one redemption and one REDEEM
    first = [steps[0][1] for steps in results_of(outcome, "first")]
    second = [steps[0][1] for steps in results_of(outcome, "second")]
    history, redeemed = _history(backend), _redemption_counts(backend)
    for (coupon_id, _), a, b in zip(issued, first, second, strict=True):
        assert sorted([a[0], b[0]]) == ["ERROR", "OK"], (a, b)
        assert ("ERROR", 711) in (a, b)
        assert redeemed[coupon_id] == 1
        assert [action for action, _ in history[coupon_id]] == ["ISSUE", "REDEEM"]


@RACE_MODES
def test_two_redeems_of_a_generic_redeemable_code_by_one_customer_redeem_it_once(
    backend: Backend, mode: str
) -> None:
    # given a GENERIC_REDEEMABLE series and ROUNDS customers who never redeemed it
    who = _who(backend)
    _series(backend, who, [], SeriesType.GENERIC_REDEEMABLE)
    people = _customers(backend, who, ROUNDS)

    # when each customer redeems the shared code twice at the same moment
    plan = [[("redeem", (person, "race-all"))] for person in people]
    outcome = race(backend, mode, who, {"first": plan, "second": plan})

    # then each customer got exactly one coupon, redeemed once; the other call was told 711
    first = [steps[0][1] for steps in results_of(outcome, "first")]
    second = [steps[0][1] for steps in results_of(outcome, "second")]
    for a, b in zip(first, second, strict=True):
        assert sorted([a[0], b[0]]) == ["ERROR", "OK"], (a, b)
        assert ("ERROR", 711) in (a, b)
    with backend.db.engine.connect() as conn:
        per_customer = Counter(conn.scalars(select(coupons.c.customer_id)).all())
    assert per_customer == dict.fromkeys(people, 1)
    assert sum(_redemption_counts(backend).values()) == ROUNDS


@RACE_MODES
def test_two_issues_racing_on_one_pool_never_issue_a_code_twice(
    backend: Backend, mode: str
) -> None:
    # given a pool smaller than the number of issues, so it also runs dry mid-race
    who = _who(backend)
    pool = [f"pool{i:04d}" for i in range(ROUNDS * 3 // 2)]
    series_id = _series(backend, who, pool)
    ann, bob = _customers(backend, who, 2)

    # when two issuers issue one coupon each from the series at the same moment, ROUNDS times
    outcome = race(
        backend,
        mode,
        who,
        {
            "ann": [[("issue", (series_id, ann))] for _ in range(ROUNDS)],
            "bob": [[("issue", (series_id, bob))] for _ in range(ROUNDS)],
        },
    )

    # then every issue succeeded with its own coupon and code, each issued once to one customer
    got = [steps[0][1] for name in ("ann", "bob") for steps in results_of(outcome, name)]
    assert all(r[0] == "OK" for r in got), [r for r in got if r[0] != "OK"][:3]
    assert len({r[1] for r in got}) == 2 * ROUNDS
    assert len({code_rules.normalize(r[2]) for r in got}) == 2 * ROUNDS
    assert {code_rules.normalize(r[2]) for r in got} >= {code_rules.normalize(c) for c in pool}
    with backend.db.engine.connect() as conn:
        rows = conn.execute(
            select(coupons.c.code_norm, func.count(), func.min(coupons.c.state))
            .where(coupons.c.series_id == series_id)
            .group_by(coupons.c.code_norm)
        ).all()
    assert len(rows) == 2 * ROUNDS
    assert all(count == 1 and state == "ISSUED" for _, count, state in rows)
    history = _history(backend)
    assert all([a for a, _ in history[r[1]]] == ["ISSUE"] for r in got)


@RACE_MODES
def test_revoke_reinstate_and_redeem_in_random_interleavings_match_the_replayed_history(
    backend: Backend, mode: str
) -> None:
    # given ROUNDS coupons issued to one customer
    who = _who(backend)
    series_id, customer_id, issued = _issued(backend, who, ROUNDS)

    # when three racers each apply a random lifecycle operation to the same coupon at once
    chooser = random.Random(20240611)
    ops = ["revoke", "reinstate", "redeem"]

    def plan() -> Plan:
        picks = chooser.choices(ops, k=len(issued))
        return [
            [(op, (customer_id if op == "redeem" else series_id, code))]
            for op, (_, code) in zip(picks, issued, strict=True)
        ]

    outcome = race(backend, mode, who, {"ann": plan(), "bob": plan(), "cid": plan()})

    # then each coupon's state is its history replayed, every step in the history follows from
    # the one before, and the history holds exactly the calls that reported success
    succeeded = {
        request_id
        for name in ("ann", "bob", "cid")
        for steps in results_of(outcome, name)
        for request_id, result in steps
        if result[0] == "OK"
    }
    with backend.db.engine.connect() as conn:
        rows = conn.execute(
            select(
                coupon_history.c.coupon_id,
                coupon_history.c.action,
                coupon_history.c.from_state,
                coupon_history.c.to_state,
                coupon_history.c.request_id,
            ).order_by(coupon_history.c.coupon_id, coupon_history.c.id)
        ).all()
    states = _states(backend)
    entries: dict[int, list[Any]] = {}
    for row in rows:
        entries.setdefault(row.coupon_id, []).append(row)
    with backend.db.engine.connect() as conn:
        typed = {cid: SqlHistoryRepository(conn).history(cid) for cid, _ in issued}
    seen_actions: Counter[str] = Counter()
    for coupon_id, _ in issued:
        assert states[coupon_id] == replay(CouponState.AVAILABLE, typed[coupon_id]).value
        state = CouponState.AVAILABLE.value
        for row in entries[coupon_id]:
            assert row.from_state == state, (coupon_id, entries[coupon_id])
            state = row.to_state
            seen_actions[row.action] += 1
        assert state == states[coupon_id]
    assert {row.request_id for row in rows if row.request_id != "given"} == succeeded
    # The interleavings exercised every transition, not just the first one to win.
    assert all(seen_actions[a] > 0 for a in ("REVOKE", "REINSTATE", "REDEEM")), seen_actions


def test_a_writer_that_gives_up_waiting_for_sqlite_returns_its_connection(
    sqlite_backend: Backend,
) -> None:
    # given another connection holding the SQLite write lock, and a store that waits 50 ms
    holder = sqlite3.connect(sqlite_backend.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    db = Database(create_db_engine(sqlite_backend.url, busy_timeout_ms=50))
    try:
        # when a write transaction cannot get the lock in time
        with pytest.raises(OperationalError) as raised, db.unit_of_work():
            pass

        # then the error is one the runner retries, and no connection is left checked out
        assert is_transient(raised.value)
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        holder.rollback()
        holder.close()
        db.dispose()
