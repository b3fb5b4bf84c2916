"""The HTTP side's load generator: one keep-alive connection per process, prepared bytes."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.timing import Side, drive
from bench.workloads import REVOKE_PATH, Job


class Wire:
    """A bare keep-alive HTTP/1.1 connection: sends prepared request bytes, reads one
    response with a Content-Length (the server always sends one).

    Not `http.client` (0.35 ms of CPU a call, most of it building and parsing headers) nor
    httpx (1.5 ms): the load shares the machine's two cores with the server, and what the
    client spends is taken from the server, as it would not be from another machine.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def request(host: str, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body) of its response."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.split(b"\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        while len(rest) < length:
            rest += self._receive_more()
        self.buffer = rest[length:]
        return int(status_line.split(b" ", 2)[1]), rest[:length]

    def _receive(self) -> None:
        self.buffer += self._receive_more()

    def _receive_more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def http_connection(
    base_url: str,
    auth: tuple[str, str],
    jobs: Sequence[Job],
    start: Any,
    duration_s: float,
    results: Any,
) -> None:
    """One keep-alive connection sending its jobs one after another until done or deadline;
    each request's bytes are prepared before the start line, as the raw side's jobs are."""
    side = Side()
    host, _, port = base_url.removeprefix("http://").partition(":")
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    wire = Wire(host, int(port))
    wire.exchange(Wire.request(host, "GET", "/health", {}, b""))  # connect before the start
    prepared = [
        Wire.request(host, "POST", REVOKE_PATH, headers, json.dumps(job.body()).encode())
        for job in jobs
    ]

    def send(request: bytes) -> int | None:
        status, payload = wire.exchange(request)
        if status != 200:
            return None
        return len(json.loads(payload)["entity"]["revokedCoupons"])

    drive(side, prepared, start, duration_s, send)
    wire.close()
    results.put(asdict(side))
