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

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from coupons.domain import errors
from coupons.entrypoints.http import handlers, schemas
from coupons.entrypoints.http.deps import cached_caller
from coupons.entrypoints.http.middleware import read_body, replaying
from coupons.entrypoints.http.routes import REVOKE_PERMISSION, revoke_response
from coupons.entrypoints.http.routing import strict_json
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
        body = await read_body(receive) or b""
        # Whoever answers (this path or the route) reads the same body once more.
        again = replaying(body, receive)
        request = Request(scope, again)
        parsed = self._plain(request, body)
        if parsed is None:
            await self.app(scope, again, send)
            return
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
            actor = cached_caller(request, REVOKE_PERMISSION)
        except errors.CouponError:  # throttled, refused: the route answers
            return None
        if actor is None:
            return None
        try:
            data = strict_json(body)  # as the route reads a JSON body
            if not isinstance(data, dict):
                return None
            return actor, schemas.RevokeBody.model_validate(data)
        except (ValueError, ValidationError, RecursionError):  # nested too deep, say
            return None
        except errors.CouponError:  # a field named in another case: the route says so
            return None
