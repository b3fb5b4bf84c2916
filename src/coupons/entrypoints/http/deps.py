"""Authentication of every request but health and metrics."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from coupons.domain import errors
from coupons.entrypoints.http.middleware import request_id_of
from coupons.services.auth import Authenticator, actor_of, require
from coupons.services.common import Actor

# For the OpenAPI document only (`document_security`); `authenticate` reads the headers
# itself. As FastAPI security dependencies they ran on every request for nothing.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "HTTPBasic": {
        "type": "http",
        "description": "API client username and secret",
        "scheme": "basic",
    },
    "HTTPBearer": {
        "type": "http",
        "description": "token from /v3/oauth/token/generate",
        "scheme": "bearer",
    },
    "APIKeyHeader": {
        "type": "apiKey",
        "description": "token, vendor header",
        "in": "header",
        "name": "X-CAP-API-OAUTH-TOKEN",
    },
}
_AUTHENTICATING: set[Callable[..., Any]] = set()  # the dependencies `allowed` made
WRITE_METHODS = {"post", "put", "patch", "delete"}
IDEMPOTENCY_KEY_MAX = 255

# Headers the service reads, documented as parameters so that "Try it out" can send them.
# Like the security schemes, they are added to the document only: the route code (or the edge
# middleware) reads them itself, so no per-request dependency work is added for them.
REQUEST_ID_HEADER: dict[str, Any] = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "Your id for this request, echoed in the response and written into the "
    "history of every coupon it changes (1 to 128 of `A-Z a-z 0-9 . _ : -`; anything else is "
    "replaced by a fresh id). A revoke's id is what `revokeRequestId` of reinstate takes.",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key with the same request within 24 hours replays the first "
    "response (header `Idempotent-Replayed: true`) and changes nothing; with another request "
    "it is 9006 (HTTP 422). Trimmed; 1 to 255 characters.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_MAX,
        "pattern": r"\S",
    },
}
TOKEN_HEADER: dict[str, Any] = {
    "name": "X-CAP-API-OAUTH-TOKEN",
    "in": "header",
    "required": False,
    "description": "An access token from `POST /v3/oauth/token/generate` (instead of Basic "
    "credentials or `Authorization: Bearer`).",
    "schema": {"type": "string"},
}


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(request: Request) -> Actor:
    """The caller, from Basic credentials, `X-CAP-API-OAUTH-TOKEN` or a Bearer token.

    May read the database and run argon2: call it from a worker thread."""
    actor = _authenticate(request, cached_only=False)
    assert actor is not None
    return actor


TWICE = (
    "authentication missing or failed: the header carrying the credentials was sent twice "
    "(send one X-CAP-API-OAUTH-TOKEN, or one Authorization header)"
)


TWO_TOKENS = (
    "authentication missing or failed: X-CAP-API-OAUTH-TOKEN and Authorization: Bearer "
    "carry different tokens (send one)"
)


def _credential_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """The vendor token header and `Authorization`, from one pass over the headers (each
    `request.headers.get` is a pass of its own). The header the credentials are read from
    may not come twice: which copy counts would be a proxy's or a client library's accident
    (two Basic headers of different clients were served as the first), so the request is
    refused, as a duplicate `Host` is. Beside a token, `Authorization` is not read, so its
    copies do not matter."""
    token: str | None = None
    authorization = ""
    tokens = authorizations = 0
    for name, value in headers:
        if name == b"x-cap-api-oauth-token":
            tokens += 1
            token = value.decode("latin-1")
        elif name == b"authorization":
            authorizations += 1
            authorization = value.decode("latin-1")
    if tokens > 1 or (tokens == 0 and authorizations > 1):
        raise errors.AuthenticationFailed(TWICE)
    return token, authorization


def _authenticate(request: Request, *, cached_only: bool) -> Actor | None:
    """`authenticate`; with `cached_only`, from memory alone (never blocks), None when memory
    cannot tell."""
    auth = authenticator(request)
    token, header = _credential_headers(request.scope["headers"])
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        if token and token.strip() != value.strip():
            # Two tokens, perhaps of two clients: as ambiguous as one header sent twice.
            raise errors.AuthenticationFailed(TWO_TOKENS)
        token = value
    if token:
        token = token.strip()
        client = auth.cached_token(token) if cached_only else auth.check_token(token)
        return None if client is None else actor_of(client)
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # bad base64 (binascii.Error), non-ASCII text, not UTF-8
            raise errors.AuthenticationFailed() from None
        username, sep, secret = decoded.partition(":")
        if not sep or not username:
            raise errors.AuthenticationFailed()
        address = client_address(request)
        check = auth.cached_secret if cached_only else auth.check_secret
        client = check(username, secret, address)
        return None if client is None else actor_of(client)
    raise errors.AuthenticationFailed()


def cached_caller(request: Request, permission: str) -> Actor | None:
    """The caller, from memory alone (never blocks), refused (9011) unless allowed
    `permission`; None when memory cannot tell who it is."""
    actor = _authenticate(request, cached_only=True)
    if actor is not None:
        require(actor, permission)
    return actor


def allowed(permission: str) -> Callable[..., Awaitable[Actor]]:
    """A dependency: the authenticated caller, if its access group allows `permission`.

    Async, so that a caller memory can vouch for costs no worker thread: only a cache miss
    (first request, a row older than a second, a new secret) goes to the thread pool."""

    async def dependency(request: Request) -> Actor:
        actor = cached_caller(request, permission)
        if actor is None:
            actor = await run_in_threadpool(authenticate, request)
            require(actor, permission)
        return actor

    _AUTHENTICATING.add(dependency)
    return dependency


def _authenticates(dependant: Dependant) -> bool:
    return any(d.call in _AUTHENTICATING or _authenticates(d) for d in dependant.dependencies)


def _authentication(dependant: Dependant) -> Callable[..., Awaitable[Actor]] | None:
    for d in dependant.dependencies:
        if d.call in _AUTHENTICATING:
            return d.call
        found = _authentication(d)
        if found is not None:
            return found
    return None


async def authenticate_route(request: Request) -> None:
    """Check the caller as the matched route would, raising its 9010 or 9011.

    The framework decodes a JSON body before it solves a route's dependencies, so a body
    that is not JSON was refused (9001) before the caller was asked who it is. The spec puts
    credentials first: only health and metrics answer anyone."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        check = _authentication(route.dependant)
        if check is not None:
            await check(request)


