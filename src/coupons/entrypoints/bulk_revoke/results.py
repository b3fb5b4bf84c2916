"""Outcomes per code, the result CSV (one row per code, in file order) and the run's counts."""

from __future__ import annotations

import contextlib
import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from coupons.domain.codes import MAX_CODE_LENGTH, MAX_CODES_PER_REQUEST, CodeCase
from coupons.entrypoints.bulk_revoke.codes_file import Line, LineKind
from coupons.entrypoints.bulk_revoke.journal import Journal, Row
from coupons.entrypoints.spreadsheet import neutralise
from coupons.entrypoints.whole_file import whole_file

COLUMNS = ["line", "code", "outcome", "errorCode", "couponId"]
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
    DUPLICATE = "duplicate_in_file"  # the same code on an earlier line of the file
    FAILED = "failed"


SUCCESSFUL = {Outcome.REVOKED, Outcome.WOULD_REVOKE, Outcome.ALREADY_REVOKED, Outcome.DUPLICATE}
OUTCOME_OF_ERROR = {405: Outcome.REDEEMED, 404: Outcome.NOT_FOUND, 703: Outcome.NOT_ISSUED}
WHY = {
    Outcome.REDEEMED: "redeemed coupons cannot be revoked (405)",
    Outcome.NOT_FOUND: "no such code in the series (682/404)",
    Outcome.NOT_ISSUED: "issued to another customer (703)",
    Outcome.INVALID: (
        f"not a valid code (over {MAX_CODE_LENGTH} characters, or a control character)"
    ),
    Outcome.FAILED: "the server refused these codes (see errorCode)",
}


@dataclass
class RunReport:
    """The counts behind the summary and the exit status."""

    total: int
    counts: Counter[str]
    error_codes: dict[str, Counter[str]]
    finished: bool
    problem: str | None = None
    # Stopped by a refusal before any batch could have changed anything: the journal is
    # gone, so a corrected command (other arguments too) starts afresh.
    nothing_changed: bool = False

    @property
    def reported(self) -> int:
        return sum(self.counts.values())

    @property
    def all_revoked(self) -> bool:
        return all(Outcome(name) in SUCCESSFUL for name in self.counts)

    @property
    def exit_status(self) -> int:
        if not self.finished:
            return EXIT_UNFINISHED
        return EXIT_OK if self.all_revoked else EXIT_SOME_FAILED


def local_row(line: Line, case: CodeCase) -> Row:
    """The row of a line decided without the server (a duplicate or an invalid code)."""
    if line.kind is LineKind.DUPLICATE:
        return (line.number, case.render(line.code), Outcome.DUPLICATE.value, "", "")
    return (line.number, case.render(line.code), Outcome.INVALID.value, "9002", "")


def ordered_rows(lines: Iterator[Line], journal: Journal, case: CodeCase) -> Iterator[Row]:
    """Every reported row in file order, whatever order the batches finished in; lines of
    unfinished batches are left out. One batch's rows are in memory at a time."""
    sent = 0
    loaded = -1
    answers: dict[int, Row] = {}
    with journal.path.open("rb") as reader:
        for line in lines:
            if line.kind is not LineKind.SEND:
                yield local_row(line, case)
                continue
            batch = sent // MAX_CODES_PER_REQUEST
            sent += 1
            if batch != loaded:
                loaded = batch
                answers = {row[0]: row for row in journal.rows_of(batch, reader) or []}
            row = answers.get(line.number)
            if row is not None:
                yield row


def write_results(
    lines: Iterator[Line],
    journal: Journal,
    results: Path | None,
    total: int,
    case: CodeCase,
    problem: str | None,
) -> RunReport:
    """Write the CSV (whole or not at all: `whole_file`) and count outcomes; with no
    `results`, count only (a run that changed nothing leaves an earlier file as it was)."""
    counts: Counter[str] = Counter()
    error_codes: dict[str, Counter[str]] = {}
    with whole_file(results, text=True) if results else contextlib.nullcontext() as handle:
        writer = csv.writer(handle) if handle is not None else None
        if writer is not None:
            writer.writerow(COLUMNS)
        for row in ordered_rows(lines, journal, case):
            if writer is not None:
                # A code is the user's text: a spreadsheet must show it, never run it.
                writer.writerow([neutralise(v) if isinstance(v, str) else v for v in row])
            counts[row[2]] += 1
            if row[3]:
                error_codes.setdefault(row[2], Counter())[row[3]] += 1
    finished = problem is None and sum(counts.values()) == total
    if problem is None and not finished:
        problem = "the journal does not cover every code of the file"
    return RunReport(total, counts, error_codes, finished, problem)


def default_results(codes_file: Path, dry_run: bool) -> Path:
    """`<codes-file stem>.results.csv` (or `.dry-run.csv`) beside the codes file."""
    suffix = ".dry-run.csv" if dry_run else ".results.csv"
    return codes_file.with_name(codes_file.stem + suffix)
