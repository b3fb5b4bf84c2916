"""Reading a codes file for a revoke job, a piece at a time (spec §8).

Two formats: `text/plain`, one code a line; `text/csv`, the column named `code` (any case,
other columns ignored; the first record is the header). UTF-8, a byte order mark is fine, line
ends `\\n` or `\\r\\n`. Codes are trimmed; blank lines (and CSV rows with a blank `code`) are
skipped and are not report lines; a CSV row that stops before its `code` column is 9027.
Each code keeps the number of the line it started on (1 is the first line of the file, the
header for CSV), which is how the report keeps input order and how an error names the line.

The parser pulls bytes from an iterator and yields codes as it goes, so a 64 MiB upload is never
held whole: memory is one line (at most `MAX_LINE_BYTES`) plus the caller's batch.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from coupons.domain import errors
from coupons.domain.codes import MAX_CODE_LENGTH, has_control_character, normalize

MAX_CODES = 1_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024
# No sane codes file has a longer line; refusing it keeps a line-less upload out of memory.
MAX_LINE_BYTES = 64 * 1024
BOM = b"\xef\xbb\xbf"
# A carriage return is a line end only before a line feed. Alone (old Mac line ends, or a
# stray one) no two readers agree on it: refused wherever it is, in either format, and by
# the bulk command too, in these words.
LONE_CR = "a carriage return not followed by a line feed: end lines with LF or CRLF"


class CodesFormat(StrEnum):
    TEXT = "text/plain"
    CSV = "text/csv"


@dataclass(frozen=True, slots=True)
class FileCode:
    line_no: int
    code: str


def parse_codes(
    chunks: Iterable[bytes],
    fmt: CodesFormat,
    *,
    max_codes: int = MAX_CODES,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[FileCode]:
    """Yield each non-blank code with its line number; raise 9027 or 9013 on the first problem."""
    lines = _decoded_lines(chunks, max_bytes)
    codes = _csv_codes(lines) if fmt is CodesFormat.CSV else _text_codes(lines)
    for count, found in enumerate(codes, 1):
        if len(found.code) > MAX_CODE_LENGTH:
            raise errors.MalformedCodesFile(
                found.line_no, f"code longer than {MAX_CODE_LENGTH} characters"
            )
        # A job keeps each line's matching key in a column as wide as a code; "ß" folds to
        # "ss", so a code can outgrow it (PostgreSQL refused the file with a 500).
        if not found.code.isascii() and len(normalize(found.code)) > MAX_CODE_LENGTH:
            raise errors.MalformedCodesFile(
                found.line_no, f"code longer than {MAX_CODE_LENGTH} characters once case-folded"
            )
        if has_control_character(found.code):
            raise errors.MalformedCodesFile(found.line_no, "code contains a control character")
        if count > max_codes:
            raise errors.CodesFileTooLarge()
        yield found


def _decoded_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[tuple[int, str]]:
    """(line number, text) per physical line.

    Complete lines are decoded a block at a time (fast); only a block that is not UTF-8 is
    decoded line by line to name the bad line. Splitting bytes at line feeds is safe: in
    UTF-8 the byte 0x0A is only ever a line feed.
    """
    pending = b""
    line_no = 0
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise errors.CodesFileTooLarge()
        pending += chunk
        end = pending.rfind(b"\n")
        if end < 0:
            if len(pending) > MAX_LINE_BYTES:
                raise errors.MalformedCodesFile(
                    line_no + 1, f"line longer than {MAX_LINE_BYTES} bytes"
                )
            continue
        block, pending = pending[: end + 1], pending[end + 1 :]
        texts, fault = _decode_block(block, line_no)
        for text in texts:
            line_no += 1
            yield line_no, text
        if fault is not None:  # raised once every line before it has been read
            raise fault
        if len(pending) > MAX_LINE_BYTES:
            raise errors.MalformedCodesFile(line_no + 1, f"line longer than {MAX_LINE_BYTES} bytes")
    if pending:
        line_no += 1
        text = _decode(pending, line_no)
        if "\r" in text:  # the last line: no line feed follows to make any CR a CRLF
            raise errors.MalformedCodesFile(line_no, LONE_CR)
        yield line_no, text


def _decode_block(
    block: bytes, lines_before: int
) -> tuple[list[str], errors.MalformedCodesFile | None]:
    """The lines of a block of complete lines (each ends with a line feed), up to the first
    that cannot be a line of a codes file, and what is wrong with that one. The caller reads
    the lines before it first: a code too long on line 2 is the file's first fault, not the
    stray byte on line 4 that the block's decoding meets first."""
    if lines_before == 0 and block.startswith(BOM):
        block = block[len(BOM) :]
    fault = None
    try:
        texts = block.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        texts = []
        for n, raw in enumerate(block.split(b"\n")[:-1], lines_before + 1):
            try:
                texts.append(_decode(raw, n))
            except errors.MalformedCodesFile as bad:
                fault = bad
                break
    lines: list[str] = []
    for n, text in enumerate(texts, lines_before + 1):
        if len(text) > MAX_LINE_BYTES // 4 and len(text.encode()) > MAX_LINE_BYTES:
            return lines, errors.MalformedCodesFile(n, f"line longer than {MAX_LINE_BYTES} bytes")
        line = text[:-1] if text.endswith("\r") else text
        if "\r" in line:
            return lines, errors.MalformedCodesFile(n, LONE_CR)
        lines.append(line)
    return lines, fault


