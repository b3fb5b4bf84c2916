"""The array literals the revoke path sends read back exactly in PostgreSQL, whatever the text."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from coupons.adapters.pg_arrays import int_array, text_array

# Any text PostgreSQL can hold (no NUL), with the array syntax's own characters made likely.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("{}\",\\ \t\nNULLnull'")),
        st.characters(codec="utf-8", exclude_characters="\x00"),
    ),
    max_size=20,
)


@pytest.fixture(scope="module")
def pg(postgres_admin_url: str | None) -> Iterator[psycopg.Connection]:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    url = make_url(postgres_admin_url)
    with psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
        password=url.password, autocommit=True,
    ) as conn:  # fmt: skip
        yield conn


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), TEXT), max_size=8))
def test_a_text_array_reads_back_as_the_same_strings(
    pg: psycopg.Connection, values: list[str | None]
) -> None:
    row = pg.execute("SELECT CAST(%s AS text[])", [text_array(values)]).fetchone()
    assert row is not None and row[0] == values


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8))
def test_an_int_array_reads_back_as_the_same_numbers(
    pg: psycopg.Connection, values: list[int]
) -> None:
    row = pg.execute("SELECT CAST(%s AS bigint[])", [int_array(values)]).fetchone()
    assert row is not None and row[0] == values
