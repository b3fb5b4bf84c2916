"""The `coupons` command: database, orgs, clients, the server, and bulk revoke."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from coupons.config import DEFAULT_DATABASE_URL, Settings
from coupons.domain.errors import CommitOutcomeUnknown, CouponError, DatabaseUnavailable
from coupons.entrypoints import finding_cli, worker_cli
from coupons.entrypoints.bulk_revoke import command as bulk_revoke
from coupons.entrypoints.db_text import (
    await_database,
    driver_reason,
    first_line,
    missing_sqlite_file,
    shown,
    sqlite_path_problem,
)

# The server, database and migration modules are imported inside the commands that need
# them, so `coupons revoke` (an HTTP client) starts fast.
if TYPE_CHECKING:
    from coupons.adapters.sql_uow import Database
    from coupons.services.demo import DemoData
    from coupons.services.ports import UnitOfWork

T = TypeVar("T")
# How much of a driver's reason an error line carries.
REASON_CHARS = 160


class _Commands(TyperGroup):
    """The root command group: any API error a command raises (a name taken, the database
    away) ends it with its message and code, never a traceback; commands do not catch them."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # An argument whose bytes are not UTF-8 reaches Python with lone surrogates standing
        # for them, which no database, hash or file name check can take (a traceback).
        for arg in args:
            try:
                arg.encode()
            except UnicodeEncodeError:
                shown = arg.encode(errors="surrogateescape").decode(errors="backslashreplace")
                raise fail(f"an argument must be UTF-8 text, and this is not: {shown}", 2) from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DatabaseUnavailable as error:
            raise fail(_unavailable(error)) from None
        except CouponError as error:
            raise fail(f"{error.message} (error {error.code})") from None
        except Exception as error:
            # The database refused a statement (no schema yet, a file that cannot be opened):
            # one line saying so, not SQLAlchemy's traceback. sqlalchemy is not imported here,
            # so commands that never touch a database start fast.
            if not type(error).__module__.startswith("sqlalchemy."):
                raise
            raise fail(_database_error(error)) from None


def _unavailable(error: DatabaseUnavailable) -> str:
    """9023 with the driver's reason when there is one: a mistyped host, a closed port and a
    database failing over otherwise read alike, and only the last is worth waiting out."""
    message = f"{error.message} (error {error.code})"
    if isinstance(error, CommitOutcomeUnknown):
        # A command has no Idempotency-Key to retry with: it can only say what to check.
        message = (
            "the database stopped answering during the commit: the change may or may not "
            f"have been made; check before running the command again (error {error.code})"
        )
    cause = error.__cause__
    if not isinstance(cause, Exception):
        return message
    reason = driver_reason(cause)
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 3] + "..."
    clause, _, rest = message.partition(";")
    return f"{clause} ({reason});{rest}"


def _database_error(error: Exception) -> str:
    return f"database error: {first_line(error)}"


