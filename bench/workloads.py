"""The three revoke workloads: the jobs both sides run, and capturing the SQL they send.

A `Job` is one revoke request: a JSON body for the HTTP side, arguments for the raw side
(`bench.service_calls.run_raw`). `capture_statements` records the statements either side
sends, so the runner can prove they stay identical as the service changes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

from bench.load import Layout, pick_codes, pick_customers

WORKLOADS = ("codes50", "code1", "customer")
REVOKE_PATH = "/v2/coupon/revoke"
REASON = "benchmark"
CODES_PER_REQUEST = 50


@dataclass(frozen=True, slots=True)
class Job:
    """One revoke request, as a JSON body for HTTP and as arguments for the raw side."""

    series_id: int | None = None
    codes: tuple[str, ...] = ()
    external_id: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": REASON}
        if self.series_id is not None:
            body["couponSeriesId"] = self.series_id
        if self.codes:
            body["couponCodes"] = list(self.codes)
        if self.external_id is not None:
            body["customer"] = {"externalId": self.external_id}
        return body


def make_jobs(
    layout: Layout, workload: str, count: int, rng: random.Random
) -> tuple[list[Job], list[Job]]:
    """`count` jobs for each side (HTTP, raw); the two lists never share a coupon."""
    if workload == "codes50":
        picked = pick_codes(layout, 2 * count * CODES_PER_REQUEST, rng)
        by_series: dict[int, list[str]] = {}
        for series_id, code in picked:
            by_series.setdefault(series_id, []).append(code)
        jobs = [
            Job(series_id=series_id, codes=tuple(codes[i : i + CODES_PER_REQUEST]))
            for series_id, codes in by_series.items()
            for i in range(0, len(codes) - CODES_PER_REQUEST + 1, CODES_PER_REQUEST)
        ]
    elif workload == "code1":
        jobs = [Job(codes=(code,)) for _, code in pick_codes(layout, 2 * count, rng)]
    elif workload == "customer":
        jobs = [Job(external_id=ext) for ext, _ in pick_customers(layout, 2 * count, rng)]
    else:
        raise ValueError(f"unknown workload {workload!r}")
    rng.shuffle(jobs)
    return jobs[0::2], jobs[1::2]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the raw side acts as: the benchmark's API client."""

    org_id: int
    username: str


# --- statement capture ------------------------------------------------------------------------

_PARAM = re.compile(r"\b(\w+?)(_\d+)+\b")


@contextmanager
def capture_statements(*engines: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through any of `engines` while the block runs, in order."""
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", listener)


def statement_shapes(statements: Sequence[str]) -> list[str]:
    """Statements with numbered bind names made generic, so runs compare equal."""
    return [_PARAM.sub(r"\1_N", s) for s in statements]
