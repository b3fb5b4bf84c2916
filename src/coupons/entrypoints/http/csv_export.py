"""CSV exports: streamed in constant memory, UTF-8, RFC 4180, safe to open in a spreadsheet.

Codes, reasons and actor names are user input. A cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return is read as a formula by spreadsheet programs (CSV injection), so such
a cell is written with a single quote in front (`'=1+1`), as OWASP recommends: the program
then shows the text instead of evaluating it, and a person still reads the original value
after the quote. Only text cells are neutralised; numbers (ids, counts) are written as they
are. The quote is visible to a program that reads the file: a cell that begins with `'`
followed by one of those characters had the quote added here (see `restore`).

Quoting follows RFC 4180: fields holding a comma, a double quote, CR or LF are enclosed in
double quotes, inner quotes doubled, rows end with CRLF. No byte-order mark is written (it
would become part of the first header name for every program but Excel).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from coupons.entrypoints.http.render import timestamp

MEDIA_TYPE = "text/csv; charset=utf-8"
# Characters that make a spreadsheet treat a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"

Cell = str | int | float | datetime | None


def neutralise(text: str) -> str:
    """The text as a spreadsheet shows it without evaluating it."""
    return QUOTE + text if text.startswith(FORMULA_STARTS) else text


def restore(cell: str) -> str:
    """The original text of a cell `neutralise` wrote (for programs reading an export)."""
    if cell.startswith(QUOTE) and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def cell(value: Cell) -> str | int | float:
    """One value as written: text neutralised, times in the API's format, None empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, datetime):
        return timestamp(value)
    return value


def encode_rows(rows: Iterable[Sequence[Cell]]) -> bytes:
    """Rows as RFC 4180 CSV, UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # QUOTE_MINIMAL, doubled quotes
    writer.writerows([cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def stream(header: Sequence[str], pages: Iterable[Iterable[Sequence[Cell]]]) -> Iterator[bytes]:
    """The header row, then one encoded chunk per page: memory holds one page at a time."""
    yield encode_rows([header])
    for page in pages:
        chunk = encode_rows(page)
        if chunk:
            yield chunk