def _decode(raw: bytes, line_no: int) -> str:
    if line_no == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if len(raw) > MAX_LINE_BYTES:
        raise errors.MalformedCodesFile(line_no, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.MalformedCodesFile(line_no, "not UTF-8") from None


def _text_codes(lines: Iterator[tuple[int, str]]) -> Iterator[FileCode]:
    for line_no, text in lines:
        code = text.strip()
        if code:
            yield FileCode(line_no, code)


_SPANS_LINES = "a quoted value runs on past the end of this line (an unbalanced quote?)"


def runs_past_the_end(record: list[str]) -> bool:
    """A value holding a line's end: its quote was still open when the file ended (every
    line is given to the reader with its end, and a quote left open before another line is
    caught by the line count). The command line's reader of codes files asks it too."""
    return any("\n" in value or "\r" in value for value in record)


def short_row(cells: int, columns: int) -> str:
    """What is wrong with a CSV row that ends before its `code` column."""
    return f"the row ends before its 'code' column ({cells} of the header's {columns} columns)"


def _csv_codes(lines: Iterator[tuple[int, str]]) -> Iterator[FileCode]:
    current = [0]

    def texts() -> Iterator[str]:
        for line_no, text in lines:
            current[0] = line_no
            yield text + "\n"

    reader = csv.reader(texts())
    start = 1  # the line the record being read begins on
    try:
        header = next(reader, None)
        if header is None:
            return
        if current[0] != 1 or runs_past_the_end(header):
            raise errors.MalformedCodesFile(1, _SPANS_LINES)
        names = [name.strip().lower() for name in header]
        if "code" not in names:
            raise errors.MalformedCodesFile(1, "no 'code' column in the header")
        if names.count("code") > 1:
            # Taking the first would revoke one column's codes and drop the other's unseen.
            raise errors.MalformedCodesFile(1, "more than one 'code' column in the header")
        column = names.index("code")
        start = current[0] + 1
        for record in reader:
            if current[0] != start or runs_past_the_end(record):
                # CSV lets a quoted value hold line breaks, but no code has one: what looks
                # like that is an unbalanced quote, which would swallow the codes of the
                # lines after it without a word.
                raise errors.MalformedCodesFile(start, _SPANS_LINES)
            if column >= len(record) and any(cell.strip() for cell in record):
                # A row that stops before the code column: its code was left out, and
                # skipping it as blank would leave the line out of the report unseen.
                raise errors.MalformedCodesFile(start, short_row(len(record), len(header)))
            code = record[column].strip() if column < len(record) else ""
            if code:
                yield FileCode(start, code)
            start = current[0] + 1
    except errors.MalformedCodesFile as fault:
        if fault.line > start:
            # A line the reader asked for to finish a record begun lines before: the
            # record's unbalanced quote comes first, and is what is wrong.
            raise errors.MalformedCodesFile(start, _SPANS_LINES) from None
        raise
    except csv.Error as error:
        if current[0] > start:
            # Past the reader's field limit (128 KiB) inside a value begun lines before: the
            # unbalanced quote is the fault, and its line the one to name.
            raise errors.MalformedCodesFile(start, _SPANS_LINES) from None
        raise errors.MalformedCodesFile(current[0], f"not valid CSV ({error})") from None
