"""Random issue / revoke / reinstate / redeem / reactivate sequences, through HTTP, on both
backends, checked against a model after every step.

The model predicts each response (which coupons change, which codes fail with which error)
and each coupon's state and customer. After every step the database must agree: every
coupon in the state the model says, series counts adding up, and each coupon's history
replaying to its current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import hypothesis.strategies as st
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from coupons.adapters.sql_uow import SqlUnitOfWork
from coupons.adapters.tables import coupon_history
from coupons.domain.codes import normalize
from coupons.domain.model import Action, Coupon, CouponState, HistoryEntry, replay
from tests.conftest import Backend, creds
from tests.e2e.conftest import Api

POOL_CODES = ["Pa1x", "pB2y", "PC3z", "pd4W"]
GENERIC_CODE = "Sale20"
UNKNOWN_CODE = "NoSuch9"
CASES = ["UPPER", "LOWER", "AS_IT_IS"]


@dataclass
class Modelled:
    """What the model believes about one coupon."""

    series: int
    code: str
    state: CouponState
    customer: int | None
    before_revoke: CouponState | None = None


def render(case: str, code: str) -> str:
    return {"UPPER": code.upper(), "LOWER": code.lower()}.get(case, code)


def spelled(code: str, lower: bool) -> str:
    return code.lower() if lower else code.upper()


def histories(uow: SqlUnitOfWork, coupon_ids: list[int]) -> dict[int, list[HistoryEntry]]:
    """Every coupon's history in one query (one query per coupon per step is too slow)."""
    rows = uow.conn.execute(
        select(coupon_history)
        .where(coupon_history.c.coupon_id.in_(coupon_ids))
        .order_by(coupon_history.c.id)
    )
    found: dict[int, list[HistoryEntry]] = {}
    for row in rows:
        found.setdefault(row.coupon_id, []).append(
            HistoryEntry(
                action=Action(row.action),
                from_state=CouponState(row.from_state) if row.from_state else None,
                to_state=CouponState(row.to_state),
                at=row.at,
                actor=row.actor,
                request_id=row.request_id,
                reason=row.reason,
            )
        )
    return found


