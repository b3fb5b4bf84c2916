"""No request scans the coupons table: every statement the lifecycle sends reaches its rows
through an index, on both backends. A full scan is invisible on a test-sized table and costs
seconds on ten million coupons, so the plans are checked, not the timings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from coupons.adapters.repos import SqlCouponRepository
from coupons.adapters.repos.revoke_batch import write_revoke_pg
from coupons.domain.model import CouponState
from coupons.domain.records import RevokeBatch
from tests.conftest import Backend
from tests.e2e.conftest import Api


@contextmanager
def captured(backend: Backend) -> Iterator[list[tuple[str, Any]]]:
    """Every statement and its parameters sent to the backend inside the block."""
    seen: list[tuple[str, Any]] = []

    def keep(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        seen.append((statement, parameters[0] if many else parameters))

    for engine in backend.db.engines:  # PostgreSQL revokes go through the loop's
        event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        for engine in backend.db.engines:
            event.remove(engine, "before_cursor_execute", keep)


def touches_coupons(statement: str) -> bool:
    text = " ".join(statement.split()).lower()
    return any(f"{verb} coupons" in text for verb in ("from", "update", "join"))


def plan(backend: Backend, statement: str, parameters: Any) -> str:
    """The plan as text; PostgreSQL is told to avoid full and bitmap scans, so it takes an
    index in its order whenever one serves. On a test's few rows (and the dead ones earlier
    tests left) a bitmap scan and a sort can cost less, which says nothing of a big table."""
    raw = backend.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if backend.name == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("SET enable_bitmapscan = off")
            cursor.execute("EXPLAIN " + statement, parameters)
            text = "\n".join(row[0] for row in cursor.fetchall())
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            text = "\n".join(str(row[-1]) for row in cursor.fetchall())
        raw.rollback()
        return text
    finally:
        raw.close()


def full_scans(backend: Backend, text: str) -> list[str]:
    lines = text.splitlines()
    if backend.name == "postgresql":
        return [line for line in lines if "Seq Scan on coupons" in line]
    return [line for line in lines if line.strip().startswith("SCAN coupons")]


def test_no_lifecycle_request_scans_the_coupons_table(api: Api, backend: Backend) -> None:
    # Given a pool series, a generic series and a customer
    codes = [f"PLAN-{i:03}" for i in range(60)]
    pool = api.series(codes=codes)
    api.series("GENERIC_REDEEMABLE", generic_code="PLANGEN")
    customer = api.customer("555-0199")
    with captured(backend) as statements:
        # When every lifecycle call runs once
        issued = api.issue_many(pool, customer, 5)
        api.issue(pool, customer)
        api.ok(api.get(f"/v2/coupon/series/{pool}"))
        api.ok(api.get(f"/v2/customers/{customer}/coupons"))
        redeemed = api.ok(api.redeem(customer, issued[0]["couponCode"]))["redemptions"]
        api.ok(api.redeem(customer, "PLANGEN"))
        api.ok(api.revoke({"couponSeriesId": pool, "couponCodes": codes[40:]}))
        api.ok(api.revoke({"couponCodes": [issued[1]["couponCode"]]}))
        api.ok(api.revoke({"customer": {"id": customer}}))
        api.ok(api.post("/v2/coupon/reinstate", {"customer": {"id": customer}}))
        reactivate = {"redemptionIds": [redeemed[0]["redemptionId"]]}
        api.ok(api.request("PATCH", "/v2/coupon/reactivate", json=reactivate))
        api.ok(api.get(f"/v2/coupon/{issued[2]['couponId']}"))
    # Then each statement on the coupons table goes through an index
    on_coupons = [(s, p) for s, p in statements if touches_coupons(s)]
    assert len(on_coupons) >= 10, "the calls above no longer reach the coupons table"
    scans = {s: full_scans(backend, plan(backend, s, p)) for s, p in on_coupons}
    assert {s: lines for s, lines in scans.items() if lines} == {}
    # And issuing takes from the partial index of AVAILABLE codes, not the whole series
    takes = [(s, p) for s, p in on_coupons if "pool_series_id" in s and "LIMIT" in s.upper()]
    assert takes, "issuing no longer takes codes from the pool"
    assert all("ix_coupons_pool" in plan(backend, s, p) for s, p in takes)


def test_revoke_and_redeem_of_issued_coupons_touch_no_index(api: Api, backend: Backend) -> None:
    """No index reads `state`, predicates included, so on PostgreSQL these are heap-only
    updates: the new row version stays on its page and no index gains an entry. An index
    that read `state` would make every one a full update, scattered over a large table."""
    if backend.name != "postgresql":
        pytest.skip("heap-only updates are PostgreSQL's; SQLite rewrites rows in place")
    # Given coupons issued to a customer
    pool = api.series(codes=[f"HOT-{i:03}" for i in range(30)])
    customer = api.customer("555-0142")
    ids = [int(c["couponId"]) for c in api.issue_many(pool, customer, 20)]
    now = datetime.now(UTC)
    # (issuing left a dead version of each row on the table's one page; clear them, or a
    # full page, not an index, is what stops an update from staying on its page)
    vacuum = backend.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with vacuum:
        vacuum.execute(text("VACUUM coupons"))
    # (the counter also holds this backend's earlier, unflushed transactions: take a delta)
    hot_updates = text("SELECT pg_stat_get_xact_tuples_hot_updated('coupons'::regclass)")
    with backend.db.engine.connect() as conn:
        # (a read lets PostgreSQL prune the versions issuing left on these pages, as the
        # many reads of a live system do; right after the issue calls a page can still be
        # too full for a new version, whatever the indexes)
        conn.execute(text("SELECT count(*) FROM coupons WHERE customer_id = :c"), {"c": customer})
        conn.commit()
        repo = SqlCouponRepository(conn)
        before = conn.scalar(hot_updates)
        # When ten are revoked and ten redeemed by the statements the use cases send (the
        # revoke's UPDATE is part of one statement with its history and trail row)
        revoke = RevokeBatch(
            org_id=conn.scalar(text("SELECT org_id FROM coupons WHERE id = :i"), {"i": ids[0]}),
            coupon_ids=tuple(ids[:10]),
            from_states=(CouponState.ISSUED,) * 10,
            at=now,
            actor="plans",
            request_id="hot-1",
            reason=None,
        )
        assert write_revoke_pg(conn, revoke) == 10
        redeem = {"from_state": CouponState.ISSUED, "to_state": CouponState.REDEEMED}
        assert repo.set_state(ids[10:], **redeem, now=now) == 10
        # Then every one of the twenty updates was heap-only
        hot = conn.scalar(hot_updates) - before
        conn.rollback()
    assert hot == 20


def test_a_revokes_code_list_is_one_constant_array_not_an_expression_per_row(
    api: Api, backend: Backend
) -> None:
    # The codes go as one array literal. Sent typed as text and cast to an array in the
    # statement, the cast was an expression PostgreSQL evaluated again for every row it
    # filtered: on a table without statistics (autovacuum not yet there, a fresh database), a
    # revoke job's 500-code chunk parsed its array once per coupon of the org, seconds a chunk.
    if backend.name != "postgresql":
        pytest.skip("SQLite reads the codes from JSON with json_each, once a statement")
    # given a series and a revoke of three of its codes
    series = api.series(codes=[f"ARR-{i:03}" for i in range(30)])
    with captured(backend) as statements:
        api.ok(api.revoke({"couponSeriesId": series, "couponCodes": ["ARR-001", "ARR-002"]}))
    [(statement, parameters)] = [(s, p) for s, p in statements if "code_norm = ANY" in s]

    # when PostgreSQL plans the lookup with its values, as a job's chunk is planned
    text = plan(backend, statement, parameters)

    # then the list is a constant array in the plan, not a cast left to run per row
    assert "ANY ('{" in text, text
    assert "cstring" not in text, text
