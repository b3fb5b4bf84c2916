"""Statements sent straight to the driver (sqlite3, psycopg) answer exactly as SQLAlchemy's
execution would: the same rows with the same Python types, the same row counts, the same
errors, and every statement still seen by the engine's cursor listeners. A PostgreSQL
connection found gone is invalidated, as SQLAlchemy would, and the next request reconnects."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, bindparam, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from coupons.adapters.db import create_db_engine
from coupons.adapters.driver_sql import DriverStatement, compile_for_driver
from coupons.adapters.sql_uow import Database
from coupons.adapters.tables import coupon_series, coupons, orgs
from coupons.services.common import utcnow
from tests.conftest import Backend
from tests.e2e.conftest import Api

SERIES = select(coupon_series).where(
    coupon_series.c.id == bindparam("series_id"), coupon_series.c.org_id == bindparam("org_id")
)


def _org_of(backend: Backend, series_id: int) -> int:
    return int(
        backend.db.run(
            lambda uow: uow.conn.execute(
                select(coupon_series.c.org_id).where(coupon_series.c.id == series_id)
            ).scalar_one()
        )
    )


def test_rows_come_back_as_sqlalchemy_reads_them_types_included(api: Api, backend: Backend) -> None:
    # given a series (timestamps, a decimal, enums as text, nulls)
    series_id = api.series(codes=["DRV-1"])
    params = {"series_id": series_id, "org_id": _org_of(backend, series_id)}

    # when it is read both ways, in one transaction
    def both(uow: Any) -> tuple[list[Any], list[Any]]:
        direct = DriverStatement(SERIES).rows(uow.conn, params)
        through = uow.conn.execute(SERIES, params).all()
        return [tuple(r) for r in direct], [tuple(r) for r in through]

    direct, through = backend.db.run(both, write=False)

    # then the values are equal and of the same types
    assert direct == through and len(direct) == 1
    assert [type(v) for v in direct[0]] == [type(v) for v in through[0]]


def test_objects_are_built_once_per_unchanged_row_and_again_when_it_changes(
    api: Api, backend: Backend
) -> None:
    # given a series, read as built objects through a statement that counts its builds
    series_id = api.series(codes=["DRV-M"])
    params = {"series_id": series_id, "org_id": _org_of(backend, series_id)}
    statement = DriverStatement(SERIES)
    built: list[tuple[Any, ...]] = []

    def build(values: Any) -> tuple[Any, ...]:
        built.append(tuple(values))
        return tuple(values)

    def read() -> list[tuple[Any, ...]]:
        return backend.db.run(lambda uow: statement.objects(uow.conn, params, build), write=False)

    # when it is read twice, then its description is changed and it is read again
    first, second = read(), read()
    rows = backend.db.run(lambda uow: statement.rows(uow.conn, params), write=False)

    def rename(uow: Any) -> None:
        uow.conn.execute(
            update(coupon_series)
            .where(coupon_series.c.id == series_id)
            .values(description="renamed")
        )
        uow.commit()

    backend.db.run(rename)
    third = read()

    # then the unchanged row was built once and its object reused, with the values `rows`
    # gives; the changed row was built anew
    assert first[0] is second[0]
    assert [tuple(r) for r in rows] == [first[0]]
    assert len(built) == 2
    assert third[0] != first[0] and "renamed" in third[0]


def test_a_statements_own_values_and_bound_timestamps_are_sent(api: Api, backend: Backend) -> None:
    # given two coupons, and an UPDATE carrying a value of its own and a timestamp parameter
    series_id = api.series(codes=["DRV-A", "DRV-B"])
    now = utcnow()
    statement = DriverStatement(
        update(coupons)
        .where(coupons.c.series_id == bindparam("in_series"))
        .values(pin="fixed-pin", updated_at=bindparam("now", type_=coupons.c.updated_at.type))
    )

    # when it runs
    def change(uow: Any) -> int:
        count = statement.rowcount(uow.conn, {"in_series": series_id, "now": now})
        uow.commit()
        return count

    changed = backend.db.run(change)

    # then it reports both rows, and both hold the value and the timestamp
    assert changed == 2
    rows = backend.db.run(
        lambda uow: uow.conn.execute(
            select(coupons.c.pin, coupons.c.updated_at).where(coupons.c.series_id == series_id)
        ).all(),
        write=False,
    )
    assert [tuple(r) for r in rows] == [("fixed-pin", now), ("fixed-pin", now)]


def test_cursor_listeners_see_each_statement_with_its_values(api: Api, backend: Backend) -> None:
    series_id = api.series(codes=["DRV-L"])
    params = {"series_id": series_id, "org_id": _org_of(backend, series_id)}
    seen: list[tuple[str, Any]] = []
    after: list[str] = []

    def before(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        seen.append((statement, parameters))

    def done(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        after.append(statement)

    event.listen(backend.db.engine, "before_cursor_execute", before)
    event.listen(backend.db.engine, "after_cursor_execute", done)
    try:
        backend.db.run(lambda uow: DriverStatement(SERIES).rows(uow.conn, params), write=False)
    finally:
        event.remove(backend.db.engine, "before_cursor_execute", before)
        event.remove(backend.db.engine, "after_cursor_execute", done)

    lookups = [(s, p) for s, p in seen if "FROM coupon_series" in s]
    assert len(lookups) == 1
    statement, values = lookups[0]
    assert [s for s in after if "FROM coupon_series" in s] == [statement]
    if backend.name == "sqlite":
        assert values == (series_id, params["org_id"])
    else:
        assert values["series_id"] == series_id


def test_a_driver_error_is_raised_as_sqlalchemys(backend: Backend) -> None:
    # given an org, and an INSERT of a second org under the same name
    now = utcnow()
    statement = DriverStatement(
        insert(orgs).values(name=bindparam("name"), created_at=bindparam("at"))
    )

    def add_twice(uow: Any) -> None:
        statement.rowcount(uow.conn, {"name": "twice", "at": now})
        statement.rowcount(uow.conn, {"name": "twice", "at": now})

    # then the unique violation is SQLAlchemy's IntegrityError, and nothing was kept
    with pytest.raises(IntegrityError):
        backend.db.run(add_twice)
    kept = backend.db.run(
        lambda uow: uow.conn.execute(select(orgs.c.id).where(orgs.c.name == "twice")).all(),
        write=False,
    )
    assert kept == []


def test_an_error_of_the_database_is_the_one_sqlalchemy_raises(backend: Backend) -> None:
    # (SQLite's "database is locked" is an OperationalError: the retries look for that class)
    missing = text("SELECT * FROM no_such_table")
    raised: list[type[BaseException]] = []
    for send in (
        lambda uow: DriverStatement(missing).rows(uow.conn, {}),
        lambda uow: uow.conn.execute(missing).all(),
    ):
        with pytest.raises(DBAPIError) as caught:
            backend.db.run(send, write=False)
        raised.append(type(caught.value))
    assert raised[0] is raised[1]
    if backend.name == "sqlite":
        assert raised[0] is OperationalError


def test_statements_whose_sql_changes_with_their_values_are_refused(backend: Backend) -> None:
    listed = select(coupons.c.id).where(coupons.c.id.in_(bindparam("ids", expanding=True)))

    def compile_it(uow: Any) -> None:
        conn: Connection = uow.conn
        compile_for_driver(listed, conn.dialect)

    with pytest.raises(ValueError, match="expanding"):
        backend.db.run(compile_it, write=False)


def _series_lookup(api: Api, backend: Backend, code: str) -> dict[str, Any]:
    """A PostgreSQL series of one code, and the values its driver-sent lookup takes."""
    if backend.name != "postgresql":
        pytest.skip("SQLite has no connection to lose")
    series_id = api.series(codes=[code])
    return {"series_id": series_id, "org_id": _org_of(backend, series_id)}


def _terminate(backend: Backend, pids: list[int]) -> None:
    """End those server processes from outside, as a restart or a network cut would."""
    with psycopg.connect(backend.url.replace("postgresql+psycopg", "postgresql")) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _backend_pid(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_lost_postgresql_connection_is_invalidated_and_the_request_tried_again(
    api: Api, backend: Backend
) -> None:
    params = _series_lookup(api, backend, "DRV-GONE")
    statement = DriverStatement(SERIES)

    def terminate(conn: Connection) -> None:
        _terminate(backend, [_backend_pid(conn)])

    # given a transaction whose server process was terminated from outside
    with backend.db.engine.connect() as conn:
        transaction = conn.begin()
        terminate(conn)
        # when its next statement goes to the driver, then the error is SQLAlchemy's, says
        # the connection was lost, and the connection is let go
        with pytest.raises(DBAPIError) as caught:
            statement.rows(conn, params)
        assert caught.value.connection_invalidated and conn.invalidated
        transaction.rollback()

    # and a unit of work that loses its connection that way is run again on a fresh one
    attempts: list[int] = []

    def lose_the_first(uow: Any) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            terminate(uow.conn)
        return len(statement.rows(uow.conn, params))

    assert backend.db.run(lose_the_first, write=False) == 1
    assert len(attempts) == 2


def test_after_one_lost_connection_the_pools_other_dead_connections_are_not_handed_out(
    api: Api, backend: Backend
) -> None:
    params = _series_lookup(api, backend, "DRV-POOL")
    statement = DriverStatement(SERIES)

    # given three pooled connections whose server processes all went away (a restart, say)
    with ExitStack() as held:
        conns = [held.enter_context(backend.db.engine.connect()) for _ in range(3)]
        pids = [_backend_pid(c) for c in conns]
        for conn in conns:
            conn.rollback()
    _terminate(backend, pids)

    # when a unit of work sends a driver statement
    attempts: list[int] = []

    def look_up(uow: Any) -> int:
        attempts.append(1)
        return len(statement.rows(uow.conn, params))

    # then the first dead connection costs one retry, and the retry gets a fresh connection,
    # not the next dead one (which would fail it for good: the store tries a lost one twice)
    assert backend.db.run(look_up, write=False) == 1
    assert len(attempts) == 2


def test_a_write_that_finds_sqlite_locked_by_another_writer_is_retried(tmp_path: Path) -> None:
    # given a SQLite file whose write lock another program holds for a moment (not through
    # the service's write gate), and a store that waits 20 ms for it before giving up
    path = tmp_path / "locked.db"
    outside = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    outside.execute("PRAGMA journal_mode=WAL")
    outside.execute("BEGIN IMMEDIATE")
    db = Database(create_db_engine(f"sqlite:///{path}", busy_timeout_ms=20))
    begins: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    release = threading.Timer(0.15, lambda: outside.execute("COMMIT"))
    release.start()
    try:
        # when a write runs: its `BEGIN IMMEDIATE` goes to the driver and finds the file locked
        answer = db.run(lambda uow: DriverStatement(text("SELECT 7")).rows(uow.conn, {})[0][0])
    finally:
        release.join()
        outside.close()
        db.dispose()

    # then "database is locked" came back as the error the retries know, and a later attempt
    # got through
    assert answer == 7
    assert len(begins) >= 2 and set(begins) == {"BEGIN IMMEDIATE"}
