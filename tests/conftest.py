"""Fixtures shared by every level: a migrated database per backend, an app, API clients.

Every database test runs on SQLite and on PostgreSQL. PostgreSQL is reached through
COUPONS_TEST_POSTGRES_URL; when that is unset and no local server answers, PostgreSQL tests
skip with a loud warning. In CI (`CI` set) a missing server fails the run instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from argon2 import PasswordHasher, Type
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from coupons.adapters import migrate
from coupons.adapters.sql_uow import Database
from coupons.config import Settings
from coupons.entrypoints.http import create_app
from coupons.services import admin, auth, people

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

# Every client and person a test makes gets an argon2 hash, and every sign-in verifies one: at
# the service's cost (64 MiB, 3 passes) that is 0.12 s each, a third of a console test. Tests
# in this process hash at argon2's lowest cost instead; hashing, the stored format, verifying
# and the dummy verify for unknown names run the same code (a verify takes its cost from the
# hash it checks). Servers and commands the tests start as processes keep the real cost, and
# tests/unit/test_password_cost.py holds the service's own hasher to it.
SERVICE_HASHERS = (auth._hasher, people._verifier)
auth._hasher = people._verifier = PasswordHasher(
    time_cost=1, memory_cost=8, parallelism=1, type=Type.ID
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DATA_TABLES = (
    "revocations",
    "revoke_job_lines",
    "revoke_jobs",
    "webhook_deliveries",
    "webhooks",
    "idempotency_keys",
    "redemptions",
    "coupon_history",
    "coupons",
    "customers",
    "coupon_series",
)
PASSWORD = "s3cret-for-tests"
_TABLES = ", ".join(f"'{table}'::regclass" for table in DATA_TABLES)
TABLES_SIZE_SQL = f"SELECT sum(pg_total_relation_size(t)) FROM unnest(ARRAY[{_TABLES}]) AS t"
ID_SEQUENCES_SQL = (
    "SELECT s FROM pg_attribute AS a, LATERAL pg_get_serial_sequence(a.attrelid::regclass::text,"
    f" a.attname) AS s WHERE a.attrelid = ANY(ARRAY[{_TABLES}]) AND a.attnum > 0"
    " AND s IS NOT NULL"
)
DELETE_UP_TO_BYTES = 4 * 2**20


T = TypeVar("T")


def on_own_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`main()` run to its end on a new event loop in a thread of its own: the browser tests'
    driver keeps a loop running on the main thread for the whole session, and `asyncio.run`
    refuses to start there in any test that runs after one of them on the same worker."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=60)


def _postgres_admin_url() -> str | None:
    url = os.environ.get("COUPONS_TEST_POSTGRES_URL")
    candidate = url or DEFAULT_PG
    try:
        engine = create_engine(make_url(candidate).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return candidate
    except Exception as error:
        if url or os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL at {candidate} does not answer: {error}") from error
        warnings.warn(
            "\n\n*** PostgreSQL NOT REACHABLE: every PostgreSQL test is SKIPPED. ***\n"
            "*** Set COUPONS_TEST_POSTGRES_URL to run them. ***\n",
            stacklevel=1,
        )
        return None


@dataclass
class Credentials:
    username: str
    password: str
    org: str

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass
class Backend:
    name: str
    url: str
    db: Database

    def reset(self) -> None:
        """Empty the data tables, keeping orgs and clients (hashing secrets is slow).

        Tried twice: tests that end server processes from outside can leave a pooled
        connection dead, which the first try then finds (and the pool lets go of)."""
        try:
            self._empty()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            self._empty()

    def _empty(self) -> None:
        with self.db.engine.begin() as conn:
            if self.name != "postgresql":
                for table in DATA_TABLES:
                    conn.execute(text(f"DELETE FROM {table}"))
                return
            # TRUNCATE makes every table and index anew: 45-90 ms a test. Deleting the few rows
            # a test leaves and restarting the id sequences takes 6 ms, but leaves dead rows
            # (autovacuum may be off), so once the tables outgrow a few MiB they are truncated.
            if conn.execute(text(TABLES_SIZE_SQL)).scalar_one() > DELETE_UP_TO_BYTES:
                conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
                return
            sequences = conn.execute(text(ID_SEQUENCES_SQL)).scalars().all()
            conn.exec_driver_sql(
                "; ".join(
                    [f"DELETE FROM {table}" for table in DATA_TABLES]
                    + [f"ALTER SEQUENCE {sequence} RESTART" for sequence in sequences]
                )
            )


ORGS = {
    "acme": {"admin": "default,coupon_admin", "agent": "default", "viewer": "read_only"},
    "globex": {"admin": "default,coupon_admin"},
}


def _seed_clients(db: Database) -> None:
    def work(uow):  # type: ignore[no-untyped-def]
        for org, clients in ORGS.items():
            admin.create_org(uow, org)
            for role, groups in clients.items():
                admin.create_client(
                    uow, org=org, username=f"{org}-{role}", password=PASSWORD, groups=groups
                )
        uow.commit()

    db.run(work)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str | None:
    return _postgres_admin_url()


@contextmanager
def sqlite_database(directory: Path) -> Iterator[Backend]:
    """A migrated SQLite database in `directory`, with the test orgs and clients."""
    url = f"sqlite:///{directory / 'coupons.db'}"
    migrate.upgrade(url)
    db = Database.from_url(url)
    _seed_clients(db)
    try:
        yield Backend("sqlite", url, db)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with sqlite_database(Path(tmp_path_factory.mktemp("sqlite"))) as backend:
        yield backend


@contextmanager
def scratch_postgres(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped (connections and all) when the block ends."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_engine = create_engine(
        make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture
def read_only_postgres(postgres_admin_url: str | None) -> Iterator[str]:
    """A migrated scratch PostgreSQL database that takes no writes, as a standby or a primary
    demoted in a failover: its sessions start read-only. Skipped without PostgreSQL."""
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with scratch_postgres(postgres_admin_url, "coupons_read_only") as url:
        migrate.upgrade(url)
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
        with engine.begin() as conn:
            name = make_url(url).database
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        engine.dispose()
        yield url


@contextmanager
def postgresql_database(admin_url: str, prefix: str) -> Iterator[Backend]:
    """A migrated scratch PostgreSQL database, with the test orgs and clients."""
    with scratch_postgres(admin_url, prefix) as url:
        migrate.upgrade(url)
        db = Database.from_url(url)
        _seed_clients(db)
        try:
            yield Backend("postgresql", url, db)
        finally:
            db.dispose()


@pytest.fixture(scope="session")
def postgresql_backend(postgres_admin_url: str | None) -> Iterator[Backend]:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable (see warning above)")
    with postgresql_database(postgres_admin_url, "coupons_test") as backend:
        yield backend


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_url: str | None
) -> Iterator[str]:
    """A database with no schema at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable (see warning above)")
    with scratch_postgres(postgres_admin_url, "coupons_empty") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """A migrated database with orgs and clients, data tables emptied; both backends."""
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    chosen.reset()
    return chosen


