"""CSV exports: injection neutralised, RFC 4180 quoting, and a parser reads back every cell."""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.entrypoints.http import csv_export
from coupons.entrypoints.spreadsheet import FORMULA_STARTS, neutralise, restore

# Any text a user could type, and text built to start like a formula.
any_text = st.text(max_size=40)
formula_like = st.builds(
    lambda space, s, rest: space + s + rest,
    st.sampled_from(["", " ", "  ", "\n", "\u00a0", "\ufeff", "\u200b", " \u200e"]),
    st.sampled_from(FORMULA_STARTS),
    any_text,
)
cell_text = st.one_of(any_text, formula_like)
row = st.lists(
    st.one_of(cell_text, st.integers(min_value=0, max_value=2**62)), min_size=1, max_size=6
)


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        # importers that trim cells would run these: leading whitespace hides no formula
        (" =1+1", "' =1+1"),
        ("  @SUM(1)", "'  @SUM(1)"),
        ("\n=1+1", "'\n=1+1"),
        ("\u00a0-1", "'\u00a0-1"),
        # behind invisible format characters, which an importer may drop too
        ("\ufeff=5+5", "'\ufeff=5+5"),
        ("\u200b@SUM(1)", "'\u200b@SUM(1)"),
        ("' =1", "'' =1"),
        (" plain text", " plain text"),
        ("SPRING-001", "SPRING-001"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_starting_like_a_formula_get_a_quote_and_others_are_kept(
    value: str, written: str
) -> None:
    assert neutralise(value) == written


def test_quotes_commas_and_line_breaks_are_quoted_per_rfc_4180() -> None:
    data = csv_export.encode_rows([["a,b", 'say "hi"', "two\nlines", 7, None]])

    assert data == b'"a,b","say ""hi""","two\nlines",7,\r\n'


def test_times_are_written_in_the_api_format_and_numbers_unchanged() -> None:
    at = datetime(2026, 11, 26, 4, 17, 33, 512044, tzinfo=UTC)

    assert parse(csv_export.encode_rows([[at, -5, 1.5]])) == [
        ["2026-11-26T04:17:33.512044Z", "-5", "1.5"]
    ]


def test_the_stream_is_a_header_then_one_chunk_per_non_empty_page() -> None:
    chunks = list(csv_export.stream(["code", "n"], [[["A", 1]], [], [["=B", 2], ["C", 3]]]))

    assert len(chunks) == 3
    assert parse(b"".join(chunks)) == [["code", "n"], ["A", "1"], ["'=B", "2"], ["C", "3"]]


@given(cell_text)
def test_no_written_text_cell_starts_like_a_formula(text: str) -> None:
    # not at its first character, nor after the whitespace or invisible format characters
    # an importer may drop
    shown = "".join(c for c in neutralise(text) if unicodedata.category(c) != "Cf")
    assert not shown.lstrip().startswith(FORMULA_STARTS)


@given(st.one_of(cell_text, st.builds(lambda q, t: "'" * q + t, st.integers(1, 3), cell_text)))
def test_restore_gives_back_exactly_the_text_of_every_cell(text: str) -> None:
    # any text, including one that already starts with quotes before a formula character
    written = neutralise(text)
    assert written == text or written == "'" + text
    assert restore(written) == text


def test_a_value_that_looks_escaped_already_is_escaped_once_more() -> None:
    # "=X" and "'=X" were both written "'=X", and read back alike
    values = ["=X", "'=X", "''-1", "'plain"]
    assert [neutralise(v) for v in values] == ["'" + v for v in values[:3]] + ["'plain"]
    assert [restore(neutralise(v)) for v in values] == values


@given(st.lists(row, min_size=1, max_size=5))
def test_a_csv_parser_reads_back_exactly_the_neutralised_cells(rows: list[list[str | int]]) -> None:
    data = csv_export.encode_rows(rows)

    parsed = parse(data)

    assert parsed == [[neutralise(v) if isinstance(v, str) else str(v) for v in r] for r in rows]
