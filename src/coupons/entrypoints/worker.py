"""The webhook delivery worker: `coupons worker`, or a thread inside `coupons serve`.

Each due subscription is leased and delivered on its own thread, so a slow or dead receiver
holds one thread for at most the HTTP timeout while the others go on. Several workers (any
number of processes or hosts) share the work through the leases.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpcore
import httpx
import structlog

from coupons.adapters.sql_uow import Database
from coupons.domain.errors import DatabaseUnavailable
from coupons.domain.records import WebhookRecord
from coupons.entrypoints.http.metrics import DELIVERED_EVENTS, DELIVERIES
from coupons.entrypoints.http.render_events import webhook_body
from coupons.entrypoints.outage import OutageLog
from coupons.services import webhooks

log = structlog.get_logger("coupons.worker")


@dataclass
class WorkerOptions:
    concurrency: int = 8
    # Longer than the HTTP timeout, so a live worker never loses a lease mid-delivery.
    lease: timedelta = timedelta(seconds=60)
    http_timeout: float = 10.0
    poll_interval: float = 0.5
    batch_size: int = 1000
    policy: webhooks.RetryPolicy = field(default_factory=webhooks.RetryPolicy)


def _allowed_addresses(host: str, port: int) -> list[str]:
    """What `host` resolves to, refused whole when any answer is link-local, unspecified or
    a cloud metadata address (a name can point there after the subscription was made)."""
    if webhooks.forbidden_address(host):
        raise httpcore.ConnectError(f"{webhooks.FORBIDDEN_TARGET} ({host})")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise httpcore.ConnectError(f"{host} does not resolve: {error}") from error
    addresses = [str(address[0]) for *_, address in found]
    for address in addresses:
        if webhooks.forbidden_address(address):
            raise httpcore.ConnectError(f"{webhooks.FORBIDDEN_TARGET} ({host} is {address})")
    return list(dict.fromkeys(addresses))


# The moment the delivery running on this thread must have its whole answer by.
_deadline = threading.local()


def _within_deadline(timeout: float | None, *, reading: bool = True) -> float | None:
    """`timeout` cut to what is left of this thread's delivery deadline, if one is set."""
    until: float | None = getattr(_deadline, "at", None)
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        error = httpcore.ReadTimeout if reading else httpcore.WriteTimeout
        raise error("the answer took longer than the HTTP timeout")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the delivery's deadline. httpx's
    timeout bounds each read, so a receiver sending its status and headers a line a second
    held a delivery past its lease, and another worker sent the next batch meanwhile."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within_deadline(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within_deadline(timeout, reading=False))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _within_deadline(timeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedConnections(httpcore.NetworkBackend):
    """Connects only to an address the check passed, resolving the name once. A check that
    resolved the name before the connection resolved it again let a name answer a harmless
    address to the first look-up and the metadata address to the second."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in _allowed_addresses(host, port):
            try:
                stream = self._inner.connect_tcp(
                    address, port, _within_deadline(timeout), local_address, socket_options
                )
                return _DeadlineStream(stream)
            except httpcore.ConnectError as error:
                failure = error
        raise failure or httpcore.ConnectError(f"{host} resolves to no address")


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over `_CheckedConnections`. TLS still verifies the certificate
    against the URL's name: httpcore passes the name to the handshake, not the address."""

    def __init__(self) -> None:
        super().__init__()
        # httpx builds its connection pool with no way to pass a network backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_CheckedConnections()
        )


def _refuse_through_proxy(host: str) -> None:
    """Through a proxy, which resolves the name itself, the worker's own answer for it is the
    best check there is (the proxy's rules decide the rest). A name only the proxy can resolve
    is left to it."""
    try:
        _allowed_addresses(host, 0)
    except httpcore.ConnectError as error:
        if webhooks.FORBIDDEN_TARGET in str(error):
            raise httpx.ConnectError(str(error)) from error


