"""Edge middleware (pure ASGI): request ids and the body size limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coupons.domain.codes_file import MAX_FILE_BYTES
from coupons.domain.errors import (
    BodyTooLarge,
    CodesFileTooLarge,
    CouponError,
    InvalidField,
    RequestIdTaken,
)
from coupons.domain.jobs import JOB_ID_PREFIX
from coupons.entrypoints.http.envelope import failure_body
from coupons.services.common import Context

T = TypeVar("T")

CONSOLE_PREFIX = "/console/"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def clients_request_id(value: bytes) -> str | None:
    """The client's `X-Request-Id` value if it may be echoed and recorded, else None.

    A job's id is the request id of everything the job revokes (its trail row, its coupons'
    history, what its undo reverts): never a client's."""
    candidate = value.decode("latin-1").strip()
    if _REQUEST_ID.match(candidate) and not candidate.startswith(JOB_ID_PREFIX):
        return candidate
    return None


# Codes files for revoke jobs: streamed to the route as they arrive (it stages them in
# batches), never buffered here, and allowed up to the job limit instead of the JSON one.
STREAMED_UPLOADS = frozenset({"/v2/coupon/revoke/jobs"})
UPLOAD_TYPES = frozenset({b"text/csv", b"text/plain"})


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


def answer_as(scope: Scope, request_id: str) -> None:
    """Send `request_id` as this answer's `X-Request-Id` (a replay: the original request's)."""
    scope.setdefault("state", {})["request_id"] = request_id