class LifecycleMachine(RuleBasedStateMachine):
    """Drives the API with random lifecycle steps; one fresh database per example."""

    backend: ClassVar[Backend]
    app: ClassVar[FastAPI]

    def __init__(self) -> None:
        super().__init__()
        self.backend.reset()
        # One client (and event loop thread) for the whole example, closed in teardown().
        self.client = TestClient(self.app, raise_server_exceptions=False).__enter__()
        self.api = Api(self.client, creds("acme", "admin"))
        self.pool = self.api.series(codes=POOL_CODES)
        self.generic = self.api.series("GENERIC", generic_code=GENERIC_CODE)
        self.customers = [self.api.customer(f"555-010{i}") for i in range(2)]
        self.coupons: dict[int, Modelled] = {}
        self.redemptions: dict[int, int] = {}  # active redemption id -> coupon id

        def pool_ids(uow: SqlUnitOfWork) -> tuple[int, list[tuple[int, str]]]:
            org_id = uow.clients.org_id_by_name("acme")
            assert org_id is not None
            found = uow.coupons.coupons_by_codes(
                org_id, [normalize(c) for c in POOL_CODES], series_id=self.pool, lock=False
            )
            return org_id, [(c.id, c.code) for c in found]

        self.org_id, pool = self.backend.db.run(pool_ids, write=False)

        for coupon_id, code in pool:
            self.coupons[coupon_id] = Modelled(self.pool, code, CouponState.AVAILABLE, None)

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)

    # --- helpers ----------------------------------------------------------------------------

    def _of(self, *, series: int | None = None, customer: int | None = None) -> list[int]:
        return sorted(
            cid
            for cid, c in self.coupons.items()
            if (series is None or c.series == series)
            and (customer is None or c.customer == customer)
        )

    def _pool_by_code(self) -> dict[str, int]:
        return {normalize(self.coupons[cid].code): cid for cid in self._of(series=self.pool)}

    def _revoke(self, cid: int) -> None:
        coupon = self.coupons[cid]
        coupon.before_revoke, coupon.state = coupon.state, CouponState.REVOKED

    def _reinstate(self, cid: int) -> None:
        coupon = self.coupons[cid]
        assert coupon.before_revoke is not None
        coupon.state, coupon.before_revoke = coupon.before_revoke, None

    def _check_entity(
        self,
        entity: dict[str, Any],
        done_key: str,
        failed_key: str,
        done: list[int],
        failed: dict[int, list[str]],
        case: str,
    ) -> None:
        assert sorted(c["couponId"] for c in entity[done_key]) == sorted(done), entity
        for item in entity[done_key]:
            coupon = self.coupons[item["couponId"]]
            assert item["couponCode"] == render(case, coupon.code)
            assert item["issuedToUserId"] == coupon.customer
        assert {g["errorCode"]: g["couponCodes"] for g in entity[failed_key]} == failed, entity
        failed_count = sum(len(codes) for codes in failed.values())
        assert (entity["totalCount"], entity["failedCount"]) == (
            len(done) + failed_count,
            failed_count,
        )

    # --- rules ------------------------------------------------------------------------------

    @rule(to_generic=st.booleans(), who=st.integers(0, 1))
    def issue(self, to_generic: bool, who: int) -> None:
        customer = self.customers[who]
        series = self.generic if to_generic else self.pool
        issued = self.api.issue(series, customer)
        if to_generic or issued["couponId"] not in self.coupons:
            # A new generic instance, or a fresh code once the pool ran dry.
            available = [
                cid
                for cid in self._of(series=self.pool)
                if self.coupons[cid].state is CouponState.AVAILABLE
            ]
            assert to_generic or not available, "issue skipped an available pool code"
            self.coupons[issued["couponId"]] = Modelled(
                series, issued["couponCode"], CouponState.ISSUED, customer
            )
        else:
            oldest = min(
                cid
                for cid in self._of(series=self.pool)
                if self.coupons[cid].state is CouponState.AVAILABLE
            )
            assert issued["couponId"] == oldest
            self.coupons[oldest].state = CouponState.ISSUED
            self.coupons[oldest].customer = customer

    @rule(
        picks=st.lists(st.sampled_from([*POOL_CODES, UNKNOWN_CODE]), min_size=1, max_size=5),
        lower=st.booleans(),
        who=st.sampled_from([None, 0, 1]),
        case=st.sampled_from(CASES),
    )
    def revoke_codes(self, picks: list[str], lower: bool, who: int | None, case: str) -> None:
        customer = None if who is None else self.customers[who]
        sent = [spelled(code, lower) for code in picks]
        body: dict[str, Any] = {"couponSeriesId": self.pool, "couponCodes": sent}
        if customer is not None:
            body["customer"] = {"id": customer}
        # Predict before acting: each distinct code once, in the order sent.
        by_code = self._pool_by_code()
        done: list[int] = []
        failed: dict[int, list[str]] = {}
        seen: set[str] = set()
        for code in sent:
            if normalize(code) in seen:
                continue
            seen.add(normalize(code))
            cid = by_code.get(normalize(code))
            if cid is None:
                failed.setdefault(682, []).append(render(case, code))
                continue
            coupon = self.coupons[cid]
            if customer is not None and coupon.customer != customer:
                failed.setdefault(703, []).append(render(case, coupon.code))
            elif coupon.state in (CouponState.AVAILABLE, CouponState.ISSUED):
                done.append(cid)
            elif coupon.state is CouponState.REDEEMED:
                failed.setdefault(405, []).append(render(case, coupon.code))
            else:
                failed.setdefault(682, []).append(render(case, coupon.code))

        entity = self.api.ok(self.api.revoke(body, couponCodeCase=case))

        self._check_entity(entity, "revokedCoupons", "failedToRevoke", done, failed, case)
        for cid in done:
            self._revoke(cid)

    @rule(who=st.integers(0, 1), series=st.sampled_from(["pool", "generic", None]))
    def revoke_customer(self, who: int, series: str | None) -> None:
        customer = self.customers[who]
        series_id = {"pool": self.pool, "generic": self.generic, None: None}[series]
        body: dict[str, Any] = {"customer": {"id": customer}}
        if series_id is not None:
            body["couponSeriesId"] = series_id
        done = [
            cid
            for cid in self._of(series=series_id, customer=customer)
            if self.coupons[cid].state is CouponState.ISSUED
        ]

        entity = self.api.ok(self.api.revoke(body))

        self._check_entity(entity, "revokedCoupons", "failedToRevoke", done, {}, "UPPER")
        for cid in done:
            self._revoke(cid)

    @rule(who=st.integers(0, 1))
    def revoke_generic_for_customer(self, who: int) -> None:
        customer = self.customers[who]
        mine = self._of(series=self.generic, customer=customer)
        done = [
            cid
            for cid in mine
            if self.coupons[cid].state in (CouponState.AVAILABLE, CouponState.ISSUED)
        ]
        failed: dict[int, list[str]] = {}
        if not self._of(series=self.generic):
            failed = {682: [GENERIC_CODE.upper()]}
        elif not mine:
            failed = {703: [GENERIC_CODE.upper()]}
        elif not done:
            redeemed = any(self.coupons[c].state is CouponState.REDEEMED for c in mine)
            failed = {405 if redeemed else 682: [GENERIC_CODE.upper()]}

        entity = self.api.ok(
            self.api.revoke(
                {
                    "couponSeriesId": self.generic,
                    "couponCodes": [GENERIC_CODE.lower()],
                    "customer": {"id": customer},
                }
            )
        )

        self._check_entity(entity, "revokedCoupons", "failedToRevoke", done, failed, "UPPER")
        for cid in done:
            self._revoke(cid)

    @rule(picks=st.lists(st.sampled_from(POOL_CODES), min_size=1, max_size=4, unique=True))
    def reinstate_codes(self, picks: list[str]) -> None:
        by_code = self._pool_by_code()
        done = [
            by_code[normalize(c)]
            for c in picks
            if self.coupons[by_code[normalize(c)]].state is CouponState.REVOKED
        ]
        not_revoked = [
            self.coupons[by_code[normalize(c)]].code.upper()
            for c in picks
            if by_code[normalize(c)] not in done
        ]

        entity = self.api.ok(
            self.api.post(
                "/v2/coupon/reinstate", {"couponSeriesId": self.pool, "couponCodes": picks}
            )
        )

        failed = {9017: not_revoked} if not_revoked else {}
        self._check_entity(entity, "reinstatedCoupons", "failedToReinstate", done, failed, "UPPER")
        for cid in done:
            self._reinstate(cid)

    @rule(who=st.integers(0, 1))
    def reinstate_customer(self, who: int) -> None:
        customer = self.customers[who]
        done = [
            cid
            for cid in self._of(customer=customer)
            if self.coupons[cid].state is CouponState.REVOKED
        ]

        entity = self.api.ok(self.api.post("/v2/coupon/reinstate", {"customer": {"id": customer}}))

        self._check_entity(entity, "reinstatedCoupons", "failedToReinstate", done, {}, "UPPER")
        for cid in done:
            self._reinstate(cid)

    @rule(who=st.integers(0, 1), pick=st.integers(0, 50))
    def redeem(self, who: int, pick: int) -> None:
        customer = self.customers[who]
        issued = [
            cid
            for cid in self._of(customer=customer)
            if self.coupons[cid].state is CouponState.ISSUED
        ]
        if not issued:
            return
        chosen = issued[pick % len(issued)]
        code = self.coupons[chosen].code
        if self.coupons[chosen].series == self.generic:
            # A shared code redeems the customer's oldest issued instance.
            chosen = min(c for c in issued if self.coupons[c].series == self.generic)

        entity = self.api.ok(self.api.redeem(customer, code))

        [redemption] = entity["redemptions"]
        assert redemption["couponId"] == chosen
        self.coupons[chosen].state = CouponState.REDEEMED
        self.redemptions[redemption["redemptionId"]] = chosen

    @rule(pick=st.integers(0, 50))
    def reactivate(self, pick: int) -> None:
        if not self.redemptions:
            return
        redemption_id = sorted(self.redemptions)[pick % len(self.redemptions)]

        entity = self.api.ok(
            self.api.request(
                "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redemption_id]}
            )
        )

        coupon_id = self.redemptions.pop(redemption_id)
        assert [r["couponId"] for r in entity["reactivated"]] == [coupon_id]
        self.coupons[coupon_id].state = CouponState.ISSUED

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        ids = sorted(self.coupons)
        series_ids = (self.pool, self.generic)

        def load(
            uow: SqlUnitOfWork,
        ) -> tuple[list[Coupon], dict[int, list[HistoryEntry]], list[Any]]:
            stored = uow.coupons.coupons_by_ids(self.org_id, ids, lock=False)
            counts = [uow.series.state_counts(s) for s in series_ids]
            return stored, histories(uow, ids), counts

        coupons, history_of, counts = self.backend.db.run(load, write=False)
        stored = [(c, history_of.get(c.id, [])) for c in coupons]
        # Every modelled coupon exists once, in the modelled state, with the modelled customer,
        # and its history replays to that state.
        assert [c.id for c, _ in stored] == ids
        for coupon, history in stored:
            expected = self.coupons[coupon.id]
            assert (coupon.state, coupon.customer_id) == (expected.state, expected.customer)
            assert replay(CouponState.AVAILABLE, history) is coupon.state
        # Series counts add up: per state as modelled, and to every coupon of the series.
        for series_id, series_counts in zip(series_ids, counts, strict=True):
            expected_counts = dict.fromkeys(CouponState, 0)
            for cid in self._of(series=series_id):
                expected_counts[self.coupons[cid].state] += 1
            assert series_counts == expected_counts
            assert sum(series_counts.values()) == len(self._of(series=series_id))


def test_random_lifecycles_keep_database_history_and_model_in_step(
    backend: Backend, app: FastAPI
) -> None:
    machine = type("Lifecycle", (LifecycleMachine,), {"backend": backend, "app": app})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None, database=None),
    )
