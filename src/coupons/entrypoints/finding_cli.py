"""`coupons export ...` and `coupons revocations`: the finding reads of spec §7 through the
HTTP API (like `coupons revoke`, an API client: it needs a URL and credentials, no database)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from coupons.client import BasicAuth, CouponApiError, CouponClient, Revocation
from coupons.entrypoints.whole_file import whole_file

EXIT_FAILED = 1

export_app = typer.Typer(help="Stream CSV exports to a file.", no_args_is_help=True)

Url = Annotated[str, typer.Option(envvar="COUPONS_URL", help="API base URL")]
Username = Annotated[
    str | None, typer.Option(envvar="COUPONS_USERNAME", help="API client username")
]
Password = Annotated[str | None, typer.Option(envvar="COUPONS_PASSWORD", help="API client secret")]
Out = Annotated[Path, typer.Option("--out", help="the CSV file to write ('-' for stdout)")]
Since = Annotated[
    str | None, typer.Option(help="from this time: YYYY-MM-DD or ISO-8601 (UTC if no offset)")
]
Until = Annotated[
    str | None, typer.Option(help="before this time; a bare date includes that whole day")
]
Actor = Annotated[str | None, typer.Option(help="only revokes by this API client or person")]
DEFAULT_URL = "http://127.0.0.1:8000"

err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `export` and `revocations` to the `coupons` command."""
    app.add_typer(export_app, name="export")
    app.command("revocations")(revocations)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(EXIT_FAILED)


@contextmanager
def _client(url: str, username: str | None, password: str | None) -> Iterator[CouponClient]:
    if not username or not password:
        raise _fail("give --username and --password (or COUPONS_USERNAME, COUPONS_PASSWORD)")
    try:
        with CouponClient(url, BasicAuth(username, password)) as client:
            yield client
    except CouponApiError as error:
        raise _fail(error.describe()) from None
    except BrokenPipeError:
        # The reader took what it wanted (`| head -1`): no error of ours. Further writes to
        # the closed pipe (at exit, when stdout is flushed) go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (httpx.InvalidURL, OSError) as error:
        raise _fail(str(error)) from None


@contextmanager
def _output(out: Path) -> Iterator[IO[bytes]]:
    if str(out) == "-":
        yield sys.stdout.buffer
        return
    # Checked before the download: found at the end, a whole export was fetched for nothing,
    # and the error named an internal `.partial` file.
    if out.is_dir():
        raise _fail(f"--out {out} is a directory; give the path of a file")
    if not out.parent.is_dir():
        raise _fail(f"--out {out}: its folder {out.parent} does not exist")
    if out.exists() and not out.is_file():
        raise _fail(f"--out {out} is not a regular file; give the path of a file (or - for stdout)")
    with whole_file(out) as handle:  # only a finished export takes the name
        yield handle


def _export(
    url: str, username: str | None, password: str | None, out: Path, path: str, **params: str
) -> None:
    with _client(url, username, password) as client, _output(out) as handle:
        written = client.export_csv(path, handle, {k: v for k, v in params.items() if v})
    if str(out) != "-":
        err.print(f"wrote {written:,} bytes to {out}")


@export_app.command("series")
def export_series(
    series_id: Annotated[int, typer.Argument(min=1, help="coupon series id")],
    out: Out,
    state: Annotated[
        str | None, typer.Option(help="only AVAILABLE, ISSUED, REDEEMED or REVOKED coupons")
    ] = None,
    url: Url = DEFAULT_URL,
    username: Username = None,
    password: Password = None,
) -> None:
    """A series' coupons as CSV, in id order."""
    path = f"/v2/coupon/series/{series_id}/coupons.csv"
    _export(url, username, password, out, path, state=(state or "").upper())


@export_app.command("customer")
def export_customer(
    customer_id: Annotated[int, typer.Argument(min=1, help="customer id")],
    out: Out,
    status: Annotated[str, typer.Option(help="ACTIVE, REDEEMED, REVOKED or ALL")] = "ALL",
    url: Url = DEFAULT_URL,
    username: Username = None,
    password: Password = None,
) -> None:
    """A customer's coupons as CSV."""
    path = f"/v2/customers/{customer_id}/coupons.csv"
    _export(url, username, password, out, path, status=status.upper())


