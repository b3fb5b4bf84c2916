"""Observability: Prometheus metrics, a cheap pure-ASGI metrics middleware, JSON logs.

With several server processes, set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by
them) before start-up: prometheus_client then keeps values in files there and `/metrics`
aggregates every process.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO, cast

import orjson
import structlog
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coupons.adapters.repos import PENDING_CHANGES
from coupons.adapters.sql_uow import Database
from coupons.entrypoints.http.middleware import request_id_of
from coupons.services.common import utcnow

REQUESTS = Counter("coupons_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "coupons_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATE_CHANGES = Counter("coupons_state_changes_total", "Committed coupon state changes", ["kind"])
DELIVERIES = Counter("coupons_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"])
DELIVERED_EVENTS = Counter(
    "coupons_webhook_delivered_events_total", "Events acknowledged by receivers"
)

log = structlog.get_logger("coupons.http")


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written. The stream bound when logging was
    set up can be closed since (a test runner's capture, an embedding program's swap), and
    a background thread writing to it then died on the error (the stall watch did)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on stderr (or `stream`); context variables (the request id) are merged into
    every line."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream or cast(TextIO, _CurrentStderr())),
        # Not cached: reconfiguring (tests, embedded use) must reach existing loggers.
        cache_logger_on_first_use=False,
    )


class JsonLineFormatter(logging.Formatter):
    """Standard-library log records (the ASGI server's own lines: started, stopped, a worker
    died) as the JSON lines structlog writes, so a log shipper reads one format."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        line = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": at,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def server_log_config(level: str) -> dict[str, Any]:
    """For `uvicorn.run(log_config=...)`, at the service's own level: uvicorn's default
    writes its console format, one line among the JSON."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLineFormatter"}},
        "handlers": {
            "default": {
                "formatter": "json",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }


MAX_LOGGED_PATH = 300
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Counts and times each request by route template (not raw path: bounded labels) and
    binds the request id for every log line written while serving it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        root = scope.get("root_path", "")
        with structlog.contextvars.bound_contextvars(request_id=request_id_of(scope)):
            try:
                await self.app(scope, receive, send_status)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = _template(route, str(scope.get("root_path", ""))[len(root) :])
                method = scope["method"]
                # A label per method anyone makes up would be a series per method: the
                # standard ones keep theirs, the rest count together (the log says which).
                label = method if method in METHODS else "other"
                REQUESTS.labels(label, template, str(status)).inc()
                LATENCY.labels(label, template).observe(elapsed)
                fields: dict[str, object] = {
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                }
                if route is None:
                    # Metrics keep the bounded "unmatched" label; the log says what was asked.
                    fields["path"] = str(scope.get("path", ""))[:MAX_LOGGED_PATH]
                log.info("request", **fields)


def _template(route: object, mounted: str) -> str:
    """The route's path template as the client addressed it: a mounted app's routes (the
    console's) know their path below the mount only, `/signin` for `/console/signin`."""
    path = str(getattr(route, "path", None) or "")
    if not path:
        return "unmatched"
    if isinstance(route, Mount):  # a mounted app with no routes of its own (static files)
        return mounted or path
    return path if not mounted or path.startswith(mounted) else mounted + path


def _on_commit(conn: Any) -> None:
    pending: Tally[str] | None = conn.info.pop(PENDING_CHANGES, None)
    for action, n in (pending or {}).items():
        STATE_CHANGES.labels(action.lower()).inc(n)


def _on_rollback(conn: Any) -> None:
    # A connection lost mid-transaction is invalidated: its info went with it, and touching
    # it would raise instead of letting the rollback finish.
    if not conn.invalidated:
        conn.info.pop(PENDING_CHANGES, None)


def count_committed_changes(engine: Engine) -> None:
    """Count state changes into metrics when their transaction commits (never on rollback,
    so dry runs and failed requests count nothing)."""
    if not event.contains(engine, "commit", _on_commit):
        event.listen(engine, "commit", _on_commit)
        event.listen(engine, "rollback", _on_rollback)


class OutboxCollector(Collector):
    """Outbox lag per subscription, read from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "coupons_outbox_lag_seconds",
            "Age of the oldest event a subscription has not acknowledged (0 when caught up)",
            labels=["webhook", "status"],
        )
        try:
            backlog = self.db.run(lambda uow: uow.webhooks.outbox_backlog(), write=False)
        except Exception:  # a scrape must not fail because the database is away
            log.warning("outbox lag unavailable")
            return
        now = utcnow()
        for webhook_id, status, oldest in backlog:
            seconds = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
            lag.add_metric([str(webhook_id), status], seconds)
        yield lag


def _exposition(outbox: CollectorRegistry) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(outbox)


def install(app: FastAPI, db: Database) -> None:
    """Add the middleware, the state-change counter and `GET /metrics` to `app`."""
    configure_logging(app.state.settings.log_level)
    for engine in db.engines:
        count_committed_changes(engine)
    outbox = CollectorRegistry(auto_describe=False)
    outbox.register(OutboxCollector(db))
    app.add_middleware(MetricsMiddleware)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics; needs no credentials."""
        body = await run_in_threadpool(_exposition, outbox)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
