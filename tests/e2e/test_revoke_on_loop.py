"""Revoke and reinstate on PostgreSQL run on the server's event loop; on SQLite, whose writers
wait for a file lock, in the thread pool. Both stores answer the same either way (every other
revoke test runs on both)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event
from starlette.concurrency import run_in_threadpool

from coupons.entrypoints.http import routes
from tests.conftest import Backend
from tests.e2e.conftest import Api


def test_revoke_and_reinstate_run_where_the_store_allows(
    api: Api, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a series with codes, and counters of thread-pool hops and of the engines and
    # threads the revoke's statements go through
    series = api.series(codes=["LOOP1", "LOOP2", "LOOP3"])
    hops: list[str] = []
    real_hop = run_in_threadpool

    async def counting_hop(function: Any, *args: Any) -> Any:
        hops.append(getattr(function, "__name__", type(function).__name__))
        return await real_hop(function, *args)

    monkeypatch.setattr(routes, "run_in_threadpool", counting_hop)  # as the routes call it
    seen: list[tuple[Any, str]] = []

    def keep(conn: Any, *_args: Any) -> None:
        seen.append((conn.engine, threading.current_thread().name))

    for engine in backend.db.engines:
        event.listen(engine, "before_cursor_execute", keep)
    try:
        # when it revokes a code, dry-runs another and reinstates the first
        body = {"couponSeriesId": series, "couponCodes": ["LOOP1"]}
        revoked = api.ok(api.post("/v2/coupon/revoke", body))
        dry = api.ok(api.post("/v2/coupon/revoke?dryRun=true", {**body, "couponCodes": ["LOOP2"]}))
        reinstated = api.ok(api.post("/v2/coupon/reinstate", body))
    finally:
        for engine in backend.db.engines:
            event.remove(engine, "before_cursor_execute", keep)

    # then each did its work
    assert [c["couponCode"] for c in revoked["revokedCoupons"]] == ["LOOP1"]
    assert [c["couponCode"] for c in dry["revokedCoupons"]] == ["LOOP2"]
    assert [c["couponCode"] for c in reinstated["reinstatedCoupons"]] == ["LOOP1"]
    assert seen
    loop_db = backend.db.on_loop
    if backend.name == "postgresql":
        # and on PostgreSQL without a hop: every statement on the loop's engine, none on a
        # thread of the pool
        assert loop_db is not None and hops == []
        assert {engine for engine, _ in seen} == {loop_db.engine}
        assert not [name for _, name in seen if name.startswith("AnyIO worker")]
    else:
        # and on SQLite in the thread pool, as before
        assert loop_db is None and len(hops) == 3
        assert {engine for engine, _ in seen} == {backend.db.engine}
        assert all(name.startswith("AnyIO worker") for _, name in seen)