def _through_a_proxy() -> bool:
    """Whether the environment names a proxy, which then makes the connection itself."""
    proxies = urllib.request.getproxies_environment()
    return any(scheme in proxies for scheme in ("http", "https", "all"))


class Worker:
    """Leases due subscriptions and delivers them until stopped."""

    def __init__(self, db: Database, options: WorkerOptions | None = None) -> None:
        self.db = db
        self.options = options or WorkerOptions()
        if self.options.lease.total_seconds() <= self.options.http_timeout:
            raise ValueError("the lease must outlast the HTTP timeout")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self._outage = OutageLog(log, "webhook deliveries")
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.options.http_timeout),
            follow_redirects=False,
            transport=_CheckedTransport(),
        )
        self._proxied = _through_a_proxy()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The receiver's status, its whole answer read within the HTTP timeout.

        httpx's timeout bounds each read, not the answer: a receiver sending its body a byte
        at a time, or its headers a line a second, kept a delivery going past its lease, and
        another worker sent the same batch meanwhile. The whole answer is read against one
        deadline: every read and write of the connection is cut to it (`_DeadlineStream`),
        and the body's loop checks it too."""
        deadline = time.monotonic() + self.options.http_timeout
        if self._proxied:
            _refuse_through_proxy(httpx.URL(url).host)
        _deadline.at = deadline  # every read and write of the connection, headers included
        try:
            with self._client.stream("POST", url, content=body, headers=headers) as response:
                for _ in response.iter_raw():
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout(
                            f"the answer took longer than {self.options.http_timeout:g} s"
                        )
                return response.status_code
        finally:
            _deadline.at = None

    def run(self) -> None:
        """Deliver until `stop()`; returns after in-flight deliveries finish."""
        in_flight: dict[Future[webhooks.DeliveryResult], int] = {}
        # Leased again while its last delivery was still returning (it had released the lease
        # already): delivered as soon as that one is done. Skipped instead, it stayed leased
        # to this worker, undelivered, until the lease ran out a minute later.
        queued: dict[int, WebhookRecord] = {}
        outage = self._outage
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="webhook") as pool:
            while not self.stopping.is_set():
                free = self.options.concurrency - len(in_flight)
                claimed = []
                if free > 0:
                    try:
                        claimed = webhooks.claim(self.db, self.owner, self.options.lease, free)
                        outage.succeeded()
                    except Exception as error:
                        outage.failed(error, "claim failed")
                busy = set(in_flight.values())
                for webhook in claimed:
                    if webhook.id in busy:
                        queued[webhook.id] = webhook
                    else:
                        in_flight[pool.submit(self._deliver, webhook)] = webhook.id
                if in_flight:
                    done, _ = wait(
                        in_flight, timeout=self.options.poll_interval, return_when=FIRST_COMPLETED
                    )
                    for future in done:
                        again = queued.pop(in_flight.pop(future), None)
                        if again is not None:
                            in_flight[pool.submit(self._deliver, again)] = again.id
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
                render_body=webhook_body,
                policy=self.options.policy,
                batch_size=self.options.batch_size,
            )
        except Exception as error:
            # The lease expires and another round retries; nothing was acknowledged. A
            # database outage (recording the attempt met it) is the loop's warning once,
            # not a traceback per delivery.
            if isinstance(error, DatabaseUnavailable):
                self._outage.failed(error, "delivery failed")
            else:
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


def start_in_background(
    url: str, options: WorkerOptions | None = None
) -> tuple[Worker, threading.Thread]:
    """A worker on a daemon thread (the embedded setup of `coupons serve`), and that thread,
    to stop and join when the server ends (in-flight deliveries finish and give their leases
    back)."""
    worker = Worker(Database.from_url(url, pool_size=2), options)
    thread = threading.Thread(target=worker.run, name="webhook-worker", daemon=True)
    thread.start()
    return worker, thread