app = typer.Typer(help="Self-hostable coupon service.", no_args_is_help=True, cls=_Commands)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations (tenants).", no_args_is_help=True)
client_app = typer.Typer(help="API clients and their credentials.", no_args_is_help=True)
user_app = typer.Typer(help="People who sign in to the web console.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(client_app, name="client")
app.add_typer(user_app, name="user")
app.command("revoke")(bulk_revoke.revoke)
worker_cli.register(app)
finding_cli.register(app)

WORKER_HEALTHCHECK_SECONDS = 60
# How long `serve`, once stopped, waits for its job chunk and webhook deliveries to finish.
BACKGROUND_STOP_SECONDS = 20.0

console = Console()
# Errors are one line each, however narrow the terminal or pipe: never wrapped mid-word.
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="COUPONS_DATABASE_URL",
        help="sqlite:///path/to/file.db or postgresql://user@host:port/dbname",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _database(url: str) -> Database:
    """The database a command works on, once it holds this version's schema."""
    from coupons.adapters.sql_uow import Database

    require_schema(url)  # first: opening a SQLite file that is not there would create it
    try:
        return Database.from_url(url, pool_size=2)
    except Exception as error:  # bad URL or driver: say so, no traceback
        raise fail(f"cannot open database {shown(url)!r}: {first_line(error)}") from None


def _require_file(url: str) -> None:
    """Stop with one line when `url` names a SQLite file that does not exist: opening it would
    create an empty file and its lock files, only to say the schema is missing."""
    _require_sqlite_path(url)
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise fail(f"no database at {missing}: run `{_upgrade_command(url)}` first")


def _upgrade_command(url: str) -> str:
    """The upgrade the advice names, for this database, quoted as a shell reads it (a path
    with a space broke the pasted command)."""
    return f"coupons db upgrade --db {shlex.quote(shown(url))}"


def _require_sqlite_path(url: str) -> None:
    if (problem := sqlite_path_problem(url)) is not None:
        raise fail(problem)


def require_schema(url: str) -> None:
    """Stop with one line unless the database holds this version's schema: on a database
    never upgraded every command (and the worker, every poll) would fail on a missing table."""
    from sqlalchemy.exc import DBAPIError

    from coupons.adapters import migrate
    from coupons.adapters.sql_uow import RETRY_AFTER_SECONDS, is_unavailable

    _refuse_memory(url)

    _require_file(url)
    try:
        problem = migrate.schema_problem(url, _upgrade_command(url))
    except DBAPIError as error:
        if is_unavailable(error):  # an outage, as a command meeting one says it (9023)
            raise DatabaseUnavailable(RETRY_AFTER_SECONDS) from error
        raise fail(f"cannot open database {shown(url)!r}: {first_line(error)}") from None
    except Exception as error:  # a file that cannot be opened, a bad URL
        raise fail(f"cannot open database {shown(url)!r}: {first_line(error)}") from None
    if problem is not None:
        raise fail(problem)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Create or migrate the schema (safe to run again)."""
    console.print(f"database at revision {_migrate(db)}")


def _refuse_memory(url: str) -> None:
    """An in-memory SQLite database ends with its connection: a migration there reported a
    blank revision, and every later command found no schema."""
    from sqlalchemy.exc import ArgumentError

    from coupons.adapters.db import parse_url

    try:
        parsed = parse_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # `:memory:`, a bare file name, nothing: say what a URL looks like.
        raise fail(  # not echoed: a mistyped URL may hold a password the masking misses
            "--db is not a database URL: give sqlite:///PATH (a file) or "
            "postgresql://USER@HOST:PORT/DATABASE (an '@' in a password is written %40)"
        ) from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and (
        database in ("", ":memory:")
        or parsed.query.get("mode") == "memory"
        or database.startswith("file::memory:")
    ):
        raise fail(
            f"{shown(url)} is an in-memory SQLite database, gone when its connection closes: "
            "give a file, e.g. sqlite:///coupons.db"
        )


def _migrate(url: str) -> str:
    """Upgrade the database at `url`; any failure ends the command in one line."""
    from coupons.adapters import migrate

    _refuse_memory(url)
    _require_sqlite_path(url)
    try:
        return migrate.upgrade(url)
    except migrate.SchemaAhead as error:  # not a failure of the migration: the wrong release
        raise fail(str(error)) from None
    except Exception as error:
        raise fail(f"migration failed: {first_line(error)}") from None


def require_writable(url: str) -> None:
    """Stop with one line when the database cannot be written (a read-only SQLite file, a
    replica): the server would start, report healthy, then answer every write with a 500."""
    from sqlalchemy.exc import DBAPIError

    from coupons.adapters import migrate
    from coupons.adapters.sql_uow import RETRY_AFTER_SECONDS, is_unavailable

    try:
        migrate.probe_write(url)
    except DBAPIError as error:
        if is_unavailable(error):
            raise DatabaseUnavailable(RETRY_AFTER_SECONDS) from error
        raise fail(f"the database at {shown(url)} cannot be written: {first_line(error)}") from None


@org_app.command("create")
def org_create(name: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Create an org; prints its id."""
    from coupons.services import admin

    typer.echo(_run_once(db, lambda uow: admin.create_org(uow, name)))


@org_app.command("list")
def org_list(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Every org with its id and number of API clients."""
    from coupons.services import admin

    orgs = _run_once(db, admin.list_orgs, write=False)
    _print_rows(("id", "name", "clients"), [(o.id, o.name, o.clients) for o in orgs])


@client_app.command("create")
def client_create(
    org: Annotated[str, typer.Option(help="org name")],
    username: Annotated[str, typer.Option(help="login name, unique across orgs")],
    password: Annotated[
        str | None, typer.Option(help="secret to use; generated when omitted")
    ] = None,
    groups: Annotated[
        str, typer.Option(help="comma-separated: default, coupon_admin, read_only")
    ] = "default",
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Create an API client; prints its secret once (it is stored only as a hash)."""
    from coupons.services import admin

    secret = _run_once(
        db,
        lambda uow: admin.create_client(
            uow, org=org, username=username, password=password, groups=groups
        ),
    )
    typer.echo(secret)


@client_app.command("list")
def client_list(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Every API client: username, org, groups, active or disabled (never a secret)."""
    from coupons.services import admin

    clients = _run_once(db, admin.list_clients, write=False)
    _print_rows(
        ("username", "org", "groups", "status"),
        [
            (c.username, c.org, ",".join(sorted(c.groups)), "active" if c.active else "disabled")
            for c in clients
        ],
    )


@client_app.command("reset-secret")
def client_reset_secret(username: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Give a client a new secret; prints it once. The old secret and its tokens stop working."""
    from coupons.services import admin

    typer.echo(_run_once(db, lambda uow: admin.reset_client_secret(uow, username)))


@client_app.command("disable")
def client_disable(username: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Disable a client: its credentials and tokens stop working within about a second."""
    _set_active(username, False, db)


@client_app.command("enable")
def client_enable(username: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Enable a disabled client again."""
    _set_active(username, True, db)


def _set_active(username: str, active: bool, db: str) -> None:
    from coupons.services import admin

    _run_once(db, lambda uow: admin.set_client_active(uow, username, active))
    typer.echo(f"{username} {'enabled' if active else 'disabled'}")


def _print_rows(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Plain aligned columns (no table art), easy to read and to grep or cut."""
    table = [tuple(map(str, header)), *(tuple(map(str, row)) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option(help="org name")],
    email: Annotated[str, typer.Option(help="sign-in address, unique across orgs")],
    role: Annotated[
        str, typer.Option(help="viewer (reads), support (revokes), admin (and series)")
    ],
    password: Annotated[
        str | None, typer.Option(help="password to use; generated when omitted")
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Create a console person; prints the password once (it is stored only as a hash)."""
    from coupons.services import people
    from coupons.services.common import utcnow

    secret = _run_once(
        db,
        lambda uow: people.create_person(
            uow, org=org, email=email, role=role, password=password, now=utcnow()
        ),
    )
    typer.echo(secret)


@user_app.command("disable")
def user_disable(email: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Disable a person: they are signed out everywhere and cannot sign in."""
    from coupons.services import people

    _run_once(db, lambda uow: people.disable_person(uow, email))
    typer.echo(f"{email} disabled")


@user_app.command("enable")
def user_enable(email: str, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Let a disabled person sign in again."""
    from coupons.services import people

    _run_once(db, lambda uow: people.enable_person(uow, email))
    typer.echo(f"{email} enabled")


@user_app.command("reset-password")
def user_reset_password(
    email: str,
    password: Annotated[
        str | None, typer.Option(help="password to use; generated when omitted")
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Give a person a new password and sign them out everywhere; prints it once."""
    from coupons.services import people

    typer.echo(_run_once(db, lambda uow: people.reset_password(uow, email, password)))


def _run_once(db: str, work: Callable[[UnitOfWork], T], *, write: bool = True) -> T:
    """`work` in one transaction on `db`, committed when it writes; the database closed
    afterwards (a command does one thing and ends)."""
    database = _database(db)

    def step(uow: UnitOfWork) -> T:
        value = work(uow)
        if write:
            uow.commit()
        return value

    try:
        # A unique key taken meanwhile (the same person created twice at once) is tried once
        # more, and the second try sees the first's row: "already exists", not the raw error.
        return database.run(step, write=write, retry_integrity=write)
    finally:
        database.dispose()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    # Out of range, the socket layer would bind the port modulo 65536 and log the asked one.
    port: Annotated[int, typer.Option(help="port to bind", min=1, max=65535)] = 8000,
    demo_data: Annotated[
        bool, typer.Option("--demo", help="seed demo data and print credentials")
    ] = False,
    workers: Annotated[int, typer.Option(help="worker processes", min=1)] = 1,
    db: DbOption = DEFAULT_DATABASE_URL,
    deliver_webhooks: Annotated[
        bool, typer.Option("--worker/--no-worker", help="deliver webhooks in this process")
    ] = True,
    run_jobs: Annotated[
        bool, typer.Option("--jobs/--no-jobs", help="run revoke jobs in this process")
    ] = True,
    wait_for_database: worker_cli.WaitOption = worker_cli.WAIT_FOR_DATABASE_SECONDS,
) -> None:
    """Migrate the database, then serve the API."""
    from coupons.services import demo

    try:
        settings = Settings.from_env(database_url=db)
    except ValueError as error:
        raise fail(str(error)) from None
    _require_free_port(host, port)
    await_database(db, wait_for_database)
    _migrate(db)
    require_writable(db)
    if demo_data:
        from coupons.services import people
        from coupons.services.common import utcnow

        database = _database(db)
        try:
            # Two first runs at once (hosts started together) race to make the same rows:
            # the loser's unique-key conflict is run again, and then reads the winner's.
            data = database.run(demo.seed, retry_integrity=True)
            person = database.run(
                lambda uow: people.ensure_demo_person(uow, utcnow()), retry_integrity=True
            )
        finally:
            database.dispose()
        _print_demo(data, host, port)
        _print_console(person, host, port)
    os.environ["COUPONS_DATABASE_URL"] = db
    from coupons.entrypoints.http.metrics import configure_logging

    # The job runner and webhook worker threads below run in this process, not in the
    # server's workers: without this their lines came out in another format than the rest.
    # Only now, once nothing can fail before serving: set up earlier, a command stopped by a
    # bad database would leave logging bound to a stream its caller has closed.
    configure_logging(settings.log_level)
    background: list[tuple[Any, threading.Thread]] = []  # each worker and its thread
    if deliver_webhooks:
        from coupons.entrypoints.worker import start_in_background

        background.append(start_in_background(db))
    if run_jobs:
        from coupons.entrypoints import job_worker

        background.append(job_worker.start_in_background(db))
    # uvicorn sends a SIGTERM it caught on to the handler it found once it has shut down:
    # this one ends the command through `finally`, where the workers stop.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _serve(host, port, workers, settings.log_level)
    finally:
        # Stopped with the server, not killed with the process: a job's chunk finishes and
        # its lease is given back, so another process resumes it at once.
        for worker, _ in background:
            worker.stop()
        for _, thread in background:
            thread.join(timeout=BACKGROUND_STOP_SECONDS)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _serve(host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    from coupons.entrypoints.http.metrics import server_log_config
    from coupons.entrypoints.http.protocol import EnvelopedHttpToolsProtocol

    uvicorn.run(
        "coupons.entrypoints.http.asgi:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="auto",
        http=EnvelopedHttpToolsProtocol,  # also a request it cannot parse gets the envelope
        # No WebSocket endpoint: an Upgrade request is an ordinary request to the app, not
        # one uvicorn answers itself in plain text without a request id.
        ws="none",
        log_level=log_level.lower(),
        log_config=server_log_config(log_level),
        access_log=False,
        # A worker must answer the supervisor's ping within this; the default 5 s is shorter
        # than a worker's start-up on a busy host, and the supervisor then kills and respawns
        # every worker in a loop, so the server never serves.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


def _require_free_port(host: str, port: int) -> None:
    """Refuse at once when the address is taken: found by the server only after the demo
    banner, it buried the credentials under a traceback-like error and a make failure."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # SO_REUSEADDR, as the server binds: a port left in TIME_WAIT is not "in use"
        socket.create_server((host.strip("[]"), port), family=family).close()
    except OSError as error:
        hint = "choose another with --port (with make run: make run PORT=8080)"
        if error.errno == errno.EADDRINUSE:
            raise fail(f"port {port} on {host} is already in use: {hint}") from None
        raise fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _base_url(host: str, port: int) -> str:
    """The address to print: an IPv6 host in brackets, as URLs write it."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _print_demo(data: DemoData, host: str, port: int) -> None:
    base = _base_url(host, port)
    console.rule("[bold]demo data " + ("created" if data.created else "ready (kept from before)"))
    console.print(f"API client username: [bold]{data.username}[/bold]")
    console.print(f"API client secret:   [bold]{data.secret}[/bold]  (the same on every run)")
    console.print(f"Docs:                {base}/docs")
    console.print("For the README's examples:")
    _print_command(f"export U={data.username} P={data.secret} API={base}")
    auth = f"curl -s -u {data.username}:{data.secret}"
    if data.issued_code is not None and data.series_id is not None:
        body = orjson.dumps(
            {"couponSeriesId": data.series_id, "couponCodes": [data.issued_code], "reason": "demo"}
        ).decode()
        console.print("Revoke one of the demo customer's coupons:")
        _print_command(
            f"{auth} -H 'Content-Type: application/json' "
            f"-X POST {base}/v2/coupon/revoke -d {shlex.quote(body)}"
        )
    else:
        # Earlier runs' curl lines revoked every coupon the demo customer held: still a line
        # that works, showing what they did.
        console.print(
            "The demo customer's coupons are revoked already; what was revoked, and by whom:"
        )
        _print_command(f"{auth} '{base}/v2/coupon/revocations?limit=5'")
    console.rule()


def _print_command(command: str) -> None:
    """A line to copy: never wrapped, never styled."""
    console.print(command, soft_wrap=True, markup=False, highlight=False)


def _print_console(person: tuple[str, str], host: str, port: int) -> None:
    email, password = person
    console.print(f"Console:             {_base_url(host, port)}/console")
    console.print(f"Console email:       [bold]{email}[/bold]")
    console.print(f"Console password:    [bold]{password}[/bold] (demo only)")
    console.rule()


def main() -> None:
    from coupons.entrypoints.quiet_log import quiet_logging

    quiet_logging()
    app()


if __name__ == "__main__":
    main()
