"""The API's routes: strict JSON bodies, no query parameter a route does not take, and
matching that keeps `/v2/coupon/{couponId}` from answering for other paths.

Routes are tried in order and the first full match wins, so `GET /v2/coupon/{couponId}`
would take `GET /v2/coupon/revoke` (a path whose only route is a POST) and answer with a
validation error about `couponId`, instead of the 405 a wrong method deserves. An id route
therefore steps aside when a path parameter is not a number and another route has this
exact path: that route then answers (or the router's 405 for its method). A non-numeric id
on no other route's path still reaches the route and fails validation (9002, naming it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote_to_bytes

from fastapi import Query
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator, Strict, WithJsonSchema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from coupons.domain.errors import InvalidField
from coupons.entrypoints.http.schemas import digits_as_int

# How `strict_json` words a name given twice in one object (read back by the error handler).
DUPLICATE_NAME = "is given more than once"


def _not_json(token: str) -> Any:
    raise json.JSONDecodeError(f"{token} is not JSON", token, 0)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise json.JSONDecodeError(f"{name!r} {DUPLICATE_NAME}", name, 0)
        seen.add(name)
    raise AssertionError("unreachable")


# Python converts at most this many digits to an int, and refuses more (quadratic time).
_MAX_INT_DIGITS = 4300


def _bounded_int(token: str) -> int | float:
    """An integer of more digits than Python converts is still JSON, and fits no field: it
    reads as infinity, which every field refuses (9002 naming it), not as a body that is not
    JSON (9001)."""
    if len(token) > _MAX_INT_DIGITS:
        return float("-inf") if token.startswith("-") else float("inf")
    return int(token)


def strict_json(body: bytes) -> Any:
    """A JSON body as RFC 8259 defines it: Python's parser also takes NaN and Infinity,
    which no other JSON reader does (9001, as any body that is not JSON). A name given twice
    in one object is refused too (9001): the parser would keep the last, so
    `{"dryRun": true, "dryRun": false}` would act for real, and other readers keep the first."""
    return json.loads(
        body, parse_constant=_not_json, object_pairs_hook=_unique_names, parse_int=_bounded_int
    )


def _query_whole(value: Any) -> Any:
    """A count or cursor in the query, written in digits as a path's id is: the lax parsing
    took `limit=1.0` and `limit=+5`, which the same number in a path is refused for."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits")
    return digits_as_int(value)


# A whole number in the query; `whole_query` adds its bounds.
QueryWhole = Annotated[int, BeforeValidator(_query_whole), Strict()]


def whole_query(ge: int, le: int, **query: Any) -> Any:
    """The bounds of a `QueryWhole` parameter, kept in JSON Schema words as path ids' are."""
    return (
        WithJsonSchema(
            {"type": "integer", "minimum": ge, "maximum": le}
            | ({"description": query["description"]} if "description" in query else {})
        ),
        Query(ge=ge, le=le, **query),
    )


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class UnknownQueryParameter(InvalidField):
    """A query parameter the route does not take (9002). Its handler asks for credentials
    first, as the route would have."""


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def _unknown(name: str, known: frozenset[str]) -> UnknownQueryParameter:
    name = name or "(a parameter with no name)"
    near = [k for k in known if k.lower() == name.lower()]
    if near:
        return UnknownQueryParameter(name, f"not a parameter of this call; did you mean {near[0]}?")
    takes = f"it takes {', '.join(sorted(known))}" if known else "it takes no query parameters"
    return UnknownQueryParameter(name, f"not a parameter of this call ({takes})")


def _refuse_broken_text(query: bytes) -> None:
    """Refuse a query parameter whose percent-decoded bytes are not UTF-8 (9002). The query
    parser puts U+FFFD in their place, so `reason=%ff` was stored as the audit trail's
    reason, where the same bytes in a JSON body are refused."""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode()
            except UnicodeDecodeError:
                shown = unquote_to_bytes(name).decode(errors="replace") or "(no name)"
                raise InvalidField(shown, "is not valid UTF-8 text once percent-decoded") from None


class ApiRoute(APIRoute):
    """An API route that reads JSON bodies strictly (`strict_json`) and refuses query
    parameters it does not take. Ignored, a misspelt one changed what a call did:
    `?dryrun=true` revoked for real, and `?state=` on a list filtered by `status` listed
    everything."""

    # Every API route, for the `Allow` header of a 405 (`allowed_methods`).
    _all: ClassVar[list[ApiRoute]] = []

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        ApiRoute._all.append(self)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = _query_names(self.dependant)

        async def strict(request: Request) -> Response:
            query: bytes = request.scope.get("query_string", b"")
            if query:
                _refuse_broken_text(query)
            for name in request.query_params:
                if name not in known:
                    raise _unknown(name, known)
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


class IdRoute(ApiRoute):
    """An API route whose numeric path parameters never capture another route's path."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self._has_parameters = bool(self.param_convertors)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        # Revoke, first in line, has no path parameter: one attribute read and done.
        if not self._has_parameters or match is Match.NONE or _numeric(child_scope):
            return match, child_scope  # the usual case: one cheap check, no more
        if match is Match.PARTIAL:
            # A wrong method on a path whose id is no number (`POST /v2/coupon/revok`, a
            # typo) names nothing this route serves: 404, not a 405 pointing at GET. The 405
            # of a real path (`GET /v2/coupon/revoke`) comes from the route owning it.
            return Match.NONE, {}
        if any(other is not self for other in _routes_with_this_path(scope)):
            return Match.NONE, {}
        return match, child_scope


def _numeric(child_scope: Scope) -> bool:
    values = (child_scope.get("path_params") or {}).values()
    return all(str(v).isascii() and str(v).isdigit() for v in values)


def _fits(route: Route, scope: Scope) -> bool:
    """Whether the path is the route's, by the plain path-and-method match (no recursion into
    an id route's own check); an id route's ids must be numbers, as it matches them."""
    match, child_scope = Route.matches(route, scope)
    return match is not Match.NONE and (not isinstance(route, IdRoute) or _numeric(child_scope))


def _routes_with_this_path(scope: Scope) -> list[IdRoute]:
    """Id routes whose path is this one with numbers (or nothing) in its parameters."""
    return [r for r in ApiRoute._all if isinstance(r, IdRoute) and _fits(r, scope)]


def allowed_methods(scope: Scope) -> list[str]:
    """Every method the request's path takes (for the `Allow` header of a 405); HEAD too
    where GET is, as the edge answers HEAD as GET. An id route counts only when its ids are
    numbers, as it is matched; the others (a job's id is text) whenever the path fits."""
    # The API's routes, wherever their router is included, and the app's own (`/health`,
    # `/metrics`; the console's pages, when the console asks).
    own = getattr(getattr(scope.get("app"), "router", None), "routes", [])
    routes = [*ApiRoute._all, *(r for r in own if isinstance(r, Route))]
    methods = {m for route in routes if _fits(route, scope) for m in route.methods or ()}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