def document_security(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """List the credential schemes in the OpenAPI document, on every operation of `routers`
    that needs them (those depending on `allowed`), and the headers each operation reads:
    the token header there too, `Idempotency-Key` on their writes, `X-Request-Id` on all."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        routes = [route for router in routers for route in router.routes]
        for route in routes:
            if isinstance(route, APIRoute) and _authenticates(route.dependant):
                operations = schema["paths"].get(route.path_format, {})
                for method in route.methods or ():
                    operation = operations.get(method.lower())
                    if operation is None:
                        continue
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                    headers = [TOKEN_HEADER]
                    if method.lower() in WRITE_METHODS:
                        headers.append(IDEMPOTENCY_KEY_HEADER)
                    _add_parameters(operation, headers)
        for operations in schema["paths"].values():
            for operation in operations.values():
                _add_parameters(operation, [REQUEST_ID_HEADER])
        for route in routes:
            if isinstance(route, APIRoute):
                _keep_nulls_in_examples(schema["paths"].get(route.path_format, {}), route)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _keep_nulls_in_examples(operations: dict[str, Any], route: APIRoute) -> None:
    """Put each documented response example back as written: the framework drops every null
    from the document, so `"nextCursor": null` or `"jobId": null` vanished from examples of
    answers that always carry them."""
    for status, response in (route.responses or {}).items():
        for media, content in (response.get("content") or {}).items():
            if "example" not in content:
                continue
            for method in route.methods or ():
                operation = operations.get(method.lower(), {})
                documented = operation.get("responses", {}).get(str(status), {})
                target = documented.get("content", {}).get(media)
                if target is not None:
                    target["example"] = jsonable_encoder(content["example"])


def _add_parameters(operation: dict[str, Any], headers: list[dict[str, Any]]) -> None:
    parameters = operation.setdefault("parameters", [])
    present = {(p.get("in"), p.get("name", "").lower()) for p in parameters}
    for header in headers:
        if ("header", header["name"].lower()) not in present:
            parameters.append(dict(header))


def request_id(request: Request) -> str:
    return request_id_of(request.scope)


ReadActor = Annotated[Actor, Depends(allowed("read"))]
