"""The raw side's load generator, and the proof that it sends the service's own SQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.load import Layout
from bench.service_calls import run_raw
from bench.timing import Side, drive
from bench.workloads import REVOKE_PATH, Caller, Job, capture_statements, statement_shapes


def raw_connection(
    url: str, caller: Caller, jobs: Sequence[Job], start: Any, duration_s: float, results: Any
) -> None:
    """One database connection running the raw statements of its jobs until done or deadline."""
    from coupons.adapters.sql_uow import Database

    side = Side()
    db = Database.from_url(url, pool_size=1)
    db.start_wal_checkpointer()  # as each server worker does (SQLite; a no-op otherwise)
    # Warm up like the server was (its dry runs): connect, compile and prepare statements.
    for job in jobs[:3]:
        run_raw(db, caller, job, commit=False)

    def send(job: Job) -> int | None:
        try:
            return run_raw(db, caller, job)
        except Exception:
            return None

    drive(side, jobs, start, duration_s, send)
    db.dispose()
    results.put(asdict(side))


_IN_LIST = re.compile(r"IN \((?:(?:\?|%\(\w+\)s)(?:::\w+)?(?:, )?)+\)")


def same_sql(layout: Layout, http_job: Job, raw_job: Job) -> tuple[list[str], list[str]]:
    """Statements of one real request in-process and of its raw twin (IN lists folded)."""
    service, raw = service_and_raw_statements(layout, http_job, raw_job)

    def fold(statements: list[str]) -> list[str]:
        return [_IN_LIST.sub("IN (...)", s) for s in statement_shapes(statements)]

    return fold(service), fold(raw)


def service_and_raw_statements(
    layout: Layout, http_job: Job, raw_job: Job
) -> tuple[list[str], list[str]]:
    """The statements (as sent) of one real request in-process, and of its raw twin."""
    from fastapi.testclient import TestClient

    from coupons.adapters.sql_uow import Database
    from coupons.config import Settings
    from coupons.entrypoints.http import create_app

    db = Database.from_url(layout.url, pool_size=1)
    try:
        app = create_app(
            Settings(
                database_url=layout.url, token_secret="bench-signing-key-0123456789abcdef0123456789"
            ),
            db=db,
        )
        with TestClient(app) as client:
            # A busy client's requests find its row in the authentication cache: warm it (and
            # keep it, however slow the machine), so the captured request is a steady-state one.
            app.state.authenticator.client_cache_seconds = 3600.0
            client.get("/v2/coupon/0", auth=(layout.username, layout.secret))
            # A revoke on PostgreSQL goes through the event loop's engine (`Database.on_loop`).
            with capture_statements(*db.engines) as service:
                response = client.post(
                    REVOKE_PATH, json=http_job.body(), auth=(layout.username, layout.secret)
                )
            response.raise_for_status()
        with capture_statements(db.engine) as raw:
            run_raw(db, Caller(layout.org_id, layout.username), raw_job)
    finally:
        db.dispose()
    return service, raw
