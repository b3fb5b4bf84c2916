"""The codes-file parser of revoke jobs: formats, line numbers, limits, streaming."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.domain import errors
from coupons.domain.codes_file import BOM, LONE_CR, CodesFormat, FileCode, parse_codes
from coupons.entrypoints.bulk_revoke.codes_file import CodesFileError, read_codes

# Codes: any printable text without line breaks, quotes or commas, up to the 100-char limit.
code_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='",\x85'
    ),
    min_size=1,
    max_size=100,
).filter(lambda c: c.strip() == c and c != "")
blank = st.sampled_from(["", " ", "\t", "  \t "])
line_items = st.lists(st.one_of(code_text, blank), max_size=40)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """Split `data` at arbitrary points, as a network delivers it."""
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])
    return pieces


def parse(data: bytes, fmt: CodesFormat, sizes: list[int] | None = None) -> list[FileCode]:
    return list(parse_codes(chunked(data, sizes or []), fmt))


# --- properties ------------------------------------------------------------------------------


@given(
    items=line_items,
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    sizes=st.lists(st.integers(1, 7), max_size=30),
)
def test_a_text_file_yields_each_non_blank_trimmed_line_with_its_number_however_it_arrives(
    items: list[str], newline: str, bom: bool, sizes: list[int]
) -> None:
    # given a text file of codes and blank lines, codes padded with spaces
    data = (BOM if bom else b"") + newline.join(f"  {i} " for i in items).encode()
    # when it arrives in arbitrary pieces
    found = parse(data, CodesFormat.TEXT, sizes)
    # then every non-blank line is one code, trimmed, numbered from 1 by physical line
    expected = [FileCode(n, i.strip()) for n, i in enumerate(items, 1) if i.strip()]
    assert found == expected


@given(
    items=line_items,
    before=st.integers(0, 3),
    after=st.integers(0, 3),
    sizes=st.lists(st.integers(1, 11), max_size=30),
)
def test_a_csv_file_yields_the_code_column_whatever_the_other_columns(
    items: list[str], before: int, after: int, sizes: list[int]
) -> None:
    # given a CSV with the code column among others
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f"x{i}" for i in range(before)] + ["Code"] + [f"y{i}" for i in range(after)])
    for item in items:
        writer.writerow(["a,b" for _ in range(before)] + [item] + ['q"z' for _ in range(after)])
    # when parsed in pieces
    found = parse(out.getvalue().encode(), CodesFormat.CSV, sizes)
    # then codes come in order, numbered by their line (the header is line 1)
    expected = [FileCode(n, i.strip()) for n, i in enumerate(items, 2) if i.strip()]
    assert found == expected


def test_a_csv_with_two_code_columns_is_refused_rather_than_half_read() -> None:
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(b"code, Code \nA-1,B-1\n", CodesFormat.CSV)
    assert (caught.value.line, caught.value.problem) == (
        1,
        "more than one 'code' column in the header",
    )


def test_a_csv_row_that_ends_before_its_code_column_is_refused_naming_its_line() -> None:
    # a row with cells but no code cell left its code out: it is no blank line to skip
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(b"x,code\n1,A-1\n2\n3,B-1\n", CodesFormat.CSV)
    assert caught.value.line == 3
    assert caught.value.problem == (
        "the row ends before its 'code' column (1 of the header's 2 columns)"
    )
    # while a row of blank cells only is a blank line
    assert parse(b"x,code\n \n3,B-1\n", CodesFormat.CSV) == [FileCode(3, "B-1")]


def test_the_command_lines_reader_refuses_a_row_without_its_code_cell_as_the_server_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("x,code\n1,A-1\n2\n", encoding="utf-8", newline="")

    with pytest.raises(CodesFileError, match="line 3: the row ends before its 'code' column"):
        list(read_codes(path))


def test_a_csv_with_lone_carriage_returns_is_refused_in_plain_words() -> None:
    # old Mac line ends: the csv module's own message spoke of "universal-newline mode"
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(b"code\rA-1\rA-2\r", CodesFormat.CSV)
    assert caught.value.problem == LONE_CR
    assert "universal-newline" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "fmt", "line"),
    [
        # the last line, with no line feed after it to make CR LF
        (b"A-1\r", CodesFormat.TEXT, 1),
        (b"A-1\nA-2\r", CodesFormat.TEXT, 2),
        (b"code\nA-1\r", CodesFormat.CSV, 2),
        # inside a line: named as what it is, not as "a control character"
        (b"A-1\nA-2\rA-3\n", CodesFormat.TEXT, 2),
        # one CR before the LF is CR LF; a second is a line end of its own
        (b"A-1\r\r\n", CodesFormat.TEXT, 1),
        (b"code\r\nA-1\r\r\n", CodesFormat.CSV, 2),
        # quoted, in the code's cell or another's
        (b'code\r\n"A-1\r"\r\n', CodesFormat.CSV, 2),
        (b'code,note\nA-1,"x\ry"\n', CodesFormat.CSV, 2),
        (b"code\nA-1\nA-2\rA-3", CodesFormat.CSV, 3),
    ],
)
def test_a_lone_carriage_return_anywhere_is_refused_naming_its_line(
    data: bytes, fmt: CodesFormat, line: int
) -> None:
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(data, fmt)
    assert (caught.value.line, caught.value.problem) == (line, LONE_CR)


def test_a_crlf_split_between_two_chunks_is_still_one_line_end() -> None:
    found = list(parse_codes([b"A-1\r", b"\nA-2\r", b"\n"], CodesFormat.TEXT))
    assert found == [FileCode(1, "A-1"), FileCode(2, "A-2")]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # an unbalanced quote in another column would swallow the lines after it
        ('code,note\nJ-1,"oops\nJ-2,fine\nJ-3,"x"\nJ-4,y\n', 2),
        ('code,note\nJ-1,ok\nJ-2,"a\r\nb"\n', 3),
        ('"co\nde",note\nJ-1\n', 1),
        # the quote still open when the file ends, with or without a last line end
        ('code,x\nJ-1,"unb', 2),
        ('code\n"j-1\n', 2),
        ('code\nAB\n"j-1', 3),
        ('"code', 1),
    ],
)
def test_a_quoted_csv_value_running_past_its_line_is_refused_naming_where_it_starts(
    text: str, line: int
) -> None:
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(text.encode(), CodesFormat.CSV, [7])
    assert f"line {line}:" in str(caught.value) and "quote" in str(caught.value)


@pytest.mark.parametrize(
    ("head", "line"),
    [("code\n", 2), ("code,note\nJ-1,ok\nJ-2,ok\nJ-3,", 4), ("", 1)],
    ids=["code-column", "other-column", "header"],
)
def test_an_open_quote_with_more_than_the_readers_field_limit_after_it_names_its_own_line(
    head: str, line: int, tmp_path: Path
) -> None:
    # given an unbalanced quote with 150 kB of lines after it: the reader's 128 KiB field
    # limit ended it, and its message named the line where the limit was hit (13,109 here)
    text = head + '"unclosed\n' + "".join(f"C{n:08d}\n" for n in range(15_000))
    if head == "":
        text = '"code\n' + text.removeprefix('"unclosed\n')

    # when the server parses it, and when the command line reads it
    with pytest.raises(errors.MalformedCodesFile) as caught:
        parse(text.encode(), CodesFormat.CSV, [4096])
    path = tmp_path / "codes.csv"
    path.write_text(text)
    with pytest.raises(CodesFileError) as read:
        list(read_codes(path))

    # then both name the quote's line, and say it is a quote
    assert (caught.value.line, "quote" in caught.value.problem) == (line, True)
    assert f"line {line}:" in str(read.value) and "quote" in str(read.value)


@given(items=st.lists(code_text, min_size=1, max_size=20), bad=st.data())
def test_invalid_utf8_is_refused_naming_its_line(items: list[str], bad: st.DataObject) -> None:
    # given a file whose line k holds a byte sequence that is not UTF-8
    k = bad.draw(st.integers(1, len(items)))
    lines = [i.encode() for i in items]
    lines[k - 1] = lines[k - 1] + b"\xff\xfe"
    # when parsed, then 9027 names line k, and no code from line k on is yielded
    seen: list[FileCode] = []
    with pytest.raises(errors.MalformedCodesFile) as refused:
        for code in parse_codes([b"\n".join(lines)], CodesFormat.TEXT):
            seen.append(code)
    assert refused.value.line == k
    assert refused.value.code == 9027
    assert "line " + str(k) in refused.value.message
    assert [c.line_no for c in seen] == list(range(1, len(seen) + 1))
    assert len(seen) < k


# --- examples --------------------------------------------------------------------------------


# Lines that are each wrong in their own way: the rules of a code (read line by line) and of
# the bytes (read a block at a time), so that a file holding several names the first.
FAULTS = {
    "long code": b"Z" * 101,
    "long once folded": "\u00df".encode() * 51,
    "control character": b"B\x01C",
    "not UTF-8": b"\xff\xfe",
    "lone CR": b"B\rC",
    "line over 64 KiB": b"Y" * (64 * 1024 + 1),
}


@given(
    before=st.lists(code_text, max_size=8),
    faults=st.lists(st.sampled_from(sorted(FAULTS)), min_size=1, max_size=4),
    between=st.lists(code_text, max_size=3),
    fmt=st.sampled_from(CodesFormat),
    sizes=st.lists(st.integers(1, 4096), max_size=8),
)
def test_a_file_with_several_faults_is_refused_naming_the_first(
    before: list[str],
    faults: list[str],
    between: list[str],
    fmt: CodesFormat,
    sizes: list[int],
) -> None:
    # given good lines, then faulty lines of any kinds with good lines between them
    head = [b"code"] if fmt is CodesFormat.CSV else []
    lines = [*head, *(c.encode() for c in before)]
    first = len(lines) + 1
    for n, fault in enumerate(faults):
        lines.append(FAULTS[fault])
        if n == 0:
            lines.extend(c.encode() for c in between)
    # when it is read, however it arrives
    with pytest.raises(errors.MalformedCodesFile) as refused:
        parse(b"\n".join(lines) + b"\n", fmt, sizes)
    # then the refusal names the first faulty line and its own fault (a later line's fault,
    # met first by the block's decoding, was named instead)
    assert refused.value.line == first, (refused.value, faults)


def test_an_unbalanced_quote_is_named_before_a_faulty_line_it_runs_into() -> None:
    data = b'code\nA\n"B\nC\n\xff\n'

    with pytest.raises(errors.MalformedCodesFile) as refused:
        parse(data, CodesFormat.CSV)

    assert refused.value.line == 3 and "quoted value" in str(refused.value)


def test_a_code_over_100_characters_is_refused_naming_its_line() -> None:
    data = b"A1\n\nB2\n" + b"C" * 101 + b"\nD4\n"
    with pytest.raises(errors.MalformedCodesFile, match="line 4: code longer than 100"):
        parse(data, CodesFormat.TEXT)


def test_a_code_of_exactly_100_characters_is_accepted() -> None:
    assert parse(b"X" * 100, CodesFormat.TEXT) == [FileCode(1, "X" * 100)]


def test_a_csv_without_a_code_column_is_refused_at_line_1() -> None:
    with pytest.raises(errors.MalformedCodesFile, match="line 1: no 'code' column"):
        parse(b"coupon,name\nA1,x\n", CodesFormat.CSV)


def test_a_csv_header_with_a_bom_and_spaces_still_finds_code() -> None:
    assert parse(BOM + b" CODE ,n\r\nA1,1\r\n,2\r\nB2\r\n", CodesFormat.CSV) == [
        FileCode(2, "A1"),
        FileCode(4, "B2"),
    ]


def test_an_empty_file_has_no_codes() -> None:
    assert parse(b"", CodesFormat.TEXT) == []
    assert parse(b"", CodesFormat.CSV) == []
    assert parse(b"\n \n", CodesFormat.TEXT) == []


def test_more_codes_than_the_limit_is_9013() -> None:
    with pytest.raises(errors.CodesFileTooLarge) as refused:
        list(parse_codes([b"a\nb\nc\n"], CodesFormat.TEXT, max_codes=2))
    assert (refused.value.code, refused.value.http_status) == (9013, 413)
    assert list(parse_codes([b"a\n\nb\n"], CodesFormat.TEXT, max_codes=2)) == [
        FileCode(1, "a"),
        FileCode(3, "b"),
    ]


def test_more_bytes_than_the_limit_is_9013_before_parsing_them() -> None:
    with pytest.raises(errors.CodesFileTooLarge):
        list(parse_codes([b"a\n" * 10, b"b\n"], CodesFormat.TEXT, max_bytes=20))


def test_a_line_without_end_is_refused_once_it_passes_64_kib() -> None:
    endless = (b"x" * 4096 for _ in range(100))
    with pytest.raises(errors.MalformedCodesFile, match="line 1: line longer than"):
        list(parse_codes(endless, CodesFormat.TEXT))


@pytest.mark.parametrize("fmt", list(CodesFormat))
def test_a_code_with_a_control_character_is_malformed_naming_its_line(fmt: CodesFormat) -> None:
    with pytest.raises(errors.MalformedCodesFile, match="line 2: code contains a control"):
        parse(b"code\nA\x001\n", fmt)


@pytest.mark.parametrize(
    ("text", "line"),
    [('code,x\nJ-1,"unb\n', 2), ('code\nAB\n"j-1', 3), ('code\n"j-1\r\n', 2), ('"code', 1)],
)
def test_the_command_lines_reader_refuses_a_quote_still_open_at_the_end_of_the_file(
    tmp_path: Path, text: str, line: int
) -> None:
    # as the server does (9027): the CLI stops before sending anything
    path = tmp_path / "codes.csv"
    path.write_text(text, encoding="utf-8", newline="")

    with pytest.raises(CodesFileError, match=f"line {line}: a quoted value runs on"):
        list(read_codes(path))


def test_the_command_lines_reader_takes_a_last_line_without_its_end(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text('code,note\nJ-1,"a, b"\nJ-2,x', encoding="utf-8", newline="")

    assert list(read_codes(path)) == [(2, "J-1"), (3, "J-2")]


def test_the_command_lines_scan_refuses_a_line_past_64_kib_without_reading_it_whole(
    tmp_path: Path,
) -> None:
    from coupons.entrypoints.bulk_revoke.codes_file import scan

    # given a file whose second line never ends (as a device or a file of one huge line)
    path = tmp_path / "codes.txt"
    path.write_bytes(b"A1\n" + b"Z" * (8 * 1024 * 1024))

    # then the scan refuses it at that line (it read all 8 MiB into one line first)
    with pytest.raises(CodesFileError, match="line 2: longer than 65536 bytes"):
        scan(path)


def test_the_command_lines_scan_takes_a_line_of_64_kib_and_its_crlf(tmp_path: Path) -> None:
    from coupons.entrypoints.bulk_revoke.codes_file import scan

    path = tmp_path / "codes.txt"
    path.write_bytes(b"A1\r\n" + b"Z" * (64 * 1024) + b"\r\nA2\r\n")

    assert scan(path).total == 3


def test_the_command_lines_scan_does_not_count_the_byte_order_mark_against_the_limit(
    tmp_path: Path,
) -> None:
    from coupons.entrypoints.bulk_revoke.codes_file import scan

    # a first line of exactly 64 KiB after its BOM: the server takes it
    path = tmp_path / "codes.txt"
    path.write_bytes(BOM + b"Z" * (64 * 1024) + b"\r\nA2\n")

    assert scan(path).total == 2
