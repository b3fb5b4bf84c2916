"""A statement the server does not answer is cut after `stall_timeout` (spec §10: a network cut
fails requests with 9023 instead of hanging them); a slow but answering server, or a
transaction that waits on its caller, is left alone."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from coupons.adapters.db import STALL_TIMEOUT_SECONDS, create_db_engine, stall_timeout
from coupons.adapters.stall_watch import WATCH, StallWatch, ms_since_data


@pytest.fixture
def watched(postgres_admin_url: str | None) -> Iterator[Engine]:
    """An engine on the shared server whose statements may go 1 s without an answer."""
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    engine = create_db_engine(f"{postgres_admin_url}?stall_timeout=1", pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_statement_with_no_answer_past_the_limit_fails_as_a_lost_connection(
    watched: Engine,
) -> None:
    # given a statement that keeps the server silent for 20 s
    started = time.monotonic()
    with pytest.raises(DBAPIError) as raised, watched.connect() as conn:
        conn.execute(text("SELECT pg_sleep(20)"))
    # then it fails within a second or so of the limit, as a lost connection
    assert time.monotonic() - started < 4
    assert raised.value.connection_invalidated
    # and the pool hands out a working connection afterwards
    with watched.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_a_slow_answer_within_the_limit_and_an_idle_transaction_are_left_alone(
    watched: Engine,
) -> None:
    with watched.connect() as conn:
        # a statement answering in 0.6 s, under the 1 s limit
        assert conn.execute(text("SELECT pg_sleep(0.6), 7")).one()[1] == 7
        # a transaction waiting on its caller (a slow export reader, say) for twice the limit
        conn.execute(text("SELECT 1"))
        time.sleep(2.2)
        # is still there: its next statement runs in the same transaction
        assert conn.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar()
        conn.commit()


def test_a_statement_after_a_quiet_spell_is_timed_from_its_own_start(watched: Engine) -> None:
    # given a connection that sat in the pool, receiving nothing, for twice the limit (a
    # quiet night), as PgBouncer queues its next statement behind busy ones
    with watched.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT 1"))
        time.sleep(2.2)

        # when that statement (no BEGIN before it, whose answer would end the quiet) takes
        # 0.8 s to answer: the socket's quiet time, counted from the last answer before the
        # spell, was past the limit at the first look, and the healthy connection was cut
        answer = conn.execute(text("SELECT pg_sleep(0.8), 5")).one()

        # then it answers
        assert answer[1] == 5


def test_a_statement_marked_patient_may_run_silent_past_the_limit(watched: Engine) -> None:
    # given a statement known to run long (staging a large series as a job's lines)
    with watched.connect() as conn:
        with WATCH.patient(conn.connection.driver_connection):
            # then it may go twice the limit without an answer
            assert conn.execute(text("SELECT pg_sleep(2.2), 3")).one()[1] == 3
        # and the next one is watched again
        with pytest.raises(DBAPIError):
            conn.execute(text("SELECT pg_sleep(20)"))


def test_the_limit_is_read_from_the_url_and_bad_values_are_refused() -> None:
    base = "postgresql+psycopg://u@h/db"
    assert stall_timeout(make_url(base)) == STALL_TIMEOUT_SECONDS == 15
    assert stall_timeout(make_url(f"{base}?stall_timeout=2.5")) == 2.5
    assert stall_timeout(make_url(f"{base}?stall_timeout=none")) is None
    for bad in ("0", "-1", "soon", "nan", "inf", "90000"):
        with pytest.raises(ValueError, match="stall_timeout"):
            stall_timeout(make_url(f"{base}?stall_timeout={bad}"))
    # and a bad value stops the engine from being made at all
    with pytest.raises(ValueError, match="stall_timeout"):
        create_db_engine("postgresql://u@127.0.0.1:1/db?stall_timeout=soon")


def test_quiet_time_is_read_from_a_tcp_socket_and_not_from_a_unix_one() -> None:
    # given a TCP connection on which nothing arrives
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        time.sleep(0.3)
        quiet = ms_since_data(client.fileno())
        assert quiet is not None and quiet >= 250
        # when a byte arrives the quiet time starts over
        server.sendall(b"x")
        time.sleep(0.05)
        assert client.recv(1) == b"x"
        again = ms_since_data(client.fileno())
        assert again is not None and again < 200
    finally:
        for sock in (client, server, listener):
            sock.close()
    left, right = socket.socketpair()
    try:
        assert ms_since_data(left.fileno()) is None
    finally:
        left.close()
        right.close()


def test_the_watch_never_cuts_a_connection_the_pool_has_closed(
    postgres_admin_url: str | None,
) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    # given a watch of its own over an engine whose only connection is closed and reopened
    watch = StallWatch(scan_seconds=3600)  # scanned by hand below
    engine = create_db_engine(f"{postgres_admin_url}?stall_timeout=none", pool_size=1)
    watch.watch(engine, 0.2)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()  # closes it: the watch forgets it
        done = threading.Event()

        def sleeper() -> None:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT pg_sleep(1.5)"))
            except DBAPIError:
                done.set()

        thread = threading.Thread(target=sleeper)
        thread.start()
        time.sleep(0.3)
        assert watch.scan() == 0  # first seen in flight: timed from here
        time.sleep(0.4)
        # then a scan cuts the one statement in flight, and only that one
        assert watch.scan() == 1
        thread.join(5)
        assert done.is_set()
        assert watch.scan() == 0
    finally:
        engine.dispose()
