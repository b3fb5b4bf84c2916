"""`coupons revoke`: revoke any number of codes from a file through the HTTP API.

Codes are streamed from the file in batches of at most 50 (the API's limit), several batches in
flight. A journal beside the results file (JSON lines) records each batch's idempotency key
before it is sent and its per-code results after, so a rerun with the same arguments skips
finished batches and resends unfinished ones with their original keys: the server replays
those answers, and no code is revoked or counted twice. The result CSV and the summary are
built from the journal at the end, so they cover every code exactly once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from coupons.client import (
    BasicAuth,
    CodeCase,
    CouponApiError,
    CouponApiUnavailable,
    CouponClient,
    RetryPolicy,
)

BATCH_SIZE = 50  # the API's limit of codes per revoke request
MAX_CODE_LENGTH = 100  # longer codes would make the server refuse the whole batch
JOURNAL_VERSION = 1

EXIT_OK, EXIT_SOME_FAILED, EXIT_UNFINISHED = 0, 1, 2


class Outcome(StrEnum):
    """What happened to one code; the `outcome` column of the result CSV."""

    REVOKED = "revoked"
    WOULD_REVOKE = "would_revoke"  # dry run
    ALREADY_REVOKED = "already_revoked"
    REDEEMED = "redeemed"
    NOT_FOUND = "not_found"
    NOT_ISSUED = "not_issued_to_customer"
    INVALID = "invalid"
    DUPLICATE = "duplicate"  # the same code earlier in the same batch
    FAILED = "failed"


SUCCESSFUL = {Outcome.REVOKED, Outcome.WOULD_REVOKE, Outcome.ALREADY_REVOKED, Outcome.DUPLICATE}
OUTCOME_OF_ERROR = {405: Outcome.REDEEMED, 404: Outcome.NOT_FOUND, 703: Outcome.NOT_ISSUED}
WHY = {
    Outcome.REDEEMED: "redeemed coupons cannot be revoked (405)",
    Outcome.NOT_FOUND: "no such code in the series (682/404)",
    Outcome.NOT_ISSUED: "issued to another customer (703)",
    Outcome.INVALID: f"not a valid code (empty after trimming or over {MAX_CODE_LENGTH} chars)",
    Outcome.FAILED: "the server refused these codes (see errorCode)",
}

Row = tuple[str, str, str, str]  # code, outcome, errorCode, couponId


class BulkRevokeError(Exception):
    """The run cannot go on (bad arguments, unreadable file, journal of another run)."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything that must match for a rerun to resume a journal."""

    series: int
    codes_file: str
    codes_sha256: str
    reason: str | None
    case: str
    dry_run: bool


# --- reading codes -------------------------------------------------------------------------


def read_codes(path: Path) -> Iterator[str]:
    """Stream codes: one a line (.txt), or the `code` column of a .csv; blanks skipped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.reader(handle)
            header = next(reader, None)
            names = [name.strip().lower() for name in header or []]
            if "code" not in names:
                raise BulkRevokeError(f"{path} has no 'code' column (header: {header})")
            column = names.index("code")
            for record in reader:
                code = record[column].strip() if column < len(record) else ""
                if code:
                    yield code
        else:
            for line in handle:
                code = line.strip()
                if code:
                    yield code


def batches(codes: Iterator[str], size: int = BATCH_SIZE) -> Iterator[tuple[int, list[str]]]:
    """Numbered batches in file order; the numbering is what a rerun resumes by."""
    batch: list[str] = []
    number = 0
    for code in codes:
        batch.append(code)
        if len(batch) == size:
            yield number, batch
            number, batch = number + 1, []
    if batch:
        yield number, batch


def scan(path: Path) -> tuple[int, str]:
    """Count the codes and fingerprint the file (one streaming pass)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    count = sum(1 for _ in read_codes(path))
    return count, digest.hexdigest()


# --- the journal ---------------------------------------------------------------------------


