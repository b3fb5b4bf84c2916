"""Which driver errors are an outage to wait out (9023), and which a refusal to say at once."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from coupons.adapters.sql_uow import is_unavailable


def _failed(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, psycopg.OperationalError(message))


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: FATAL:  password authentication failed for user "bob"',
        'connection failed: FATAL:  database "nowhere" does not exist',
        'connection failed: FATAL:  pg_hba.conf rejects connection for host "127.0.0.1"',
        "connection failed: server does not support SSL, but SSL was required",
    ],
)
def test_a_server_that_answered_no_is_a_refusal_not_an_outage(message: str) -> None:
    # a start-up wait on these waited a minute, then blamed a failover
    assert not is_unavailable(_failed(message))


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        "Connection refused",
        "consuming input failed: SSL SYSCALL error: EOF detected",
        "server closed the connection unexpectedly",
    ],
)
def test_a_server_gone_or_going_is_an_outage(message: str) -> None:
    assert is_unavailable(_failed(message))
