"""CSV exports: streamed in constant memory, UTF-8, RFC 4180, safe to open in a spreadsheet.

Text cells that a spreadsheet would run as a formula get a quote in front
(`entrypoints.spreadsheet`); numbers (ids, counts) are written as they are.

Quoting follows RFC 4180: fields holding a comma, a double quote, CR or LF are enclosed in
double quotes, inner quotes doubled, rows end with CRLF. No byte-order mark is written (it
would become part of the first header name for every program but Excel).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import structlog
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from coupons.domain import errors
from coupons.entrypoints.http.render import timestamp
from coupons.entrypoints.spreadsheet import neutralise

log = structlog.get_logger("coupons.http")

MEDIA_TYPE = "text/csv; charset=utf-8"

Cell = str | int | float | datetime | None


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


class CsvStream(StreamingResponse):
    """A streamed CSV whose later pages may fail once the answer has begun (the database
    going away mid-export). The status line is sent by then, so the only honest signal left is
    a body that ends early: the connection is closed without the final chunk, and the client
    sees an incomplete download (curl exits 18), never a file that looks whole. The server
    logs one warning, not the framework's traceback for an error after the answer started."""

    def __init__(self, content: Iterable[bytes] | object, *, filename: str) -> None:
        super().__init__(
            content,  # type: ignore[arg-type]
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* errors.DatabaseUnavailable:
            log.warning("export cut short: the database became unavailable")
