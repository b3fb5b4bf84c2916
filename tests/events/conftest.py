"""Events fixtures: a real HTTP receiver on localhost and an in-process delivery worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from coupons.entrypoints.worker import Worker, WorkerOptions
from coupons.services.webhooks import RetryPolicy
from tests.conftest import Backend
from tests.e2e.conftest import Api

FAST_RETRY = RetryPolicy(
    first_delay=timedelta(milliseconds=50),
    max_delay=timedelta(milliseconds=200),
    give_up_after=timedelta(hours=24),
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(orjson.loads(self.body)["events"])


@dataclass
class Receiver:
    """A webhook receiver; `status` decides the answer, `hold` keeps requests waiting."""

    server: ThreadingHTTPServer
    status: int = 200
    hold: threading.Event | None = None
    # Seconds between the bytes of a 40-byte answer body: a receiver that trickles it
    trickle: float | None = None
    # Seconds between 40 header lines: a receiver that trickles its head
    trickle_head: float | None = None
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def acknowledged_events(self) -> list[dict[str, Any]]:
        return [e for r in self.received if r.headers.get("_status") == "200" for e in r.events]

    def all_events(self) -> list[dict[str, Any]]:
        return [e for r in self.received for e in r.events]


def _start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.arrived.set()
            if receiver.hold is not None:
                receiver.hold.wait(30)
            status = receiver.status
            headers = {k: v for k, v in self.headers.items()}
            headers["_status"] = str(status)
            receiver.received.append(Received(headers, body))
            if receiver.trickle_head is not None:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(40):
                    time.sleep(receiver.trickle_head)
                    try:
                        self.wfile.write(b"X-Slow-%d: 1\r\n" % i)
                        self.wfile.flush()
                    except OSError:  # the worker gave up on the answer
                        return
                return
            self.send_response(status)
            if receiver.trickle is None:
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                time.sleep(receiver.trickle)
                try:
                    self.wfile.write(b".")
                    self.wfile.flush()
                except OSError:  # the worker gave up on the answer
                    return

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


@pytest.fixture
def start_receiver() -> Iterator[Callable[[], Receiver]]:
    started: list[Receiver] = []

    def start() -> Receiver:
        receiver = _start_receiver()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        if receiver.hold is not None:
            receiver.hold.set()
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def receiver(start_receiver: Callable[[], Receiver]) -> Receiver:
    return start_receiver()


@pytest.fixture
def start_worker(backend: Backend) -> Iterator[Callable[..., Worker]]:
    running: list[tuple[Worker, threading.Thread]] = []

    def start(**options: Any) -> Worker:
        chosen = {
            "poll_interval": 0.05,
            "http_timeout": 2.0,
            "lease": timedelta(seconds=5),
            "policy": FAST_RETRY,
            **options,
        }
        worker = Worker(backend.db, WorkerOptions(**chosen))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, _ in running:
        worker.stop()
    for _, thread in running:
        thread.join(10)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def subscribe(api: Api, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    entity: dict[str, Any] = api.ok(api.post("/v2/webhooks", body))
    return entity


def events_of(api: Api, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    entity = api.ok(api.get("/v2/events", params={"after": after, "limit": limit}))
    return list(entity["events"])
