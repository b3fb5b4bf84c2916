"""Lists sent as one array parameter: JSON text reads back exactly in SQLite, and the revoke
path's statements keep one text whatever the number of values, on both stores."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event

from coupons.adapters.sql_uow import SqlUnitOfWork
from coupons.adapters.sqlite_arrays import json_array
from coupons.services.common import utcnow
from tests.conftest import Backend

# Any text a code can hold (no NUL), with JSON's own characters made likely.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('[]{}",\\/ \t\nnull\u2028')),
        st.characters(codec="utf-8", exclude_characters="\x00"),
    ),
    max_size=20,
)
_DB = sqlite3.connect(":memory:", check_same_thread=False)


@given(st.lists(st.one_of(st.none(), TEXT), max_size=8))
def test_a_json_text_array_reads_back_as_the_same_strings(values: list[str | None]) -> None:
    rows = _DB.execute("SELECT value FROM json_each(?) ORDER BY key", [json_array(values)])
    assert [row[0] for row in rows] == values


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8))
def test_a_json_int_array_reads_back_as_the_same_numbers(values: list[int]) -> None:
    rows = _DB.execute("SELECT value FROM json_each(?) ORDER BY key", [json_array(values)])
    assert [row[0] for row in rows] == values


def test_a_code_with_a_lone_surrogate_matches_nothing_instead_of_failing() -> None:
    rows = _DB.execute("SELECT count(*) FROM json_each(?)", [json_array(["\ud800", "A"])])
    assert rows.fetchone() == (2,)


def _statements(backend: Backend, work: Any) -> list[str]:
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(backend.db.engine, "before_cursor_execute", listener)
    try:
        backend.db.run(work, write=False)
    finally:
        event.remove(backend.db.engine, "before_cursor_execute", listener)
    return [s for s in seen if not s.startswith(("BEGIN", "SET"))]


def test_the_lookup_and_the_update_are_one_statement_for_one_code_or_fifty(
    backend: Backend,
) -> None:
    def with_values(count: int) -> list[str]:
        def work(uow: SqlUnitOfWork) -> None:
            uow.coupons.coupons_by_codes(1, [f"C{i}" for i in range(count)], series_id=1, lock=True)
            uow.coupons.mark_revoked(list(range(1, count + 1)), utcnow())

        return _statements(backend, work)

    one, fifty = with_values(1), with_values(50)
    assert len(one) == 2 and one == fifty
