"""`coupons worker` and `coupons webhook`: thin commands over the delivery worker.

Kept apart from the worker itself so that loading the `coupons` command stays fast.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from coupons.config import DEFAULT_DATABASE_URL

if TYPE_CHECKING:
    from coupons.services.ports import UnitOfWork

# --- commands -------------------------------------------------------------------------------

DbOption = Annotated[str, typer.Option("--db", envvar="COUPONS_DATABASE_URL", help="database URL")]
# `serve` and `worker` wait this long at start for a database that does not answer.
WAIT_FOR_DATABASE_SECONDS = 60.0


def _seconds(value: float) -> float:
    if value != value:  # NaN passes min and max, and the wait then never ended
        raise typer.BadParameter("must be a number of seconds")
    return value


WaitOption = Annotated[
    float,
    typer.Option(
        "--wait-for-database",
        callback=_seconds,
        help="seconds to wait at start for a database that does not answer (0: not at all)",
        min=0.0,
        max=86_400.0,
    ),
]


def worker_command(
    db: DbOption = DEFAULT_DATABASE_URL,
    wait_for_database: WaitOption = WAIT_FOR_DATABASE_SECONDS,
    concurrency: Annotated[
        int, typer.Option(help="subscriptions delivered at once", min=1, max=256)
    ] = 8,
    lease_seconds: Annotated[
        float, typer.Option(help="lease on a subscription", min=1.0, max=86_400.0)
    ] = 60.0,
    timeout: Annotated[
        float, typer.Option(help="HTTP timeout per delivery, seconds", min=0.1, max=600.0)
    ] = 10.0,
    poll_interval: Annotated[
        float, typer.Option(help="seconds between polls when idle", min=0.01, max=60.0)
    ] = 0.5,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on this port", min=1, max=65535)
    ] = None,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="run revoke jobs too")] = True,
    job_lease_seconds: Annotated[
        float,
        typer.Option(
            help="lease on a revoke job; a dead worker's job waits this long",
            min=1.0,
            max=86_400.0,
        ),
    ] = 30.0,
    chunk_size: Annotated[int, typer.Option(help="codes per revoke job chunk", min=1)] = 500,
) -> None:
    """Deliver webhooks and run revoke jobs until interrupted (run as many as you like)."""
    from coupons.adapters.sql_uow import Database
    from coupons.config import check_metrics_dir, log_level_from
    from coupons.entrypoints.cli import (  # loaded already: it registers this
        fail,
        require_schema,
        require_writable,
    )
    from coupons.entrypoints.db_text import await_database
    from coupons.entrypoints.http.metrics import configure_logging
    from coupons.entrypoints.worker import Worker, WorkerOptions, log

    if lease_seconds <= timeout:
        # A lease that lapses mid-delivery lets another worker send the same batch.
        raise typer.BadParameter(
            f"{lease_seconds:g} must be longer than --timeout ({timeout:g})",
            param_hint="'--lease-seconds'",
        )
    try:
        level = log_level_from(os.environ)
        check_metrics_dir(os.environ)
    except ValueError as error:
        raise fail(str(error)) from None
    await_database(db, wait_for_database)
    require_schema(db)  # before logging is set up: a refusal is one line on stderr
    require_writable(db)  # as `serve`: else it starts, and every job and delivery fails
    if metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port)
        except OSError as error:  # taken, or not ours to bind: one line, no traceback
            raise typer.BadParameter(
                f"cannot serve metrics on port {metrics_port}: {error.strerror or error}",
                param_hint="'--metrics-port'",
            ) from None
    # Logging is set up once nothing can stop the command any more: a refusal is one line
    # on stderr, and logging stays bound to no stream its caller closes.
    configure_logging(level)
    options = WorkerOptions(
        concurrency=concurrency,
        lease=timedelta(seconds=lease_seconds),
        http_timeout=timeout,
        poll_interval=poll_interval,
    )
    worker = Worker(Database.from_url(db, pool_size=max(2, concurrency // 2)), options)
    job_thread = None
    if jobs:
        from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions, open_database

        job_runner = JobWorker(
            open_database(db),
            JobWorkerOptions(
                chunk_size=chunk_size,
                lease=timedelta(seconds=job_lease_seconds),
                poll_interval=poll_interval,
            ),
        )
        job_thread = threading.Thread(target=job_runner.run, name="job-worker")
        job_thread.start()

    def stop() -> None:
        worker.stop()
        if job_thread is not None:
            job_runner.stop()

    # SIGTERM stops polling and lets in-flight deliveries and job chunks finish; a harder
    # kill loses nothing either (leases expire; events go out again, jobs resume).
    signal.signal(signal.SIGTERM, lambda *_: stop())
    log.info("worker started", owner=worker.owner)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C: a clean stop, as SIGTERM's
    finally:
        # However the delivery loop ended (Ctrl-C, or an error), the job thread is told to
        # stop too: joined unstopped, it kept the process alive for good.
        stop()
        if job_thread is not None:
            job_thread.join()
            job_runner.db.dispose()
        worker.db.dispose()


webhook_app = typer.Typer(help="Webhook subscriptions.", no_args_is_help=True)


@webhook_app.command("retry")
def webhook_retry(
    webhook_id: Annotated[int, typer.Argument(min=1, max=2**62)],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Retry a dead-lettered subscription now, from where it stopped."""
    from coupons.adapters.sql_uow import Database
    from coupons.entrypoints.cli import fail, require_schema
    from coupons.services import webhooks
    from coupons.services.common import utcnow

    require_schema(db)
    database = Database.from_url(db, pool_size=1)

    def work(uow: UnitOfWork) -> bool:
        revived = webhooks.retry_webhook_by_id(uow, webhook_id, utcnow())
        uow.commit()
        return revived

    try:
        revived = database.run(work)
    finally:
        database.dispose()
    if not revived:
        raise fail(f"no live webhook {webhook_id}")
    typer.echo(f"webhook {webhook_id} scheduled")


def register(app: typer.Typer) -> None:
    """Add `worker` and `webhook retry` to the `coupons` command."""
    app.command("worker")(worker_command)
    app.add_typer(webhook_app, name="webhook")
