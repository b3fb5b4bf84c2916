"""The production shape under faults (spec §10): three `coupons serve` processes and a
`coupons worker` through PgBouncer (transaction pooling) on one PostgreSQL, under mixed revoke,
redeem and reinstate load from several threads with idempotency keys and retries; one API
process is SIGKILLed and PostgreSQL is stopped (as by a crash) and started mid-run.

Afterwards: no 500s; every acknowledged change applied exactly once; every coupon's history
replays to its state; the event log (API and webhooks) holds each change exactly once, each
coupon's events carrying versions 1..n in order; nobody waited on an advisory lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from coupons.domain.model import Action, CouponState, StateChange, replay
from tests.e2e.conftest import Api
from tests.events.conftest import Receiver, _start_receiver
from tests.multihost.cluster import Cluster, PgBouncer
from tests.multihost.conftest import TOKEN_SECRET, ServiceDatabase
from tests.multihost.load import SCRIPT, Load
from tests.multihost.locks import LockSampler
from tests.reliability.live import ServerProcess, wait_healthy

SERVERS = 3
THREADS = 6
COUPONS = 60
STEPS = COUPONS * len(SCRIPT)


class WorkerProcess:
    """`coupons worker` in its own process group."""

    def __init__(self, db_url: str, log_path: Path) -> None:
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from coupons.entrypoints.cli import main; main()",
                    "worker",
                    "--db",
                    db_url,
                    "--poll-interval",
                    "0.2",
                    "--lease-seconds",
                    "15",
                    "--timeout",
                    "5",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = _start_receiver()
    yield started
    started.server.shutdown()
    started.server.server_close()


def all_events(api: Api) -> list[dict[str, Any]]:
    """The whole event log, page by page through the cursor."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        entity = api.ok(api.get("/v2/events", params={"after": after, "limit": 1000}))
        if not entity["events"]:
            return events
        events.extend(entity["events"])
        after = entity["nextAfter"]


def stored_histories(url: str) -> dict[int, tuple[CouponState, list[StateChange]]]:
    """Every coupon's state and history, read straight from PostgreSQL."""
    with psycopg.connect(url) as conn:
        states: dict[int, str] = dict(conn.execute("SELECT id, state FROM coupons").fetchall())
        rows = conn.execute(
            "SELECT coupon_id, action, from_state, to_state, at, actor, request_id, reason "
            "FROM coupon_history ORDER BY id"
        ).fetchall()
    found: dict[int, tuple[CouponState, list[StateChange]]] = {
        cid: (CouponState(state), []) for cid, state in states.items()
    }
    for cid, action, from_state, to_state, at, actor, request_id, reason in rows:
        entry = StateChange(
            Action(action),
            CouponState(from_state) if from_state else None,
            CouponState(to_state),
            at,
            actor,
            request_id,
            reason,
        )
        found[cid][1].append(entry)
    return found


def test_three_servers_and_a_worker_survive_a_sigkill_and_a_database_restart(
    cluster: Cluster,
    service_database: ServiceDatabase,
    bouncer: PgBouncer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    # given three API processes and a delivery worker, all through PgBouncer
    url = bouncer.url(service_database.name)
    env = {"COUPONS_TOKEN_SECRET": TOKEN_SECRET, "COUPONS_LOG_LEVEL": "WARNING"}
    servers = [
        ServerProcess(url, tmp_path / f"server{i}.log", extra_args=["--no-worker"]).start(
            env, wait=False
        )
        for i in range(SERVERS)
    ]
    worker = WorkerProcess(url, tmp_path / "worker.log")
    try:
        for server in servers:
            wait_healthy(server.base_url, timeout=90)
        with httpx.Client(base_url=servers[1].base_url, timeout=30) as http:
            api = Api(http, service_database.admin)
            # and a webhook subscription, and issued coupons
            api.ok(api.post("/v2/webhooks", {"url": receiver.url}))
            series_id = api.series()
            customer_id = api.customer("+1 555 0103")
            issued = api.issue_many(series_id, customer_id, COUPONS)
            codes = [c["couponCode"].upper() for c in issued]

            # when six threads walk every coupon through revoke, reinstate, revoke,
            # reinstate and redeem across the three servers, with keys and retries
            load = Load(
                [s.base_url for s in servers],
                service_database.admin,
                series_id,
                customer_id,
                codes,
                threads=THREADS,
            )
            with LockSampler(cluster.url(service_database.name), service_database.name) as locks:
                threads = load.start()
                # and one server is SIGKILLed mid-run
                load.wait_for_steps(STEPS // 5)
                servers[0].kill()
                # and PostgreSQL crashes and comes back
                load.wait_for_steps(STEPS * 2 // 5)
                cluster.stop("immediate")
                time.sleep(1.5)
                cluster.start()
                for thread in threads:
                    thread.join(90)
            events = all_events(api)

            # and the worker delivers everything
            deadline = time.monotonic() + 30
            expected_ids = {e["id"] for e in events}
            while {e["id"] for e in receiver.acknowledged_events()} < expected_ids:
                assert time.monotonic() < deadline, "webhooks did not catch up"
                time.sleep(0.2)
    finally:
        worker.stop()
        for server in servers:
            server.stop()

    # then no request got a 500 (or anything but 200 and 503 with 9023 and Retry-After)
    assert load.seen.unexpected == []
    assert load.seen.bad_503s == []
    assert set(load.seen.statuses) <= {200, 503}, load.seen.statuses
    # and the faults really hit requests: connection errors from the killed server, 503s
    # while PostgreSQL was down
    assert load.seen.connection_errors > 0
    assert load.seen.statuses[503] > 0

    # and every acknowledged change was applied exactly once
    assert all(load.seen.acknowledged.get(code) == list(SCRIPT) for code in codes)
    histories = stored_histories(cluster.url(service_database.name))
    for state, history in histories.values():
        assert [h.action for h in history] == [Action.ISSUE, *(Action(a.upper()) for a in SCRIPT)]
        # and each history replays to the coupon's stored state
        assert replay(CouponState.AVAILABLE, history) == state == CouponState.REDEEMED

    # and the event log has each change exactly once, per coupon in version order 1..n
    assert len(events) == len({e["id"] for e in events}) == COUPONS * (1 + len(SCRIPT))
    by_coupon: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_coupon.setdefault(event["couponId"], []).append(event)
    for coupon_events in by_coupon.values():
        assert [e["couponVersion"] for e in coupon_events] == list(range(1, 2 + len(SCRIPT)))
    # and so do the webhooks, counting each event id once (delivery is at least once)
    delivered: dict[int, dict[str, Any]] = {}
    for event in receiver.acknowledged_events():
        delivered.setdefault(event["id"], event)
    per_coupon: dict[int, list[int]] = {}
    for event in delivered.values():
        per_coupon.setdefault(event["couponId"], []).append(event["couponVersion"])
    assert all(v == list(range(1, 2 + len(SCRIPT))) for v in per_coupon.values())

    # and nobody waited on an org-wide (advisory) lock
    assert locks.samples > 50
    assert locks.advisory_waits() == 0, locks.waits
