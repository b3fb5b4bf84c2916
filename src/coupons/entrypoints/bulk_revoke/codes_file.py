"""Reading a codes file and deciding, line by line, what the run does with it.

The whole file is planned before anything is sent, with the domain's own code rules (trimmed,
matched case-insensitively, at most 100 characters): each non-blank line is a code to send, a
later duplicate of a code already in the file, or invalid. A dry run and a real run follow the
same plan, so they agree on every line, wherever the duplicates fall and whatever their case.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from coupons.domain.codes import MAX_CODE_LENGTH, clean, has_control_character, normalize
from coupons.domain.codes_file import BOM, LONE_CR, MAX_LINE_BYTES, runs_past_the_end, short_row

if TYPE_CHECKING:
    from _csv import Reader as _Reader


class CodesFileError(Exception):
    """The file cannot be read as codes (not UTF-8, a CSV without a `code` column, a quoted
    CSV value running past its line); the message names the file and, where known, the
    line."""


SPANS_LINES = "a quoted value runs on past the end of this line (an unbalanced quote?)"


class LineKind(StrEnum):
    """What the run does with one line."""

    SEND = "send"  # the first occurrence of a valid code: goes to the server
    DUPLICATE = "duplicate_in_file"  # the same code (ignoring case and spaces) on an earlier line
    INVALID = "invalid"  # too long, or a control character: the server would refuse its batch


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank code of the file with its 1-based line number."""

    number: int
    code: str
    kind: LineKind


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass over the file learnt: counts, fingerprint, and the duplicate lines."""

    total: int  # non-blank codes, duplicates and invalid ones included
    sendable: int  # distinct valid codes: what goes to the server
    sha256: str
    duplicate_lines: frozenset[int]


def _ended(lines: Iterable[str]) -> Iterator[str]:
    """Each line with its end, the last one too, so a quote still open when the file ends
    leaves the end inside its value, where `runs_past_the_end` sees it."""
    for line in lines:
        yield line if line.endswith(("\n", "\r")) else line + "\n"


def read_codes(path: Path) -> Iterator[tuple[int, str]]:
    """Stream (line number, trimmed code): one a line, or the `code` column of a .csv."""
    try:
        yield from _read_codes(path)
    except csv.Error as error:  # a value past the reader's field limit: the server refuses it
        raise CodesFileError(f"{path}: a CSV value this command cannot read ({error})") from None


def _read_codes(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix.lower() == ".csv":
            yield from _csv_codes(path, csv.reader(_ended(handle)))
        else:
            for number, text in enumerate(handle, start=1):
                code = clean(text)
                if code:
                    yield number, code


def _csv_codes(path: Path, reader: _Reader) -> Iterator[tuple[int, str]]:
    previous = 0  # the last line of the records read so far
    try:
        header = next(reader, None)
        names = [name.strip().lower() for name in header or []]
        if "code" not in names:
            raise CodesFileError(f"{path} has no 'code' column (header: {header})")
        if names.count("code") > 1:
            # As the server refuses it: one column's codes would be dropped unseen.
            raise CodesFileError(f"{path} has more than one 'code' column (header: {header})")
        if reader.line_num > 1 or runs_past_the_end(header or []):
            raise CodesFileError(f"{path}, line 1: {SPANS_LINES}")
        column = names.index("code")
        previous = reader.line_num
        for record in reader:
            first, previous = previous + 1, reader.line_num
            if previous != first or runs_past_the_end(record):
                # No code holds a line break: an unbalanced quote would swallow the codes
                # of the lines after it without a word (the server refuses it too, 9027).
                raise CodesFileError(f"{path}, line {first}: {SPANS_LINES}")
            if column >= len(record) and any(cell.strip() for cell in record):
                # As the server refuses it: the line's code was left out, not blank.
                problem = short_row(len(record), len(names))
                raise CodesFileError(f"{path}, line {first}: {problem}")
            code = clean(record[column]) if column < len(record) else ""
            if code:
                yield first, code
    except csv.Error:
        if reader.line_num > previous + 1:
            # Past the reader's field limit (128 KiB) inside a value begun lines before: the
            # unbalanced quote is the fault, and its line the one to name, as the server does.
            raise CodesFileError(f"{path}, line {previous + 1}: {SPANS_LINES}") from None
        raise


def is_valid(code: str) -> bool:
    """Whether the server would accept the (trimmed, non-blank) code at all: not too long,
    and no control character (NUL above all, which the server refuses as 9002)."""
    return len(code) <= MAX_CODE_LENGTH and not has_control_character(code)


def scan(path: Path) -> Scan:
    """Fingerprint the file, count its codes and find every later duplicate.

    Finding duplicates across the whole file needs every distinct code's matching key at
    once (about 100 bytes a code while scanning); only the duplicates' line numbers are kept.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        # A line at a time, each read bounded: a file with no line ends (a 200 MB line, a
        # device) was read whole into memory before anything could be said of it.
        # Past the line's end and the first line's byte order mark, the server's limit.
        lines = iter(lambda: handle.readline(MAX_LINE_BYTES + len(BOM) + 3), b"")
        for number, raw in enumerate(lines, start=1):
            text = raw.removeprefix(BOM) if number == 1 else raw
            if len(text.removesuffix(b"\n").removesuffix(b"\r")) > MAX_LINE_BYTES:
                raise CodesFileError(f"{path}, line {number}: longer than {MAX_LINE_BYTES} bytes")
            digest.update(raw)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CodesFileError(f"{path}, line {number}: not UTF-8 text") from None
            line = raw[:-2] if raw.endswith(b"\r\n") else raw.removesuffix(b"\n")
            if b"\r" in line:
                # A carriage return alone ends a line for the readers below, so a file's lines
                # would be numbered otherwise than an editor numbers them (the server refuses
                # such a file too, 9027).
                raise CodesFileError(f"{path}, line {number}: {LONE_CR}")
    seen: set[str] = set()
    duplicates: set[int] = set()
    total = 0
    for number, code in read_codes(path):
        total += 1
        if not is_valid(code):
            continue
        key = normalize(code)
        if key in seen:
            duplicates.add(number)
        else:
            seen.add(key)
    return Scan(total, len(seen), digest.hexdigest(), frozenset(duplicates))


def plan(path: Path, scanned: Scan) -> Iterator[Line]:
    """Every code of the file in order, each with what the run does with it."""
    for number, code in read_codes(path):
        if not is_valid(code):
            kind = LineKind.INVALID
        elif number in scanned.duplicate_lines:
            kind = LineKind.DUPLICATE
        else:
            kind = LineKind.SEND
        yield Line(number, code, kind)
