"""Revoke issues a fixed number of SQL statements, however many codes a request names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import Backend
from tests.e2e.conftest import Api


@pytest.fixture(autouse=True)
def client_row_stays_cached(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API client row is cached for about a second: whether a call reads it (and, on
    SQLite, opens a read transaction for that) would depend on the clock, not the batch."""
    monkeypatch.setattr(app.state.authenticator, "client_cache_seconds", 3600.0)


@contextmanager
def counted_statements(backend: Backend) -> Iterator[list[str]]:
    """Collect the statements the block's requests send to the backend's engine."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    for engine in backend.db.engines:  # PostgreSQL revokes go through the loop's
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in backend.db.engines:
            event.remove(engine, "before_cursor_execute", count)


def statements_for(backend: Backend, call: Callable[[], Any]) -> int:
    with counted_statements(backend) as statements:
        call()
    return len(statements)


def revoke_codes(api: Api, count: int, **extra: Any) -> Callable[[], Any]:
    codes = [f"N{count}-{i:02}" for i in range(count)]
    series_id = api.series(codes=codes)
    body = {"couponSeriesId": series_id, "couponCodes": codes, **extra}
    return lambda: api.ok(api.revoke(body))


@pytest.mark.parametrize("with_customer", [False, True], ids=["codes", "codes-for-customer"])
def test_revoking_1_10_or_50_codes_costs_the_same_number_of_statements(
    api: Api, backend: Backend, with_customer: bool
) -> None:
    # Given three series of 1, 10 and 50 codes (issued to one customer when one is named)
    customer_id = api.customer("555-0101")
    calls = {}
    for size in (1, 10, 50):
        codes = [f"N{size}-{i:02}" for i in range(size)]
        series_id = api.series(codes=codes)
        body: dict[str, Any] = {"couponSeriesId": series_id, "couponCodes": codes}
        if with_customer:
            api.issue_many(series_id, customer_id, size)
            body["customer"] = {"id": customer_id}
        calls[size] = lambda body=body: api.ok(api.revoke(body))
    api.ok(api.revoke({"couponCodes": ["WARM-UP"]}))

    # When each is revoked in one call, counting statements
    counts = {size: statements_for(backend, call) for size, call in calls.items()}

    # Then the count does not grow with the batch
    assert counts[1] == counts[10] == counts[50], counts
    assert counts[50] <= 12, counts


def test_customer_mode_costs_the_same_for_1_10_or_100_coupons(api: Api, backend: Backend) -> None:
    calls = {}
    for size in (1, 10, 100):
        series_id = api.series()
        customer_id = api.customer(f"555-0{size:03}")
        api.issue_many(series_id, customer_id, size)
        calls[size] = lambda c=customer_id: api.ok(api.revoke({"customer": {"id": c}}))
    api.ok(api.revoke({"couponCodes": ["WARM-UP"]}))

    counts = {size: statements_for(backend, call) for size, call in calls.items()}

    assert counts[1] == counts[10] == counts[100], counts


def test_the_statement_counter_sees_the_revoke_statements(api: Api, backend: Backend) -> None:
    # Guards the tests above against counting nothing at all.
    call = revoke_codes(api, 3)

    with counted_statements(backend) as statements:
        call()

    assert any("UPDATE coupons" in s for s in statements)
    assert any("INSERT INTO coupon_history" in s for s in statements)