@export_app.command("revocations")
def export_revocations(
    out: Out,
    since: Since = None,
    until: Until = None,
    actor: Actor = None,
    url: Url = DEFAULT_URL,
    username: Username = None,
    password: Password = None,
) -> None:
    """The revocations trail as CSV, newest first."""
    params = {"since": since or "", "until": until or "", "actor": actor or ""}
    _export(url, username, password, out, "/v2/coupon/revocations.csv", **params)


@export_app.command("history")
def export_history(
    out: Out,
    since: Since = None,
    until: Until = None,
    url: Url = DEFAULT_URL,
    username: Username = None,
    password: Password = None,
) -> None:
    """Every coupon's history entries from --since to --until as CSV, oldest first."""
    params = {"since": since or "", "until": until or ""}
    _export(url, username, password, out, "/v2/coupon/history.csv", **params)


def revocations(
    since: Since = None,
    until: Until = None,
    actor: Actor = None,
    csv: Annotated[bool, typer.Option("--csv", help="write every row as CSV to stdout")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="rows in the table")] = 50,
    url: Url = DEFAULT_URL,
    username: Username = None,
    password: Password = None,
) -> None:
    """Who revoked what, when and why: one row per revoke call or job, newest first."""
    if csv:
        params = {"since": since or "", "until": until or "", "actor": actor or ""}
        _export(url, username, password, Path("-"), "/v2/coupon/revocations.csv", **params)
        return
    with _client(url, username, password) as client:
        page = client.revocations(actor=actor, since=since, until=until, limit=limit)
    console = Console()
    console.print(revocations_view(page.items, console.width))
    if page.next_cursor is not None:
        err.print(f"more than {limit} rows: raise --limit (up to 1000) or use --csv for all")


def _at(r: Revocation) -> str:
    return r.at


def _request_id(r: Revocation) -> str:
    return r.request_id


_COLUMNS: list[tuple[str, str, Callable[[Revocation], str]]] = [
    ("at", "left", _at),
    ("actor", "left", lambda r: r.actor),
    ("revoked", "right", lambda r: f"{r.revoked_count:,}"),
    ("reinstated", "right", lambda r: f"{r.reinstated_count:,}"),
    ("reason", "left", lambda r: r.reason or ""),
    ("requestId", "left", _request_id),
    ("job", "right", lambda r: "" if r.job_id is None else str(r.job_id)),
]
# Below this many columns the table's id and time leave the others no room (80 columns,
# as when piped, showed only those two): each row is then printed as lines of its own.
TABLE_MIN_WIDTH = 120


def revocations_view(rows: list[Revocation], width: int) -> Table | Text:
    """The trail for a terminal `width` columns wide: a table, or one block per row."""
    # The time and request id are never cut: the rest needs about 70 columns beside them
    # (a client's request id may be up to 128 characters long).
    longest = sum(max((len(value(r)) for r in rows), default=0) for value in (_at, _request_id))
    if width >= max(TABLE_MIN_WIDTH, longest + 70):
        return revocations_table(rows)
    blocks = []
    for row in rows:
        # Reasons are user input: plain text, never Rich markup.
        blocks.append(
            "\n".join(f"{name:>10}  {printable(value(row))}" for name, _, value in _COLUMNS)
        )
    return Text("\n\n".join(blocks) if blocks else "no revocations")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(value: str) -> str:
    """`value` with its control characters written as escapes (`\\x1b`): a reason is anyone's
    text, and printed raw its escape sequences would recolour, clear or retitle the reader's
    terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def revocations_table(rows: list[Revocation]) -> Table:
    """The trail as a Rich table."""
    table = Table(title="revocations")
    columns = _COLUMNS
    # Ids and times are copied from here (a request id is what a reinstate takes): on a
    # narrow terminal the other columns wrap, these are never cut short.
    for name, justify, value in columns:
        if name in ("at", "requestId"):
            width = max((len(value(r)) for r in rows), default=len(name))
            table.add_column(name, justify=justify, no_wrap=True, min_width=width)  # type: ignore[arg-type]
        else:
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        # Reasons are user input: printed as text, never as Rich markup.
        table.add_row(*(escape(printable(value(row))) for _, _, value in columns))
    return table
