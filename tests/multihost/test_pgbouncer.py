"""PgBouncer in transaction pooling mode (spec §10): the service works through it.

Each transaction may run on a different server connection, so nothing may depend on session
state, and psycopg's server-side prepared statements must be off (`?prepare_threshold=none`):
PgBouncer 1.18 does not carry them from one server connection to another.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from sqlalchemy.engine import make_url

from coupons.adapters import migrate
from coupons.adapters.db import postgres_connect_args
from coupons.adapters.sql_uow import Database
from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.e2e.conftest import Api
from tests.integration.test_custom_plans import plan_mode
from tests.multihost.cluster import Cluster, PgBouncer, pgbouncer_in_front
from tests.multihost.conftest import TOKEN_SECRET, ServiceDatabase
from tests.multihost.load import SCRIPT, Load
from tests.reliability.live import threaded_server

COUPONS = 40


@pytest.mark.parametrize(
    ("query", "expected"),
    [("prepare_threshold=none", None), ("prepare_threshold=off", None), ("prepare_threshold=3", 3)],
)
def test_the_url_option_sets_psycopgs_prepare_threshold(query: str, expected: int | None) -> None:
    url, connect_args = postgres_connect_args(make_url(f"postgresql+psycopg://u@h/db?{query}"))

    assert connect_args == {"prepare_threshold": expected}
    assert "prepare_threshold" not in url.query
    assert url.query["connect_timeout"] == "5"


def test_a_bad_prepare_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="prepare_threshold"):
        postgres_connect_args(make_url("postgresql+psycopg://u@h/db?prepare_threshold=soon"))


def test_the_service_works_through_pgbouncer_in_transaction_pooling_mode(
    service_database: ServiceDatabase, bouncer: PgBouncer
) -> None:
    # given a server whose database URL is PgBouncer's, prepared statements off
    url = bouncer.url(service_database.name)
    app = create_app(Settings(database_url=url, token_secret=TOKEN_SECRET, db_pool_size=4))
    raw = app.state.db.engine.raw_connection()
    try:
        assert raw.driver_connection.prepare_threshold is None
    finally:
        raw.close()
    with threaded_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        api = Api(http, service_database.admin)
        series_id = api.series()
        customer_id = api.customer("+1 555 0101")
        issued = api.issue_many(series_id, customer_id, COUPONS)
        codes = [c["couponCode"].upper() for c in issued]

        # when four threads run every statement many times over, each transaction on
        # whichever server connection PgBouncer hands out
        load = Load([base_url], service_database.admin, series_id, customer_id, codes)
        for thread in load.start():
            thread.join(120)
        events = api.ok(api.get("/v2/events", params={"after": 0, "limit": 1000}))["events"]

    # then every request succeeded and was applied once, and the event log has them all
    assert load.seen.unexpected == []
    assert set(load.seen.statuses) == {200}
    assert all(load.seen.acknowledged.get(code) == list(SCRIPT) for code in codes)
    assert len(events) == COUPONS * (1 + len(SCRIPT))


def test_a_job_chunks_plan_setting_holds_for_its_transaction_only_through_pgbouncer(
    service_database: ServiceDatabase, cluster: Cluster
) -> None:
    # given PgBouncer in transaction pooling with a single server connection, shared by two
    # clients of the service (one a job worker's pool, one any other)
    with pgbouncer_in_front(cluster, pool_size=1) as bouncer:
        url = bouncer.url(service_database.name)
        worker, other = Database.from_url(url, pool_size=1), Database.from_url(url, pool_size=1)
        try:
            # when the job worker runs a chunk-style transaction, then anyone else runs one
            inside = worker.run(plan_mode, custom_plans=True)
            after = other.run(plan_mode)
            again = worker.run(plan_mode)
        finally:
            worker.dispose()
            other.dispose()

    # then SET LOCAL held inside it and never leaked onto the shared server connection
    assert inside == "force_custom_plan"
    assert after == again == "auto"


def test_upgrades_started_together_through_pgbouncer_run_one_after_another(
    cluster: Cluster, bouncer: PgBouncer
) -> None:
    # the migration lock is its transaction's, so it holds when each statement may reach
    # another server connection (a session lock would be taken on one and lost on the next)
    cluster.create_database("fresh_release")
    url = bouncer.url("fresh_release")  # with prepare_threshold=none, as the docs set it
    command = [sys.executable, "-m", "coupons.entrypoints.cli", "db", "upgrade", "--db", url]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    assert migrate.current_revision(cluster.url("fresh_release")) == migrate.head_revision()
