"""`coupons revoke --on-server`: upload the codes file as a revoke job, watch it, fetch its report.

The server does the work (spec §8); this command uploads the file once, shows the job's
progress with the same bar as the client-side loop, then downloads the report. Its
`Idempotency-Key` is derived from the file's content and the arguments, so running the same
command again within 24 hours watches the same job instead of starting a second one. Ctrl-C
stops watching only: the job goes on on the server (cancel it with the API).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coupons.client import BasicAuth, CouponApiError, CouponClient, RetryPolicy, RevokeJob
from coupons.entrypoints.bulk_revoke.results import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_UNFINISHED,
    default_results,
)
from coupons.entrypoints.bulk_revoke.ui import progress_bar
from coupons.entrypoints.whole_file import whole_file

# Outcomes after which a code is where the user wanted it (exit status 0).
SUCCESSFUL = {"revoked", "would_revoke", "already_revoked", "duplicate_in_file"}
POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Args:
    series: int | None
    codes_file: Path
    reason: str | None
    dry_run: bool
    case: str
    results: Path | None
    url: str
    username: str | None
    password: str | None
    retry_seconds: float


def idempotency_key(args: Args) -> str:
    """The same file and arguments give the same key: a rerun finds the same job."""
    digest = hashlib.sha256()
    with args.codes_file.open("rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    for part in (args.series, args.reason, args.dry_run, args.case.upper()):
        digest.update(repr(part).encode() + b"\0")
    return "cli-job-" + digest.hexdigest()[:48]


def command(args: Args, out: Console, err: Console, sleep: float = POLL_SECONDS) -> int:
    """Run the whole thing; returns the exit status (0 all done, 1 some failed, 2 unfinished)."""
    if not args.username or not args.password:
        err.print("[red]error:[/red] give --username and --password")
        return EXIT_UNFINISHED
    results = args.results or default_results(args.codes_file, args.dry_run)
    retry = RetryPolicy.for_seconds(args.retry_seconds)
    try:
        with CouponClient(args.url, BasicAuth(args.username, args.password), retry=retry) as api:
            job = api.start_revoke_job(
                args.codes_file,
                series_id=args.series,
                reason=args.reason,
                dry_run=args.dry_run,
                code_case=args.case.upper(),
                idempotency_key=idempotency_key(args),
            )
            err.print(f"job {job.job_id}: {job.total:,} codes")
            job = watch(api, job, err, sleep)
            counts, errors = download(api, job.job_id, results)
    except (OSError, httpx.InvalidURL) as error:
        err.print(f"[red]error:[/red] {escape(str(error))}")
        return EXIT_UNFINISHED
    except CouponApiError as error:
        err.print(f"[red]error:[/red] {escape(error.describe())}")
        return EXIT_UNFINISHED
    except KeyboardInterrupt:
        err.print("stopped watching; the job goes on on the server (rerun to watch it again)")
        return EXIT_UNFINISHED
    out.print(summary(job, counts, errors))
    out.print(f"results: {escape(str(results))}")
    if job.state != "SUCCEEDED":
        err.print(f"[red]not finished:[/red] the job ended {job.state} {escape(job.error or '')}")
        return EXIT_UNFINISHED
    if job.undone_by_job_id is not None and not job.dry_run:
        # A rerun within 24 hours follows the same job; if that job was undone since, what
        # its report calls revoked has been put back, and success would be a lie.
        err.print(
            f"[red]undone:[/red] job {job.job_id} was undone by job {job.undone_by_job_id}; "
            "what it revoked has been reinstated. To revoke these codes again, run with "
            "another --reason (a new job)."
        )
        return EXIT_UNFINISHED
    failed = {k: v for k, v in counts.items() if k not in SUCCESSFUL}
    for outcome, n in failed.items():
        err.print(f"{n:,} {outcome}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def watch(api: CouponClient, job: RevokeJob, err: Console, sleep: float) -> RevokeJob:
    """Poll the job until it ends, moving the progress bar with its `processed` count."""
    progress = progress_bar(err)
    with progress:
        task = progress.add_task(
            "dry run" if job.dry_run else "revoking", total=job.total, completed=job.processed
        )
        while not job.is_finished:
            time.sleep(sleep)
            job = api.revoke_job(job.job_id)
            progress.update(task, completed=job.processed)
    return job


def download(
    api: CouponClient, job_id: str, results: Path
) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Write the report beside the codes file (atomically) and count its outcomes."""
    counts: Counter[str] = Counter()
    errors: dict[str, Counter[str]] = {}
    tail = ""
    header = True
    # Network pieces may end inside a character (a code of "É"s): decoded across pieces.
    decoder = codecs.getincrementaldecoder("utf-8")()
    with whole_file(results) as handle:
        for piece in api.revoke_job_report(job_id):
            handle.write(piece)
            text = tail + decoder.decode(piece)
            *lines, tail = text.split("\n")
            for row in csv.reader(io.StringIO("\n".join(lines))):
                if header:
                    header = False
                    continue
                counts[row[1]] += 1
                if row[2]:
                    errors.setdefault(row[1], Counter())[row[2]] += 1
    return counts, errors


def summary(job: RevokeJob, counts: Counter[str], errors: dict[str, Counter[str]]) -> Table:
    title = f"revoke job {job.job_id} ({job.state})" + (" - dry run" if job.dry_run else "")
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("codes", justify="right")
    table.add_column("errorCode")
    for outcome, n in counts.most_common():
        codes = errors.get(outcome, Counter())
        table.add_row(outcome, f"{n:,}", ", ".join(f"{c} x{k:,}" for c, k in codes.items()))
    table.add_row("total", f"{sum(counts.values()):,} of {job.total:,}", "", style="bold")
    return table
