"""Fixtures for tests that run the service against a database they may stop: a throwaway
PostgreSQL cluster, a streaming replica of it to fail over to, a PgBouncer in transaction
pooling mode in front of it, and a migrated database on it with the acme org and its admin
client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from coupons.adapters import migrate
from coupons.adapters.sql_uow import Database
from coupons.services import admin
from coupons.services.ports import UnitOfWork
from tests.conftest import PASSWORD, Credentials, creds
from tests.multihost.cluster import (
    Cluster,
    PgBouncer,
    pgbouncer_in_front,
    throwaway_cluster,
    throwaway_standby,
)

TOKEN_SECRET = "test-signing-key-0123456789abcdef0123456789"


@dataclass(frozen=True)
class ServiceDatabase:
    """A migrated database on a throwaway cluster, and the client to call the API as."""

    name: str
    url: str
    admin: Credentials


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own, on a free port; stop and start it at will."""
    with throwaway_cluster() as started:
        yield started


@pytest.fixture
def standby(cluster: Cluster) -> Iterator[Cluster]:
    """A streaming replica of `cluster`, on a free port, that `cluster` commits to
    synchronously: everything committed on `cluster` is on it; `promote()` it at will."""
    with throwaway_standby(cluster) as started:
        yield started


@pytest.fixture
def bouncer(cluster: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling) in front of `cluster`, on a free port."""
    with pgbouncer_in_front(cluster) as started:
        yield started


@pytest.fixture
def service_database(cluster: Cluster) -> ServiceDatabase:
    """The `coupons` database on `cluster`, migrated directly (never through PgBouncer)."""
    url = cluster.create_database("coupons")
    migrate.upgrade(url)
    db = Database.from_url(url, pool_size=1)

    def seed(uow: UnitOfWork) -> None:
        admin.create_org(uow, "acme")
        admin.create_client(
            uow, org="acme", username="acme-admin", password=PASSWORD, groups="default,coupon_admin"
        )
        uow.commit()

    try:
        db.run(seed)
    finally:
        db.dispose()
    return ServiceDatabase("coupons", url, creds("acme", "admin"))