async def under_own_id(scope: Scope, ctx: Context, run: Callable[[Context], Awaitable[T]]) -> T:
    """`run(ctx)`; when the request id (the client chose it) already names an earlier revoke's
    trail row, which keeps one row per call, `run` again under a fresh id that the answer then
    carries (the API's calls and the console's forms alike)."""
    try:
        return await run(ctx)
    except RequestIdTaken:
        fresh = replace(ctx, request_id=uuid.uuid4().hex)
        answer_as(scope, fresh.request_id)
        return await run(fresh)


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body; None once it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out `body` (already read) as the whole request, once, then
    whatever `receive` says next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class EdgeMiddleware:
    """Gives every request an id (the client's `X-Request-Id` when it is sane) and answers
    413 for bodies over the limit before any route reads them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        hosts = 0
        declared_length: int | None = None
        media_type = b""
        for name, value in scope["headers"]:
            if name == b"host":
                hosts += 1
            elif name == b"x-request-id":
                request_id = clients_request_id(value) or request_id
            elif name == b"content-type":
                media_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"content-length":
                try:
                    declared_length = int(value)
                except ValueError:
                    declared_length = None
        if not request_id:
            request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Read when the answer starts: an idempotent replay answers with the id of
                # the request it replays (`answer_as`).
                headers = [*message.get("headers", ())]
                headers.append((b"x-request-id", str(state["request_id"]).encode()))
                if state.get("varies_by_accept"):
                    headers.append((b"vary", b"Accept"))
                message["headers"] = headers
            await send(message)

        send_with_id: Send = with_id
        if hosts != 1 and scope.get("http_version") == "1.1":
            # RFC 9112 §3.2: an HTTP/1.1 request names exactly one Host. With none or two,
            # what it addressed is unknown (the console checks Origin against it).
            await _drain(scope, receive, invited=False)
            problem = "an HTTP/1.1 request names exactly one host"
            await self._reply(send_with_id, InvalidField("Host", problem), close=True)
            return
        if scope["method"] == "HEAD":
            # A HEAD's answer ends with its headers: a streamed export stops there instead of
            # reading every row for nothing (and holding the connection while it does).
            try:
                await self._serve(
                    scope, receive, _headers_only(send_with_id), media_type, declared_length
                )
            except* _HeadAnswered:
                pass
            return
        await self._serve(scope, receive, send_with_id, media_type, declared_length)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send_with_id: Send,
        media_type: bytes,
        declared_length: int | None,
    ) -> None:
        """The request with its headers read once (`__call__`), answered or handed on."""
        state = scope["state"]
        if scope["path"].startswith(CONSOLE_PREFIX):
            # The console's forms are not JSON: it reads (and bounds) its own bodies.
            await self.app(scope, receive, send_with_id)
            return
        if scope["method"] == "HEAD":
            # What answers GET answers HEAD (a monitor's `HEAD /health`): the GET's status
            # and headers, no body. The routes themselves only name GET.
            scope = {**scope, "method": "GET"}
        nul_in = nul_field(scope)
        if nul_in is not None:
            await self._reply(send_with_id, InvalidField(nul_in, "must not contain NUL characters"))
            return
        repeated = None if scope["path"] in UNPARAMETERISED else repeated_field(scope)
        if repeated is not None:
            await self._reply(send_with_id, InvalidField(repeated, "given more than once"))
            return
        if (
            scope["method"] == "POST"
            and scope.get("path") in STREAMED_UPLOADS
            and media_type in UPLOAD_TYPES
        ):
            if declared_length is not None and declared_length > MAX_FILE_BYTES:
                await _drain(scope, receive, invited=False, most=DRAIN_FILE_BYTES)
                await self._reply(send_with_id, CodesFileTooLarge(), close=True)
                return
            await self.app(scope, receive, send_with_id)
            return
        if declared_length is not None and declared_length > self.max_body_bytes:
            await self._too_large(scope, receive, send_with_id, invited=False)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            # Every body here is JSON, whatever the client labelled it (`curl -d` says form);
            # what it said is kept, so an error can name it (a codes file without its type).
            state["sent_media_type"] = media_type.decode("latin-1")
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
                (b"content-type", b"application/json")
            ]
            body = await read_body(receive, self.max_body_bytes)
            if body is None:  # read past the limit: a client that awaited 100 Continue got it
                await self._too_large(scope, receive, send_with_id, invited=True)
                return
            await self.app(scope, replaying(body, receive), send_with_id)
            return
        await self.app(scope, receive, send_with_id)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, *, invited: bool
    ) -> None:
        await _drain(scope, receive, invited=invited)
        await self._reply(send, BodyTooLarge(), close=True)

    async def _reply(self, send: Send, error: CouponError, *, close: bool = False) -> None:
        body = failure_body(error.code, error.message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send(
            {
                "type": "http.response.start",
                "status": error.http_status,
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": body})


# How much of a refused body is read and dropped before the answer closes the connection.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_FILE_BYTES = 128 * 1024 * 1024  # a codes file is refused past 64 MiB: more to drop
DRAIN_SECONDS = 2.0


async def _drain(scope: Scope, receive: Receive, *, invited: bool, most: int = DRAIN_BYTES) -> None:
    """Read what is left of a refused body, a bounded amount for a bounded time, before the
    answer closes the connection. Closed with bytes unread, the kernel resets the connection,
    and a client that writes its whole body before it reads (most libraries do) never sees
    the 413: the staged close RFC 9112 asks for."""
    if not invited and any(name == b"expect" for name, _ in scope["headers"]):
        # The client waits for a go-ahead (100 Continue) that reading would send: nothing
        # is coming unless the body was asked for already (`invited`).
        return
    read = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while read <= most:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


# Paths that take no query parameters: a monitor's cache-busting `?_=1&_=2` is no question.
UNPARAMETERISED = frozenset({"/health", "/metrics"})


class _HeadAnswered(BaseException):
    """A HEAD's headers and its empty body went out: whatever else the app would send is
    thrown away, so it is stopped (a BaseException, as a cancellation is: no error handler
    takes it for a fault)."""


def _headers_only(send: Send) -> Send:
    """`send` for a HEAD request answered as a GET: the body's bytes are left out, and the
    app is stopped at its first piece of body (`_HeadAnswered`, caught by the edge)."""

    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.body":
            await send({"type": "http.response.body", "body": b""})
            raise _HeadAnswered()
        await send(message)

    return send_headers


def repeated_field(scope: Scope) -> str | None:
    """A query parameter named twice, or None. No API parameter takes a list, and the
    framework would keep the last value silently: `?dryRun=true&dryRun=false` was a real
    revoke. Refused whatever the values, as the order of a query string is no intent."""
    query: bytes = scope.get("query_string", b"")
    if b"&" not in query:
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


def nul_field(scope: Scope) -> str | None:
    """Where a NUL character came in (PostgreSQL cannot hold one in text): the query
    parameter's name, or "path"; None when there is none."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name + value:
            return name.strip("\x00") or "query"
    return "query"
