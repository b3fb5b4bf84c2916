"""No org-wide serialization (spec §10): writers of one org contend only on the coupons they
touch. Sampled from `pg_stat_activity` while many requests revoke and reinstate different
coupons of one org at once: nobody ever waits on an advisory lock."""

from __future__ import annotations

import httpx
from sqlalchemy.engine import make_url

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.conftest import Backend, creds
from tests.e2e.conftest import Api
from tests.multihost.conftest import TOKEN_SECRET
from tests.multihost.load import Load
from tests.multihost.locks import LockSampler
from tests.reliability.live import threaded_server

THREADS = 8
COUPONS = 64


def test_concurrent_writers_of_one_org_never_wait_on_an_advisory_lock(
    postgresql_backend: Backend,
) -> None:
    # given one org's coupons, and a server on the PostgreSQL store
    postgresql_backend.reset()
    app = create_app(
        Settings(database_url=postgresql_backend.url, token_secret=TOKEN_SECRET, db_pool_size=8),
        db=postgresql_backend.db,
    )
    admin = creds("acme", "admin")
    with threaded_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        api = Api(http, admin)
        series_id = api.series()
        customer_id = api.customer("+1 555 0102")
        issued = api.issue_many(series_id, customer_id, COUPONS)
        codes = [c["couponCode"].upper() for c in issued]

        # when eight threads revoke, reinstate and redeem different coupons of that org, while
        # pg_stat_activity is sampled every few milliseconds
        database = make_url(postgresql_backend.url).database
        assert database is not None
        plain_url = make_url(postgresql_backend.url).set(drivername="postgresql")
        load = Load([base_url], admin, series_id, customer_id, codes, threads=THREADS)
        with LockSampler(plain_url.render_as_string(hide_password=False), database) as sampler:
            for thread in load.start():
                thread.join(120)

    # then every change went through and no session ever waited on an advisory lock
    assert load.seen.unexpected == []
    assert sampler.samples > 100
    assert sampler.advisory_waits() == 0, sampler.waits
