"""`coupons serve --demo`: the demo is made once; later runs add nothing, same credentials."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from coupons.adapters import migrate, tables
from coupons.adapters.sql_uow import Database, SqlUnitOfWork
from coupons.services import admin, demo
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


def test_a_renamed_demo_series_is_still_found_and_nothing_is_made_twice(
    database: Database,
) -> None:
    # given a seeded demo whose welcome series was renamed (the API allows it)
    first = database.run(demo.seed)
    with database.engine.begin() as conn:
        conn.execute(
            tables.coupon_series.update()
            .where(tables.coupon_series.c.id == first.series_id)
            .values(description="Welcome, renamed")
        )
    before = row_counts(database)

    # when the demo is seeded again, then it starts: same series, nothing added
    again = database.run(demo.seed)
    assert (again.series_id, again.issued_code) == (first.series_id, first.issued_code)
    assert row_counts(database) == before


def _with_acme(database: Database, add: Callable[[SqlUnitOfWork], object]) -> None:
    """An org of the operator's, ACME, holding what `add` gives it."""

    def work(uow: SqlUnitOfWork) -> None:
        admin.create_org(uow, "ACME")
        add(uow)
        uow.commit()

    database.run(work)


def test_another_orgs_client_named_demo_is_never_taken_over(database: Database) -> None:
    # given an org of the operator's with its own client "demo"
    _with_acme(
        database,
        lambda uow: admin.create_client(
            uow, org="ACME", username="demo", password="acme-secret", groups=["default"]
        ),
    )
    before = row_counts(database)

    # when the demo is seeded, then it refuses, changes nothing, and ACME's secret still works
    with pytest.raises(demo.DemoTaken, match="'demo' belongs to another org"):
        database.run(demo.seed)
    assert row_counts(database) == before
    assert authenticates(database, "demo", "acme-secret")


def test_another_orgs_person_with_the_demo_email_is_never_taken_over(
    database: Database,
) -> None:
    from coupons.services import people
    from coupons.services.common import utcnow

    # given an ACME viewer whose email is the demo person's
    _with_acme(
        database,
        lambda uow: people.create_person(
            uow,
            org="ACME",
            email=people.DEMO_EMAIL,
            role="viewer",
            password="acme-viewer-pw",
            now=utcnow(),
        ),
    )
    before = row_counts(database)

    # when the demo is seeded, then it refuses before making anything
    with pytest.raises(demo.DemoTaken, match="belongs to another org"):
        database.run(demo.seed)
    assert row_counts(database) == before
    # and the person's own step refuses too, and the viewer stays a viewer
    with pytest.raises(demo.DemoTaken, match="belongs to another org"):
        database.run(lambda uow: people.ensure_demo_person(uow, utcnow()))
    found = database.run(lambda uow: uow.users.by_email(people.DEMO_EMAIL), write=False)
    assert found is not None and found.role.value == "viewer"


def test_two_first_runs_at_once_both_start_and_make_the_demo_once(
    database: Database, empty_database_url: str
) -> None:
    # given two hosts starting on one new database together
    import threading

    other = Database.from_url(empty_database_url, pool_size=2)
    barrier = threading.Barrier(2)
    found: list[demo.DemoData] = []
    failed: list[BaseException] = []

    def start(db: Database) -> None:
        barrier.wait()
        try:
            found.append(db.run(demo.seed, retry_integrity=True))
        except BaseException as error:
            failed.append(error)

    threads = [threading.Thread(target=start, args=(db,)) for db in (database, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other.dispose()

    # then both print the same working credentials, and the demo exists once
    assert failed == [] and len(found) == 2
    assert found[0].secret == found[1].secret
    assert sorted(d.created for d in found) == [False, True]
    assert row_counts(database)["coupon_series"] == 2
