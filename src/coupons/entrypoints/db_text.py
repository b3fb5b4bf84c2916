"""Database URLs and errors as a command prints them, and the wait for a database at start.

Kept apart from the command definitions (`cli`): `serve` and `worker` share the wait, and
every command prints URLs and driver errors the same way.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def shown(url: str) -> str:
    """A database URL as it may be printed: its password masked (an error line ends up in
    terminals, CI logs and service logs)."""
    # From the user name's colon to the last `@`: a password may hold a `/` (SQLAlchemy reads
    # it so) or an unencoded `@`, and either showed the rest of it. A `@` further on (in a
    # query) masks more than the password, never less.
    masked = re.sub(r"(://[^:/@]*:).*@", r"\1***@", url, flags=re.DOTALL)
    # libpq also takes the password as a query parameter (?password=...).
    return re.sub(r"([?&]password=)[^&]*", r"\1***", masked, flags=re.IGNORECASE)


def first_line(error: Exception) -> str:
    """The driver's own words for a database error, without SQLAlchemy's wrapping."""
    cause = str(getattr(error, "orig", None) or error).strip().splitlines()
    return cause[0] if cause else type(error).__name__


def driver_reason(error: Exception) -> str:
    """The driver's first line about a failed connection, with any password masked."""
    reason = first_line(error).removeprefix("connection failed: ")
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", shown(reason))


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite database URL names; None for any other URL, an in-memory database
    or a `file:` URI (whose path SQLite itself reads)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None  # opening the database says what is wrong with it
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return None if path.startswith("file:") else Path(path)


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database URL whose file does not exist, else None."""
    path = _sqlite_file(url)
    return None if path is None or path.exists() else str(path)


def sqlite_path_problem(url: str) -> str | None:
    """Why a SQLite URL's path cannot hold a database file (its folder is missing, or it is
    a folder), else None: SQLite says only "unable to open database file", and advice to run
    `db upgrade` there would fail the same way."""
    path = _sqlite_file(url)
    if path is None:
        return None
    try:
        missing, folder = not path.parent.exists(), path.is_dir()
    except OSError:  # a folder that may not be searched: opening the database says so
        return None
    if missing:  # SQLite creates the file, not its folder
        return f"the folder {path.parent} does not exist: create it, or give another path"
    if folder:
        return (
            f"{path} is a folder: give the path of a database file in it, "
            f"e.g. sqlite:///{str(path).rstrip('/')}/coupons.db"
        )
    return None


def await_database(url: str, seconds: float) -> None:
    """Wait up to `seconds` for a PostgreSQL database that does not answer (down, restarting,
    failing over) before the command goes on; a host started during a failover then comes
    up by itself. Anything but an outage (a wrong password, no such database) is left to the
    command's own checks, which say what it is at once."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from coupons.adapters.db import create_db_engine, normalize_url
    from coupons.adapters.sql_uow import is_unavailable

    try:
        postgres = normalize_url(url).get_backend_name() == "postgresql"
    except Exception:
        return  # a URL it cannot use: the command says why
    if not postgres or not seconds > 0:
        return
    try:
        engine = create_db_engine(url, null_pool=True)
    except Exception:
        return  # a URL it cannot use: the command says why
    deadline = time.monotonic() + seconds
    waiting = False
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except DBAPIError as error:
                # A refusal (a wrong password, pg_hba.conf) is no outage: `is_unavailable`.
                if not is_unavailable(error) or time.monotonic() >= deadline:
                    return
                if not waiting:
                    err.print(
                        f"the database does not answer ({driver_reason(error)}); waiting up "
                        f"to {seconds:g} s for it (--wait-for-database)",
                        markup=False,
                        highlight=False,
                    )
                    waiting = True
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
                continue
            if waiting:
                err.print("the database answers; going on", markup=False, highlight=False)
            return
    finally:
        engine.dispose()
