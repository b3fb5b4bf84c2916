"""The webhook delivery worker: `coupons worker`, or a thread inside `coupons serve`.

Each due subscription is leased and delivered on its own thread, so a slow or dead receiver
holds one thread for at most the HTTP timeout while the others go on. Several workers (any
number of processes or hosts) share the work through the leases.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

import httpx
import structlog
import typer

from coupons.adapters.repos import WebhookRecord
from coupons.adapters.sql_uow import Database
from coupons.config import DEFAULT_DATABASE_URL
from coupons.entrypoints.http.metrics import DELIVERED_EVENTS, DELIVERIES, configure_logging
from coupons.services import webhooks
from coupons.services.common import utcnow
from coupons.services.uow import UnitOfWork

log = structlog.get_logger("coupons.worker")


@dataclass
class WorkerOptions:
    concurrency: int = 8
    # Longer than the HTTP timeout, so a live worker never loses a lease mid-delivery.
    lease: timedelta = timedelta(seconds=60)
    http_timeout: float = 10.0
    poll_interval: float = 0.5
    batch_size: int = 100
    policy: webhooks.RetryPolicy = field(default_factory=webhooks.RetryPolicy)


class Worker:
    """Leases due subscriptions and delivers them until stopped."""

    def __init__(self, db: Database, options: WorkerOptions | None = None) -> None:
        self.db = db
        self.options = options or WorkerOptions()
        if self.options.lease.total_seconds() <= self.options.http_timeout:
            raise ValueError("the lease must outlast the HTTP timeout")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.options.http_timeout),
            follow_redirects=False,
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        return self._client.post(url, content=body, headers=headers).status_code

    def run(self) -> None:
        """Deliver until `stop()`; returns after in-flight deliveries finish."""
        in_flight: dict[Future[webhooks.DeliveryResult], int] = {}
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="webhook") as pool:
            while not self.stopping.is_set():
                free = self.options.concurrency - len(in_flight)
                claimed = []
                if free > 0:
                    try:
                        claimed = webhooks.claim(self.db, self.owner, self.options.lease, free)
                    except Exception:
                        log.exception("claim failed")
                busy = set(in_flight.values())
                for webhook in claimed:
                    if webhook.id not in busy:
                        in_flight[pool.submit(self._deliver, webhook)] = webhook.id
                if in_flight:
                    done, _ = wait(
                        in_flight, timeout=self.options.poll_interval, return_when=FIRST_COMPLETED
                    )
                    for future in done:
                        del in_flight[future]
                    # Claim again at once only while a backlog is draining; otherwise wait,
                    # so a steady trickle of events goes out in batches, not one POST each.
                    if any(f.result().more for f in done):
                        continue
                self.stopping.wait(self.options.poll_interval)
        self._client.close()

    def _deliver(self, webhook: WebhookRecord) -> webhooks.DeliveryResult:
        try:
            result = webhooks.deliver(
                self.db,
                webhook,
                self.owner,
                self.post,
                policy=self.options.policy,
                batch_size=self.options.batch_size,
            )
        except Exception:
            # The lease expires and another round retries; nothing was acknowledged.
            log.exception("delivery failed", webhook=webhook.id)
            return webhooks.DeliveryResult("ERROR")
        if result.outcome in ("DELIVERED", "FAILED", "DEAD") and result.event_count:
            DELIVERIES.labels(result.outcome.lower()).inc()
            if result.outcome == "DELIVERED":
                DELIVERED_EVENTS.inc(result.event_count)
            log.info(
                "webhook delivery",
                webhook=webhook.id,
                url=webhooks.redact_url(webhook.url),
                outcome=result.outcome,
                events=result.event_count,
            )
        return result

    def stop(self) -> None:
        self.stopping.set()


def start_in_background(url: str, options: WorkerOptions | None = None) -> Worker:
    """A worker on a daemon thread (the embedded setup of `coupons serve`)."""
    worker = Worker(Database.from_url(url, pool_size=2), options)
    threading.Thread(target=worker.run, name="webhook-worker", daemon=True).start()
    return worker


# --- commands -------------------------------------------------------------------------------

DbOption = Annotated[str, typer.Option("--db", envvar="COUPONS_DATABASE_URL", help="database URL")]


def worker_command(
    db: DbOption = DEFAULT_DATABASE_URL,
    concurrency: Annotated[int, typer.Option(help="subscriptions delivered at once")] = 8,
    lease_seconds: Annotated[float, typer.Option(help="lease on a subscription")] = 60.0,
    timeout: Annotated[float, typer.Option(help="HTTP timeout per delivery, seconds")] = 10.0,
    poll_interval: Annotated[float, typer.Option(help="seconds between polls when idle")] = 0.5,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on this port")
    ] = None,
) -> None:
    """Deliver webhooks until interrupted (run as many as you like)."""
    configure_logging(os.environ.get("COUPONS_LOG_LEVEL", "INFO"))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    options = WorkerOptions(
        concurrency=concurrency,
        lease=timedelta(seconds=lease_seconds),
        http_timeout=timeout,
        poll_interval=poll_interval,
    )
    worker = Worker(Database.from_url(db, pool_size=max(2, concurrency // 2)), options)
    # SIGTERM stops polling and lets in-flight deliveries finish; a harder kill loses
    # nothing either (their leases expire and the events go out again).
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    log.info("worker started", owner=worker.owner)
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop()
    finally:
        worker.db.dispose()


webhook_app = typer.Typer(help="Webhook subscriptions.", no_args_is_help=True)


@webhook_app.command("retry")
def webhook_retry(webhook_id: int, db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Retry a dead-lettered subscription now, from where it stopped."""
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
        typer.echo(f"no live webhook {webhook_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"webhook {webhook_id} scheduled")


def register(app: typer.Typer) -> None:
    """Add `worker` and `webhook retry` to the `coupons` command."""
    app.command("worker")(worker_command)
    app.add_typer(webhook_app, name="webhook")
