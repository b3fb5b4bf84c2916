"""The `coupons revoke` command: its options, and the run that ties the parts together.

Codes are planned from the whole file (`codes_file`), sent in numbered batches of at most 50
with several in flight under keys kept in a journal (`journal`, `calls`), and reported per line
in file order (`results`, `ui`). The command loads neither the server nor the database layer,
so it starts fast; the domain's code rules it shares have no heavy imports.
"""

from __future__ import annotations

import math
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from coupons.client import (
    BasicAuth,
    CouponApiError,
    CouponApiUnavailable,
    CouponClient,
    RetryPolicy,
)
from coupons.domain.codes import CodeCase
from coupons.domain.revoke import MAX_REASON_LENGTH
from coupons.entrypoints.bulk_revoke.calls import revoke_batch
from coupons.entrypoints.bulk_revoke.codes_file import CodesFileError, Scan, plan, scan
from coupons.entrypoints.bulk_revoke.journal import (
    Journal,
    JournalMismatch,
    Row,
    RunSpec,
    batches,
    codes_in,
)
from coupons.entrypoints.bulk_revoke.results import (
    EXIT_SOME_FAILED,
    EXIT_UNFINISHED,
    RunReport,
    default_results,
    write_results,
)
from coupons.entrypoints.bulk_revoke.ui import failure_reasons, progress_bar, summary_table


def run(
    client: CouponClient,
    spec: RunSpec,
    codes_path: Path,
    scanned: Scan,
    results: Path,
    parallel: int,
    err: Console,
    stop: threading.Event | None = None,
) -> RunReport:
    """Send every unfinished batch, then write the result CSV from the journal.

    `stop` is the client's: set once the run has a problem (an interrupt, a server gone, a
    refusal), so batches still retrying give up at once instead of each waiting out its
    own `--retry-seconds`."""
    stop = stop or threading.Event()
    # The lock is held until the results are written from the journal (and it is removed,
    # where it is): released before, a second run could truncate it mid-read.
    with Journal(results.with_name(results.name + ".journal"), spec) as journal:
        problem: str | None = None
        progress = progress_bar(err)
        pending: dict[Future[list[Row]], tuple[int, int]] = {}
        refused: set[int] = set()  # batches the server answered with a whole-request refusal
        unsent: set[int] = set()  # batches no try of which reached the server (none connected)

        def settle(futures: set[Future[list[Row]]]) -> None:
            nonlocal problem
            for future in futures:
                batch, size = pending.pop(future)
                try:
                    journal.finish(batch, future.result())
                except CouponApiError as error:
                    # Left unfinished in the journal: the rerun resends it with the same key.
                    problem = problem or _describe(error)
                    stop.set()
                    if not isinstance(error, CouponApiUnavailable) and error.code != 0:
                        refused.add(batch)
                    elif isinstance(error, CouponApiUnavailable) and not error.delivered:
                        unsent.add(batch)
                progress.advance(task, size)

        def drop_queued() -> None:
            """Batches not started yet are not sent at all: nothing of theirs reached a server."""
            for future in list(pending):
                if future.cancel():
                    unsent.add(pending.pop(future)[0])

        with progress, ThreadPoolExecutor(max_workers=parallel) as pool:
            # Lines decided without the server and batches finished by an earlier run start the
            # bar filled, so the rate and ETA describe this run's own progress.
            local = scanned.total - scanned.sendable
            task = progress.add_task(
                "dry run" if spec.dry_run else "revoking",
                total=scanned.total,
                completed=local + codes_in(journal.done, scanned.sendable),
            )
            try:
                for batch, lines in batches(plan(codes_path, scanned)):
                    if problem is not None:
                        break
                    if batch in journal.done:
                        continue
                    key = journal.key_for(batch)
                    future = pool.submit(revoke_batch, client, spec, lines, key)
                    pending[future] = (batch, len(lines))
                    # Keep a bounded window of work queued: memory stays flat for any file size.
                    if len(pending) >= parallel * 2:
                        finished, _ = wait(set(pending), return_when=FIRST_COMPLETED)
                        settle(finished)
                if problem is not None:
                    drop_queued()
                settle(wait(set(pending)).done)
            except KeyboardInterrupt:
                problem = "interrupted"
                stop.set()
                drop_queued()
                settle(wait(set(pending)).done)
            finally:
                journal.end_writes()
        every_line = plan(codes_path, scanned)
        untouched = refused | unsent
        if (
            untouched
            and not journal.resumed
            and not journal.done
            and set(journal.keys) <= untouched
        ):
            # This run started the journal and every batch it sent was refused whole or never
            # reached the server (a wrong port, a server down), so none changed anything (a
            # refusal mid-run, after batches went through, is no such case: they did their
            # work): there is nothing to resume, and a journal kept would tie the corrected
            # rerun to these arguments. (A resumed journal holds keys of an earlier
            # run whose answers may have been lost: it is always kept.) Nor is there a result
            # to keep: the outcomes are counted, and a results file already there (an earlier
            # run's record) is left as it was.
            report = write_results(
                every_line, journal, None, scanned.total, CodeCase[spec.case], problem
            )
            journal.path.unlink(missing_ok=True)
            return replace(report, nothing_changed=True)
        return write_results(
            every_line, journal, results, scanned.total, CodeCase[spec.case], problem
        )


