"""`Database.on_loop`: the same store through psycopg's asyncio connections, for use cases
run on the event loop in a greenlet. Its retries must pause without stopping the loop, and a
connection lost under it must be handled as the threaded path handles it."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.util import greenlet_spawn

from coupons.adapters.driver_sql import DriverStatement
from coupons.adapters.sql_uow import Database, SqlUnitOfWork
from coupons.domain import errors
from tests.conftest import Backend, on_own_loop
from tests.integration.test_driver_sql import _backend_pid, _terminate

T = TypeVar("T")


class Deadlock(Exception):
    """What a driver raises when PostgreSQL broke a deadlock: a transient conflict."""

    sqlstate = "40P01"


def loop_db(backend: Backend) -> Database:
    db = backend.db.on_loop
    assert db is not None
    return db


def test_sqlite_has_no_loop_database(sqlite_backend: Backend) -> None:
    assert sqlite_backend.db.on_loop is None
    assert sqlite_backend.db.engines == (sqlite_backend.db.engine,)


def test_a_retried_use_case_lets_the_loop_serve_others_while_it_pauses(
    postgresql_backend: Backend,
) -> None:
    db = loop_db(postgresql_backend)
    ticks = 0
    seen_at: list[int] = []

    def work(uow: SqlUnitOfWork) -> Any:
        # No statement before the first attempt fails: between the two attempts only the
        # retry's pause can hand the loop to the ticker.
        seen_at.append(ticks)
        if len(seen_at) == 1:
            raise OperationalError("SELECT 1", {}, Deadlock())
        return uow.conn.execute(text("SELECT 41 + 1")).scalar_one()

    async def main() -> Any:
        nonlocal ticks
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            return await greenlet_spawn(db.run, work)
        finally:
            done.set()
            await task

    assert on_own_loop(main) == 42
    assert len(seen_at) == 2 and seen_at[1] > seen_at[0]


def test_a_use_case_on_the_loop_sees_its_own_writes_and_rolls_back_on_error(
    postgresql_backend: Backend,
) -> None:
    db = loop_db(postgresql_backend)

    def refused(uow: SqlUnitOfWork) -> None:
        uow.conn.execute(text("CREATE TEMP TABLE scratch (n int)"))
        uow.conn.execute(text("INSERT INTO scratch VALUES (1)"))
        assert uow.conn.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 1
        raise errors.SeriesNotFound()

    def gone(uow: SqlUnitOfWork) -> Any:
        return uow.conn.execute(text("SELECT to_regclass('pg_temp.scratch')")).scalar_one()

    async def main() -> Any:
        with pytest.raises(errors.SeriesNotFound):
            await greenlet_spawn(db.run, refused)
        return await greenlet_spawn(db.run, gone)

    assert on_own_loop(main) is None


def test_a_lost_connection_on_the_loop_is_let_go_and_the_use_case_tried_again(
    postgresql_backend: Backend,
) -> None:
    # given pooled loop connections whose server processes all went away (a restart, say)
    db = loop_db(postgresql_backend)
    statement = DriverStatement(text("SELECT 1"))

    def hold_three() -> list[int]:
        with ExitStack() as held:
            conns = [held.enter_context(db.engine.connect()) for _ in range(3)]
            pids = [_backend_pid(c) for c in conns]
            for conn in conns:
                conn.rollback()
        return pids

    async def main() -> tuple[int, int]:
        _terminate(postgresql_backend, await greenlet_spawn(hold_three))
        # when a use case on the loop sends a driver statement, and then another loses its
        # connection mid-transaction
        attempts: list[str] = []

        def look_up(uow: SqlUnitOfWork) -> int:
            attempts.append("look up")
            return int(statement.rows(uow.conn, {})[0][0])

        def lose_the_first(uow: SqlUnitOfWork) -> int:
            attempts.append("lose")
            if attempts.count("lose") == 1:
                _terminate(postgresql_backend, [_backend_pid(uow.conn)])
            return int(statement.rows(uow.conn, {})[0][0])

        first = await greenlet_spawn(db.run, look_up, write=False)
        second = await greenlet_spawn(db.run, lose_the_first)
        assert attempts == ["look up", "look up", "lose", "lose"]
        return first, second

    # then each is tried once more, on a fresh connection, and answers
    assert on_own_loop(main) == (1, 1)