class Journal:
    """Append-only JSON lines: a header, then `sent` (batch, key) and `done` (batch, rows)."""

    def __init__(self, path: Path, spec: RunSpec) -> None:
        self.path = path
        self.done: set[int] = set()
        self.keys: dict[int, str] = {}
        header = {"journal": JOURNAL_VERSION, **asdict(spec)}
        if path.exists() and path.stat().st_size > 0:
            self._load(header)
            self._file: IO[str] = path.open("a", encoding="utf-8")
            if not self._ends_with_newline():
                self._file.write("\n")  # a crash cut the last record short
        else:
            self._file = path.open("w", encoding="utf-8")
            self._write(header)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def _load(self, header: dict[str, Any]) -> None:
        for record in self._records():
            if "journal" in record:
                if record != header:
                    raise BulkRevokeError(
                        f"{self.path} belongs to a run with other arguments or another version "
                        "of the codes file; rerun with those, or pick another --results file"
                    )
            elif record.get("state") == "sent":
                self.keys[record["batch"]] = record["key"]
            elif record.get("state") == "done":
                self.done.add(record["batch"])
        for finished in self.done:
            self.keys.pop(finished, None)

    def _records(self) -> Iterator[dict[str, Any]]:
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # the torn last line of a killed run: that batch is resent

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        # Flushed before the request goes out: a killed process still leaves the key behind.
        self._file.flush()

    def key_for(self, batch: int) -> str:
        """The batch's idempotency key: the recorded one, or a new one recorded now."""
        key = self.keys.get(batch)
        if key is None:
            key = uuid.uuid4().hex
            self.keys[batch] = key
            self._write({"batch": batch, "state": "sent", "key": key})
        return key

    def finish(self, batch: int, rows: list[Row]) -> None:
        self._write({"batch": batch, "state": "done", "rows": rows})
        self.done.add(batch)
        self.keys.pop(batch, None)

    def rows(self) -> Iterator[Row]:
        """Every finished batch's rows, each batch once."""
        seen: set[int] = set()
        for record in self._records():
            if record.get("state") == "done" and record["batch"] not in seen:
                seen.add(record["batch"])
                for row in record["rows"]:
                    yield (row[0], row[1], row[2], row[3])

    def close(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()


# --- one batch -----------------------------------------------------------------------------


def revoke_batch(
    client: CouponClient,
    spec: RunSpec,
    codes: list[str],
    key: str,
) -> list[Row]:
    """Revoke one batch and say what happened to each of its codes, in file order."""
    sendable = [c for c in codes if len(c) <= MAX_CODE_LENGTH]
    found: dict[str, Row] = {}
    if sendable:
        result = client.revoke(
            series_id=spec.series,
            codes=sendable,
            reason=spec.reason,
            code_case=_case(spec.case),
            dry_run=spec.dry_run,
            idempotency_key=key,
        )
        done = Outcome.WOULD_REVOKE if spec.dry_run else Outcome.REVOKED
        for coupon in result.changed:
            found[_match(coupon.coupon_code)] = (
                coupon.coupon_code,
                done.value,
                "",
                str(coupon.coupon_id),
            )
        unclear: list[str] = []
        for group in result.failed:
            for code in group.coupon_codes:
                if group.error_code == 682:
                    unclear.append(code)
                outcome = OUTCOME_OF_ERROR.get(group.error_code, Outcome.FAILED)
                found[_match(code)] = (code, outcome.value, str(group.error_code), "")
        if unclear:
            _tell_revoked_from_unknown(client, spec, unclear, found)
    rows: list[Row] = []
    seen: set[str] = set()
    for code in codes:
        match = _match(code)
        if len(code) > MAX_CODE_LENGTH:
            rows.append((code, Outcome.INVALID.value, "9002", ""))
        elif match in seen:
            rows.append((code, Outcome.DUPLICATE.value, "", ""))
        else:
            seen.add(match)
            rows.append(found.get(match, (code, Outcome.FAILED.value, "", "")))
    return rows


def _tell_revoked_from_unknown(
    client: CouponClient, spec: RunSpec, codes: list[str], found: dict[str, Row]
) -> None:
    """682 means "not in the series" or "already revoked"; a dry-run reinstate tells which."""
    check = client.reinstate(
        series_id=spec.series, codes=codes, code_case=_case(spec.case), dry_run=True
    )
    for coupon in check.changed:
        found[_match(coupon.coupon_code)] = (
            coupon.coupon_code,
            Outcome.ALREADY_REVOKED.value,
            "682",
            str(coupon.coupon_id),
        )
    for group in check.failed:
        for code in group.coupon_codes:
            found[_match(code)] = (code, Outcome.NOT_FOUND.value, "682", "")


def _match(code: str) -> str:
    # The server matches codes trimmed and case-insensitively; so must the mapping back.
    return code.strip().casefold()


def _case(value: str) -> CodeCase:
    return value  # type: ignore[return-value]  # validated by the option's choices


# --- the run -------------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    """Codes per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- codes/s" if speed is None else f"{speed:,.0f} codes/s")


def progress_bar(err: Console) -> Progress:
    """The bar of both ways to revoke (client loop and server job): codes, rate, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )


@dataclass
class RunReport:
    total: int
    counts: Counter[str]
    error_codes: dict[str, Counter[str]]
    finished: bool
    problem: str | None = None

    @property
    def reported(self) -> int:
        return sum(self.counts.values())

    @property
    def all_revoked(self) -> bool:
        return all(Outcome(name) in SUCCESSFUL for name in self.counts)


def run(
    client: CouponClient,
    spec: RunSpec,
    codes_path: Path,
    results: Path,
    total: int,
    parallel: int,
    err: Console,
) -> RunReport:
    """Send every unfinished batch, then write the result CSV from the journal."""
    journal = Journal(results.with_name(results.name + ".journal"), spec)
    problem: str | None = None
    progress = progress_bar(err)
    pending: dict[Future[list[Row]], tuple[int, int]] = {}

    def settle(futures: set[Future[list[Row]]]) -> None:
        nonlocal problem
        for future in futures:
            batch, size = pending.pop(future)
            try:
                journal.finish(batch, future.result())
            except CouponApiError as error:
                # Left unfinished in the journal: the rerun resends it with the same key.
                problem = problem or _describe(error)
            progress.advance(task, size)

    with progress, ThreadPoolExecutor(max_workers=parallel) as pool:
        # Batches finished by an earlier run start the bar filled, so the rate and ETA
        # describe this run's own progress.
        task = progress.add_task(
            "dry run" if spec.dry_run else "revoking",
            total=total,
            completed=_codes_in(journal.done, total),
        )
        try:
            for batch, codes in batches(read_codes(codes_path)):
                if problem is not None:
                    break
                if batch in journal.done:
                    continue
                key = journal.key_for(batch)
                pending[pool.submit(revoke_batch, client, spec, codes, key)] = (batch, len(codes))
                # Keep a bounded window of work queued: memory stays flat for any file size.
                if len(pending) >= parallel * 2:
                    finished, _ = wait(set(pending), return_when=FIRST_COMPLETED)
                    settle(finished)
            settle(wait(set(pending)).done)
        except KeyboardInterrupt:
            problem = "interrupted"
            for future in list(pending):
                if future.cancel():
                    pending.pop(future)
            settle(wait(set(pending)).done)
        finally:
            journal.close()
    return _write_results(journal, results, total, problem)


def _codes_in(done: set[int], total: int) -> int:
    """How many codes the finished batches hold (only the last batch may be short)."""
    last = (total - 1) // BATCH_SIZE
    return sum(total - last * BATCH_SIZE if b == last else BATCH_SIZE for b in done if b <= last)


def _describe(error: CouponApiError) -> str:
    if isinstance(error, CouponApiUnavailable):
        return f"server unavailable after retries: {error.message}"
    if error.code == 0:
        return error.message
    return f"the server refused the request: {error.code} {error.message}"


def _write_results(journal: Journal, results: Path, total: int, problem: str | None) -> RunReport:
    """Write the CSV from the journal (atomically) and count outcomes."""
    counts: Counter[str] = Counter()
    error_codes: dict[str, Counter[str]] = {}
    partial = results.with_name(results.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["code", "outcome", "errorCode", "couponId"])
        for row in journal.rows():
            writer.writerow(row)
            counts[row[1]] += 1
            if row[2]:
                error_codes.setdefault(row[1], Counter())[row[2]] += 1
    partial.replace(results)
    finished = problem is None and sum(counts.values()) == total
    if problem is None and not finished:
        problem = "the journal does not cover every code of the file"
    return RunReport(total, counts, error_codes, finished, problem)


def summary_table(report: RunReport, dry_run: bool) -> Table:
    """One row per outcome, with the error codes behind it."""
    title = "bulk revoke" + (" (dry run: nothing changed)" if dry_run else "")
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("codes", justify="right")
    table.add_column("errorCode")
    for outcome in Outcome:
        count = report.counts.get(outcome.value)
        if count:
            codes = report.error_codes.get(outcome.value, Counter())
            table.add_row(
                outcome.value, f"{count:,}", ", ".join(f"{c} x{n:,}" for c, n in codes.items())
            )
    table.add_row("total", f"{report.reported:,} of {report.total:,}", "", style="bold")
    return table


def exit_status(report: RunReport) -> int:
    if not report.finished:
        return EXIT_UNFINISHED
    return EXIT_OK if report.all_revoked else EXIT_SOME_FAILED


def default_results(codes_file: Path, dry_run: bool) -> Path:
    suffix = ".dry-run.csv" if dry_run else ".results.csv"
    return codes_file.with_name(codes_file.stem + suffix)


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
        float, typer.Option(min=0, help="keep retrying an unreachable server this long")
    ] = 60.0,
    on_server: Annotated[
        bool, typer.Option("--on-server", help="upload the file as a server-side revoke job")
    ] = False,
) -> None:
    """Revoke every code of a file through the API, 50 a request; rerun to resume."""
    err = Console(stderr=True)
    out = Console()
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
        err.print(f"[red]error:[/red] {message}")
        return typer.Exit(EXIT_UNFINISHED)

    case = case.strip().upper()
    if case not in ("UPPER", "LOWER", "AS_IT_IS"):
        raise stop(f"--case must be UPPER, LOWER or AS_IT_IS, not {case!r}")
    if not username or not password:
        raise stop("give --username and --password (or COUPONS_USERNAME, COUPONS_PASSWORD)")
    if reason is not None and len(reason) > 500:
        raise stop("--reason is limited to 500 characters")
    results = results or default_results(codes_file, dry_run)
    try:
        total, digest = scan(codes_file)
        spec = RunSpec(series, str(codes_file.resolve()), digest, reason, case, dry_run)
        retry = RetryPolicy(deadline=retry_seconds)
        with CouponClient(
            url, BasicAuth(username, password), retry=retry, max_connections=parallel
        ) as client:
            report = run(client, spec, codes_file, results, total, parallel, err)
    except (OSError, UnicodeDecodeError, BulkRevokeError, httpx.InvalidURL) as error:
        raise stop(str(error)) from None
    except KeyboardInterrupt:  # before any batch went out, or while writing the results
        raise stop("interrupted; rerun the same command to resume") from None
    out.print(summary_table(report, dry_run))
    out.print(f"results: {results}")
    status = exit_status(report)
    if status == EXIT_UNFINISHED:
        err.print(f"[red]not finished:[/red] {report.problem}; rerun the same command to resume")
    elif status == EXIT_SOME_FAILED:
        for name in report.counts:
            outcome = Outcome(name)
            if outcome not in SUCCESSFUL:
                err.print(f"{report.counts[name]:,} {name}: {WHY[outcome]}")
    raise typer.Exit(status)


def main() -> None:
    """Run the command alone (`python -m coupons.entrypoints.bulk_revoke`): starts faster,
    as it loads neither the server nor the database layer."""
    typer.run(revoke)


if __name__ == "__main__":
    main()
