"""The busiest call, `POST /v2/coupon/revoke`, served past the framework's routing, dependency
and body machinery when nothing about the request needs them.

Through the framework, a well-formed revoke spent about as much CPU in routing, dependency
solving, body handling and its middleware layers as in the use case's own SQL (docs/
benchmarks.md). This middleware answers a revoke itself when it can answer exactly as the route
would: no query string, credentials the authenticator's memory vouches for, a permitted caller,
a body that parses and validates. Anything else (a cache miss, a bad body, a query parameter, a
refused permission) goes on to the route, untouched, so every refusal still comes from the
route and its handlers. Both call the same function (`routes.revoke_response`), and an API
error of the use case is rendered by the same handler the framework would use.

It sits inside the edge and metrics middleware: the request id, the body limit, the request's
log line and its metrics (under the route's template) stay as they are.
"""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from coupons.domain import errors
from coupons.entrypoints.http import handlers, schemas
from coupons.entrypoints.http.deps import _authenticate
from coupons.entrypoints.http.middleware import replaying
from coupons.services.auth import require
from coupons.services.common import Actor

REVOKE_PATH = "/v2/coupon/revoke"


def revoke_route(router: APIRouter) -> APIRoute:
    """The revoke route (the metrics name calls by its template)."""
    for route in router.routes:
        if (
            isinstance(route, APIRoute)
            and route.path == REVOKE_PATH
            and "POST" in (route.methods or ())
        ):
            return route
    raise LookupError(f"no POST {REVOKE_PATH} route")


class RevokeFastPath:
    """Serve plain revoke calls directly; hand everything else to `app` as it came."""

    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != REVOKE_PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        # Whoever answers (this path or the route) reads the same body once more.
        again = replaying(body, receive)
        request = Request(scope, again)
        parsed = self._plain(request, body)
        if parsed is None:
            await self.app(scope, again, send)
            return
        from coupons.entrypoints.http.routes import revoke_response

        actor, revoke_body = parsed
        scope["route"] = self.route  # what the metrics and the log line name the call by
        try:
            response = await revoke_response(request, actor, revoke_body, None, dry_run=False)
        except errors.CouponError as error:
            response = await handlers.coupon_error(request, error)
        await response(scope, again, send)

    @staticmethod
    def _plain(request: Request, body: bytes) -> tuple[Actor, schemas.RevokeBody] | None:
        """The caller and the body, when the route would accept both without a question."""
        try:
            actor = _authenticate(request, cached_only=True)
            if actor is None:
                return None
            require(actor, "revoke")
        except errors.CouponError:
            return None
        try:
            data = json.loads(body)  # as the framework reads a JSON body
            if not isinstance(data, dict):
                return None
            return actor, schemas.RevokeBody.model_validate(data)
        except (ValueError, ValidationError, RecursionError):  # nested too deep, say
            return None


async def _whole_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
