"""The HTTP protocol `coupons serve` runs: uvicorn's httptools protocol, answering a request
it cannot parse in the API's envelope.

A request line or header block that is not HTTP/1.1 (an unknown method, a negative
`Content-Length`, a NUL in a header, a request line past the parser's limits) never reaches
the app: uvicorn answered it with `Invalid HTTP request received.` as plain text and no
`X-Request-Id`, the one answer outside the contract's envelope (spec §1). It is now 400 / 9002
in the envelope, with a request id of its own, and the connection is still closed: after a
parse error nothing more on it can be trusted.
"""

from __future__ import annotations

import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coupons.domain import errors
from coupons.entrypoints.http.envelope import JSON, failure_body

UNREADABLE = "request: not a valid HTTP/1.1 request (its request line or headers could not be read)"


class EnvelopedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol, with its one plain-text answer put in the envelope."""

    def send_400_response(self, msg: str) -> None:
        body = failure_body(errors.InvalidField.code, UNREADABLE)
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + JSON.encode() + b"\r\n",
                b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
