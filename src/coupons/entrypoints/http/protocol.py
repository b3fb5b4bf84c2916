"""The HTTP protocol `coupons serve` runs: uvicorn's httptools protocol, answering a request
it cannot parse in the API's envelope.

A request line or header block that is not HTTP/1.1 (an unknown method, a negative
`Content-Length`, a NUL in a header, a request line past the parser's limits) never reaches
the app: uvicorn answered it with `Invalid HTTP request received.` as plain text and no
`X-Request-Id`, the one answer outside the contract's envelope (spec §1). It is now 400 / 9002
in the envelope, with the client's `X-Request-Id` when the failed request's head came in one
read (else one of its own), and the connection is still closed: after a parse error nothing
more on it can be trusted. Requests pipelined before the unreadable one are answered first:
uvicorn closed the connection at once, so a request that had been read, and ran, lost its
answer (a revoke done, its client told nothing).
"""

from __future__ import annotations

import re
import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from coupons.domain import errors
from coupons.entrypoints.http.envelope import JSON, failure_body
from coupons.entrypoints.http.middleware import clients_request_id

UNREADABLE = "request: not a valid HTTP/1.1 request (its request line or headers could not be read)"
_REQUEST_ID_LINE = re.compile(rb"^x-request-id:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def request_id_in(received: bytes) -> str:
    """The client's request id if its header line is in the head of the request that failed
    (an unknown method leaves every header readable), else a new one."""
    head = received.split(b"\r\n\r\n", 1)[0]
    found = _REQUEST_ID_LINE.search(head)
    echoed = clients_request_id(found.group(1)) if found else None
    return echoed or uuid.uuid4().hex


class EnvelopedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol, with its one plain-text answer put in the envelope."""

    _received = b""  # the bytes being parsed, while they start with the current message
    _between_messages = True  # no message is part-way: the next read starts one
    _cycle_before: RequestResponseCycle | None = None  # the cycle in hand as this message began
    _refusal: bytes | None = None  # the 400, held back while earlier requests are answered

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # past a request it could not parse, the connection reads nothing more
        # Kept for the request id, should this read fail to parse; only while the read begins
        # with the message being parsed, so that the head searched is the failed request's
        # own (not a pipelined request's before it, nor the rest of an earlier message).
        self._received = data if self._between_messages else b""
        try:
            super().data_received(data)
        finally:
            self._received = b""

    def on_message_begin(self) -> None:
        self._between_messages = False
        self._cycle_before = self.cycle  # a head read makes a cycle of its own
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._between_messages = True
        self._received = b""  # what follows in this read is another message, at an offset
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None and not self._answering():
            self._refuse()

    def _answering(self) -> bool:
        """Whether a request read before the unreadable one still has its answer to write."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def send_400_response(self, msg: str) -> None:
        body = failure_body(errors.InvalidField.code, UNREADABLE)
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + JSON.encode() + b"\r\n",
                b"x-request-id: " + request_id_in(self._received).encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self._refusal = b"".join(content)
        # The failed request never runs: a head that could not be read made no cycle, and
        # one whose body could not be read is dropped from the queue if it waits there
        # behind earlier requests. Those are answered first. Only a request already running
        # (its body unreadable) is refused at once, as uvicorn did: its app gets the close.
        failed = self.cycle if self.cycle is not self._cycle_before else None
        if failed is not None and self.pipeline and self.pipeline[0][0] is failed:
            self.pipeline.popleft()
            # None before a connection's first request, as uvicorn's own starts
            self.cycle = self._cycle_before  # type: ignore[assignment]
            failed = None
        if failed is not None or not self._answering():
            self._refuse()
        else:
            self.flow.pause_reading()

    def _refuse(self) -> None:
        assert self._refusal is not None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if not self.transport.is_closing():
            self.transport.write(self._refusal)
            self.transport.close()
