"""`coupons serve --demo`: the demo is made once; later runs add nothing, same credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from coupons.adapters import migrate, tables
from coupons.adapters.sql_uow import Database
from coupons.services import demo
from coupons.services.auth import Authenticator, FailureThrottle

COUNTED = (
    tables.orgs,
    tables.api_clients,
    tables.customers,
    tables.coupon_series,
    tables.coupons,
    tables.coupon_history,
    tables.service_keys,
)


@pytest.fixture
def database(empty_database_url: str) -> Iterator[Database]:
    migrate.upgrade(empty_database_url)
    db = Database.from_url(empty_database_url, pool_size=2)
    yield db
    db.dispose()


def row_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0) for t in COUNTED}


def authenticates(db: Database, username: str, secret: str) -> bool:
    auth = Authenticator(
        db, token_secret=None, token_ttl_seconds=60, throttle=FailureThrottle(9, 60)
    )
    try:
        auth.check_secret(username, secret, "127.0.0.1")
    except Exception:
        return False
    return True


def test_the_first_run_seeds_what_the_readme_uses(database: Database) -> None:
    # when the demo is seeded into an empty database
    data = database.run(demo.seed)

    # then it made the org, client, two series, three customers and the issued coupons
    assert data.created and data.username == "demo" and data.issued_code == "WELCOME-A1"
    counts = row_counts(database)
    pool = sum(map(len, demo.ISSUED_CODES.values())) + len(demo.POOL_CODES)
    assert counts["coupons"] == pool + len(demo.GENERIC_HOLDERS)
    assert (counts["customers"], counts["coupon_series"], counts["api_clients"]) == (3, 2, 1)
    with database.engine.connect() as conn:
        ids = conn.execute(
            select(tables.customers.c.external_id).order_by(tables.customers.c.id)
        ).scalars()
        assert list(ids) == ["CRM-0001", "000003873472", "CRM-0003"]
    # and the printed credentials work
    assert authenticates(database, data.username, data.secret)


def test_a_second_run_adds_nothing_and_prints_the_same_credentials(database: Database) -> None:
    # given a seeded demo
    first = database.run(demo.seed)
    before = row_counts(database)

    # when it is seeded again
    second = database.run(demo.seed)

    # then nothing was added, and the same secret is printed and still works
    assert not second.created
    assert row_counts(database) == before
    assert second.secret == first.secret and second.issued_code == first.issued_code
    assert authenticates(database, second.username, second.secret)


def test_a_reset_or_disabled_demo_client_works_again_after_the_next_run(
    database: Database,
) -> None:
    # given a seeded demo whose client was disabled and given another secret
    first = database.run(demo.seed)

    def break_client(uow: object) -> None:
        uow.clients.update_client("demo", secret_hash="not-a-hash", is_active=False)  # type: ignore[attr-defined]
        uow.commit()  # type: ignore[attr-defined]

    database.run(break_client)
    assert not authenticates(database, "demo", first.secret)

    # when the demo is seeded again, then the printed credentials work again
    again = database.run(demo.seed)
    assert again.secret == first.secret
    assert authenticates(database, "demo", again.secret)