_apps: dict[str, object] = {}


@pytest.fixture
def app(backend: Backend):  # type: ignore[no-untyped-def]
    """One app per backend per session (keeps the verified-secret cache warm)."""
    existing = _apps.get(backend.url)
    if existing is None:
        existing = create_app(
            Settings(
                database_url=backend.url, token_secret="test-signing-key-0123456789abcdef0123456789"
            ),
            db=backend.db,
        )
        _apps[backend.url] = existing
    existing.state.authenticator.throttle._failures.clear()  # type: ignore[attr-defined]
    return existing


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, raise_server_exceptions=False)


def creds(org: str, role: str) -> Credentials:
    return Credentials(username=f"{org}-{role}", password=PASSWORD, org=org)


@pytest.fixture
def acme_admin() -> Credentials:
    return creds("acme", "admin")


@pytest.fixture
def acme_agent() -> Credentials:
    return creds("acme", "agent")


@pytest.fixture
def acme_viewer() -> Credentials:
    return creds("acme", "viewer")


@pytest.fixture
def globex_admin() -> Credentials:
    return creds("globex", "admin")


# One `Api` per API client, for every test level (the class lives with the e2e helpers;
# imported inside the fixtures because that module imports this one).
@pytest.fixture
def api(client: TestClient, acme_admin: Credentials) -> Api:
    from tests.e2e.conftest import Api

    return Api(client, acme_admin)


@pytest.fixture
def agent(client: TestClient, acme_agent: Credentials) -> Api:
    from tests.e2e.conftest import Api

    return Api(client, acme_agent)


@pytest.fixture
def viewer(client: TestClient, acme_viewer: Credentials) -> Api:
    from tests.e2e.conftest import Api

    return Api(client, acme_viewer)


@pytest.fixture
def other(client: TestClient, globex_admin: Credentials) -> Api:
    from tests.e2e.conftest import Api

    return Api(client, globex_admin)