def _describe(error: CouponApiError) -> str:
    if isinstance(error, CouponApiUnavailable):
        return f"server unavailable after retries: {error.message}"
    if error.code == 0:
        return error.message
    return f"{REFUSED}: {error.code} {error.message}"


# How a run stopped by the server's refusal (not by an outage or an interrupt) is described:
# the same request would be refused again, so resuming needs the cause fixed first.
REFUSED = "the server refused the request"


def _advice(problem: str | None) -> str:
    if problem is not None and problem.startswith(REFUSED):
        return (
            "the same request would be refused again: fix what it names, "
            "then rerun the same command to resume"
        )
    return "rerun the same command to resume"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _bad_url(url: str) -> str | None:
    """Why `url` cannot be the server's address, if it cannot."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        return str(error)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "give the server's address as http://HOST[:PORT] or https://HOST[:PORT]"
    return None


def _unwritable(results: Path) -> str | None:
    """Why the result CSV (and its journal beside it) cannot be written there, if it cannot."""
    if results.is_dir():
        return "is a directory; give the path of a file"
    if results.exists() and not results.is_file():
        # A device or a pipe (`/dev/null`) would be replaced by the finished file.
        return "is not a regular file; give the path of a file to write"
    if not results.parent.is_dir():
        return f"its folder {results.parent} does not exist"
    return None


def _unreadable(codes_file: Path) -> str | None:
    """Why the codes file cannot be read as the run needs, if it cannot. The run reads it
    more than once (to count, to send, to resume), so a pipe (`<(...)`) or a FIFO would be
    read empty the second time, or wait forever."""
    if not codes_file.exists():
        return "no such file"
    if codes_file.is_dir():
        return "is a directory; give the path of a codes file"
    if not codes_file.is_file():
        return "is not a regular file (a pipe is read only once); save the codes to a file"
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def revoke(
    codes_file: Annotated[
        Path, typer.Option("--codes-file", help=".txt (one code a line) or .csv (a code column)")
    ],
    series: Annotated[int | None, typer.Option("--series", min=1, help="coupon series id")] = None,
    reason: Annotated[
        str | None, typer.Option(help="recorded in each coupon's history (<= 500 chars)")
    ] = None,
    url: Annotated[str, typer.Option(envvar="COUPONS_URL", help="API base URL")] = (
        "http://127.0.0.1:8000"
    ),
    username: Annotated[
        str | None, typer.Option(envvar="COUPONS_USERNAME", help="API client username")
    ] = None,
    password: Annotated[
        str | None, typer.Option(envvar="COUPONS_PASSWORD", help="API client secret")
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, max=32, help="requests in flight")] = 4,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would happen, change nothing")
    ] = False,
    case: Annotated[
        str, typer.Option(help="how codes are written in the results: UPPER, LOWER, AS_IT_IS")
    ] = "UPPER",
    results: Annotated[
        Path | None,
        typer.Option(help="result CSV (default: <codes-file stem>.results.csv beside it)"),
    ] = None,
    retry_seconds: Annotated[
        float,
        typer.Option(min=0, max=86_400 * 7, help="keep retrying an unreachable server this long"),
    ] = 60.0,
    on_server: Annotated[
        bool, typer.Option("--on-server", help="upload the file as a server-side revoke job")
    ] = False,
) -> None:
    """Revoke every code of a file through the API, 50 a request; rerun to resume."""
    err = Console(stderr=True, soft_wrap=True)
    out = Console()
    if (problem := _unreadable(codes_file)) is not None:
        err.print(f"[red]error:[/red] --codes-file {escape(str(codes_file))}: {escape(problem)}")
        raise typer.Exit(EXIT_UNFINISHED)
    if results is not None and _same_file(results, codes_file):
        # Writing the results there would replace the codes the run (and its rerun) reads.
        err.print("[red]error:[/red] --results must not be the codes file itself")
        raise typer.Exit(EXIT_UNFINISHED)
    if results is not None and (problem := _unwritable(results)):
        # Found out only at the end, the codes would be revoked and their report lost.
        err.print(f"[red]error:[/red] --results {escape(str(results))}: {escape(problem)}")
        raise typer.Exit(EXIT_UNFINISHED)
    if (problem := _bad_url(url)) is not None:
        # Found out by the first request, it would leave a journal tying the corrected
        # command to this run's arguments.
        err.print(f"[red]error:[/red] --url {escape(url)}: {escape(problem)}")
        raise typer.Exit(EXIT_UNFINISHED)
    if on_server:
        from coupons.entrypoints import server_revoke

        raise typer.Exit(
            server_revoke.command(
                server_revoke.Args(
                    series,
                    codes_file,
                    reason,
                    dry_run,
                    case,
                    results,
                    url,
                    username,
                    password,
                    retry_seconds,
                ),
                out,
                err,
            )
        )
    if series is None:
        err.print("[red]error:[/red] --series is required (it is optional with --on-server)")
        raise typer.Exit(EXIT_UNFINISHED)

    def stop(message: str) -> typer.Exit:
        err.print(f"[red]error:[/red] {escape(message)}")
        return typer.Exit(EXIT_UNFINISHED)

    case = case.strip().upper()
    if case not in ("UPPER", "LOWER", "AS_IT_IS"):
        raise stop(f"--case must be UPPER, LOWER or AS_IT_IS, not {case!r}")
    if not username or not password:
        raise stop("give --username and --password (or COUPONS_USERNAME, COUPONS_PASSWORD)")
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise stop(f"--reason is limited to {MAX_REASON_LENGTH} characters")
    if not math.isfinite(retry_seconds):  # `nan` passes the range: no deadline would end it
        raise stop("--retry-seconds must be a number of seconds")
    results = results or default_results(codes_file, dry_run)
    # `kill` and `timeout` stop a run as Ctrl-C does: what is in flight settles, the journal
    # and the results are written, and the rerun resumes (not a silent exit mid-batch).
    main = threading.current_thread() is threading.main_thread()  # where handlers may be set
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        scanned = scan(codes_file)
        if scanned.total == 0:
            # As the server refuses an empty upload (9027), and before a journal or results
            # exist that would tie the corrected file to this run.
            raise stop(f"--codes-file {codes_file} holds no codes: nothing to revoke")
        path = str(codes_file.resolve())
        spec = RunSpec(series, path, scanned.sha256, reason, case, dry_run, username, url)
        retry = RetryPolicy.for_seconds(retry_seconds)
        stopping = threading.Event()
        with CouponClient(
            url,
            BasicAuth(username, password),
            retry=retry,
            max_connections=parallel,
            stop=stopping,
        ) as client:
            report = run(client, spec, codes_file, scanned, results, parallel, err, stopping)
    except (
        OSError,
        UnicodeDecodeError,
        CodesFileError,
        JournalMismatch,
        httpx.InvalidURL,
    ) as error:
        raise stop(str(error)) from None
    except KeyboardInterrupt:  # before any batch went out, or while writing the results
        raise stop("interrupted; rerun the same command to resume") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    status = report.exit_status
    refused = status == EXIT_UNFINISHED and report.nothing_changed
    if not refused:  # a run refused outright has no counts to show (a table suggested some)
        out.print(summary_table(report, dry_run))
    if not report.nothing_changed:
        out.print(f"results: {escape(str(results))}")
    if refused:
        err.print(
            f"[red]not finished:[/red] {escape(report.problem or '')}; nothing was revoked and "
            "no results file was written: fix what it names and run the command again (with other "
            "arguments too: nothing to resume)"
        )
    elif status == EXIT_UNFINISHED:
        err.print(
            f"[red]not finished:[/red] {escape(report.problem or '')}; "
            f"{escape(_advice(report.problem))}"
        )
    elif status == EXIT_SOME_FAILED:
        for reason_line in failure_reasons(report):
            err.print(reason_line)
    raise typer.Exit(status)


def main() -> None:
    """Run the command alone (`python -m coupons.entrypoints.bulk_revoke`): starts faster,
    as it loads neither the server nor the database layer."""
    typer.run(revoke)
