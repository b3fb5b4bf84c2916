"""What the person running the command sees: the progress bar, the summary, the reasons."""

from __future__ import annotations

from collections import Counter

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

from coupons.entrypoints.bulk_revoke.results import SUCCESSFUL, WHY, Outcome, RunReport


class RateColumn(ProgressColumn):
    """Codes per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- codes/s" if speed is None else f"{speed:,.0f} codes/s")


def progress_bar(err: Console) -> Progress:
    """Codes done, rate, elapsed time and ETA on stderr; nothing when it is not a terminal."""
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


def failure_reasons(report: RunReport) -> list[str]:
    """One line per outcome that is not a success: how many, and why."""
    reasons = []
    for name, count in report.counts.items():
        outcome = Outcome(name)
        if outcome not in SUCCESSFUL:
            reasons.append(f"{count:,} {name}: {WHY[outcome]}")
    return reasons
