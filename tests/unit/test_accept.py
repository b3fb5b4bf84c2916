"""Choosing between a list's CSV export and its JSON envelope by the `Accept` header."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coupons.entrypoints.http.finding_routes import prefers_csv

QUALITIES = st.integers(min_value=0, max_value=1000).map(lambda n: n / 1000)
OTHER_TYPES = st.sampled_from(["text/html", "image/png", "application/xml", "text/plain"])


def q(value: float) -> str:
    return f"q={value:.3f}"


@given(st.text())
def test_any_header_is_read_without_failing(header: str) -> None:
    assert prefers_csv(header) in (True, False)


@given(st.lists(OTHER_TYPES | st.just("*/*") | st.just("application/json")))
def test_without_text_csv_the_envelope_is_chosen(types: list[str]) -> None:
    assert not prefers_csv(", ".join(types))


@given(QUALITIES, QUALITIES, st.booleans())
def test_named_json_wins_unless_csv_is_strictly_preferred(
    csv_q: float, json_q: float, json_first: bool
) -> None:
    parts = [f"text/csv;{q(csv_q)}", f"application/json;{q(json_q)}"]
    header = ", ".join(reversed(parts) if json_first else parts)

    assert prefers_csv(header) == (csv_q > 0 and csv_q > json_q)


@given(QUALITIES, QUALITIES, st.sampled_from(["*/*", "application/*"]))
def test_a_wildcard_loses_to_csv_on_a_tie(csv_q: float, wild_q: float, wildcard: str) -> None:
    header = f"{wildcard};{q(wild_q)}, text/csv;{q(csv_q)}"

    assert prefers_csv(header) == (csv_q > 0 and csv_q >= wild_q)


def test_names_are_case_blind_and_odd_qualities_read_safely() -> None:
    assert prefers_csv("TEXT/CSV")
    assert prefers_csv("text/csv; Q=1")
    assert prefers_csv("text/csv;q=abc")  # not a number: as if absent
    assert not prefers_csv("text/csv;q=-1")
    assert not prefers_csv("text/csv;q=nan")
    assert prefers_csv("text/csv;q=7, application/json;q=0.9")  # capped at 1
