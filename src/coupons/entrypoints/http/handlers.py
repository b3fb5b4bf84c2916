"""Exception handlers: every failure leaves as the spec's envelope, never a stack trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from coupons.domain import errors
from coupons.entrypoints.http.deps import authenticate_route
from coupons.entrypoints.http.envelope import failure
from coupons.entrypoints.http.middleware import request_id_of
from coupons.entrypoints.http.routing import (
    DUPLICATE_NAME,
    UnknownQueryParameter,
    allowed_methods,
)

log = structlog.get_logger("coupons.http")

# Pydantic error types that mean "the body as a whole is not a JSON object".
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type", "missing"}


def field_name(loc: tuple[int | str, ...]) -> str:
    """The field a validation error names, as the API documents it (`codes[6]`): without
    the request part and without pydantic's labels for its own validators
    (`function-after[check(), constrained-str]`), which no field name contains."""
    parts = [
        p
        for p in loc
        if p not in ("body", "query", "path", "header")
        and not (isinstance(p, str) and ("[" in p or "(" in p))
    ]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def problem_message(problem: Mapping[str, Any]) -> str:
    """A validation problem's message. Our own checks raise ValueError, which the validator
    words "Value error, ..."; the prefix says nothing to a caller."""
    return str(problem.get("msg", "invalid value")).removeprefix("Value error, ")


def malformed_json(detail: str = "") -> errors.MalformedJson:
    """9001, with what is wrong when there is something to say."""
    error = errors.MalformedJson()
    return errors.MalformedJson(f"{error.message}: {detail}") if detail else error


def duplicate_name_detail(reason: str) -> str:
    """`strict_json`'s refusal of a name given twice names the field; the parser's other
    refusals say nothing a caller can use (empty)."""
    return reason if reason.endswith(DUPLICATE_NAME) else ""


async def coupon_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.CouponError)
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, errors.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Basic realm="coupons"'
    return failure(exc.code, exc.message, exc.http_status, headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"type": "", "loc": ("body",), "msg": "invalid"}
    loc = tuple(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "json_invalid" or (loc == ("body",) and kind in _NOT_AN_OBJECT):
        # `strict_json`'s own refusal names the field given twice; the parser's says nothing
        # a caller can use.
        ctx = first.get("ctx")
        reason = str(ctx.get("error", "")) if isinstance(ctx, dict) else ""
        return await _malformed_body(request, duplicate_name_detail(reason))
    error = errors.InvalidField(field_name(loc), problem_message(first))
    return failure(error.code, error.message, error.http_status)


async def _malformed_body(request: Request, detail: str = "") -> Response:
    """9001, once the caller has passed the route's credentials and access checks."""
    return await _after_authentication(request, malformed_json(detail))


async def _after_authentication(request: Request, error: errors.CouponError) -> Response:
    try:
        await authenticate_route(request)
    except errors.CouponError as refused:
        error = refused
    return await coupon_error(request, error)


async def unknown_query(request: Request, exc: Exception) -> Response:
    """9002 for a query parameter the route does not take, once the caller has passed the
    route's credentials and access checks (nobody learns a route's parameters unasked)."""
    assert isinstance(exc, UnknownQueryParameter)
    return await _after_authentication(request, exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request.scope)) or (exc.headers or {}).get("Allow")
        return failure(
            9022, "method not allowed on this path", 405, {"Allow": allow} if allow else None
        )
    if exc.status_code == 404:
        return failure(9014, "no such endpoint", 404)
    if exc.status_code == 401:
        # FastAPI's security schemes raise their own 401 on a malformed Basic header.
        return await coupon_error(request, errors.AuthenticationFailed())
    if exc.status_code == 400:
        # FastAPI raises a bare 400 when the body cannot be decoded at all (invalid UTF-8,
        # nesting too deep for the parser): the body is not valid JSON, spec code 9001.
        return await _malformed_body(request)
    return failure(9002, str(exc.detail), exc.status_code)


def note_client_gone(scope: Scope) -> None:
    """The one log line for a client that hung up mid-request (API and console alike)."""
    log.info("client went away before its request was read", request_id=request_id_of(scope))


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its body was read whole (an upload stopped half-way): no
    fault of the server's, so no 500 in the metrics and no traceback in the log. What it had
    sent is discarded by whoever was reading it; this answer reaches nobody."""
    note_client_gone(request.scope)
    error = errors.InvalidField("body", "ended before it was complete: the client went away")
    return failure(error.code, error.message, error.http_status)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = request_id_of(request.scope)
    log.error("unhandled error", request_id=request_id, error=type(exc).__name__)
    return failure(9000, "internal error", 500, {"X-Request-Id": request_id})


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.CouponError, coupon_error)
    app.add_exception_handler(UnknownQueryParameter, unknown_query)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected_error)
