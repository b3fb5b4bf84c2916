"""The console as an ASGI app mounted at /console by the HTTP app.

It has its own error handling: whatever goes wrong, the browser gets an HTML page saying so,
never the API's JSON envelope and never a stack trace (the fault is logged with the request
id instead).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coupons.adapters.sql_uow import Database
from coupons.domain import errors
from coupons.entrypoints.console import finding_pages, jobs_pages, pages, revoking
from coupons.entrypoints.console.web import (
    SECURITY_HEADERS,
    Console,
    Refused,
    error_page,
    log,
    page,
    signed_in,
)
from coupons.entrypoints.http.handlers import note_client_gone
from coupons.entrypoints.http.middleware import request_id_of
from coupons.entrypoints.http.routing import allowed_methods
from coupons.services.auth import FailureThrottle

HERE = Path(__file__).parent


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_console(
    db: Database, throttle: FailureThrottle, *, session_lifetime: timedelta
) -> ASGIApp:
    """The console app; `throttle` is the API's, so sign-ins and API logins count together."""
    app = Starlette(
        routes=[
            *pages.routes,
            *revoking.routes,
            *finding_pages.routes,
            *jobs_pages.routes,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            HTTPException: _http_error,
            Refused: _refused,
            errors.CouponError: _api_error,
            ClientDisconnect: _client_gone,
            Exception: _fault,
        },
    )
    app.state.db = db  # what the API's CSV export reads its pages from
    app.state.console = Console(
        db=db, throttle=throttle, session_lifetime=session_lifetime, templates=_templates()
    )
    return SecurityHeaders(FaultPage(app, app.state.console.templates))


async def _http_error(request: Request, exc: Exception) -> Response:
    """No route ran, so no page looked up who is signed in: do it here, so a signed-in person
    keeps the navigation (spec §9: every page), while anyone else still sees nothing."""
    assert isinstance(exc, HTTPException)
    # With the database away the page still says what went wrong, only without navigation.
    with contextlib.suppress(errors.CouponError):
        await signed_in(request)
    if exc.status_code == 404:
        return page(request, "error.html", status=404, message="There is no such page.")
    if exc.status_code == 405:
        answer = page(request, "error.html", status=405, message="This page cannot do that.")
        answer.headers["Allow"] = _allowed(request)
        return answer
    return page(request, "error.html", status=exc.status_code, message="That request failed.")


def _allowed(request: Request) -> str:
    """Every method the path takes, for a 405's `Allow` (RFC 9110 requires it), found as the
    API finds its own: the router's header names only the first route that matched the path
    (`/revoke` has a GET and a POST route). The static files take GET and HEAD."""
    return ", ".join(allowed_methods(request.scope)) or "GET, HEAD"


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return page(request, "error.html", status=exc.status, message=exc.message)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The browser dropped the request before its form was read (a double click sends the
    form again and drops the first): as the API, no fault and no 500 in the metrics; this
    answer reaches nobody."""
    note_client_gone(request.scope)
    return page(request, "error.html", status=400, message="The form arrived cut short.")


async def _api_error(request: Request, exc: Exception) -> Response:
    """An API error no page handled itself (the database away during a search or a sign-in)."""
    assert isinstance(exc, errors.CouponError)
    return error_page(request, "Error", exc)


async def _fault(request: Request, exc: Exception) -> Response:
    """Starlette's last handler: sends this page, then re-raises to `FaultPage`."""
    body = request.app.state.console.templates.get_template("fault.html").render(
        request_id=request_id_of(request.scope)
    )
    return HTMLResponse(body, status_code=500)


class SecurityHeaders:
    """Outermost: every console response, not only the HTML pages, goes out with the same
    security and cache headers. A CSV download, a job's report or its JSON progress names
    coupons and customers just as the pages do, so no shared cache keeps it, and no browser
    sniffs it into something it may run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class FaultPage:
    """Outermost: any unexpected fault becomes a plain error page (sent by `_fault`, or here
    when none was sent yet) and one log line, and goes no further: the API's JSON handler
    never sees it."""

    def __init__(self, app: ASGIApp, templates: jinja2.Environment) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as error:
            request_id = request_id_of(scope)
            log.error("console fault", request_id=request_id, error=type(error).__name__)
            if started or scope["type"] != "http":
                return
            body = self.templates.get_template("fault.html").render(request_id=request_id)
            response = HTMLResponse(body, status_code=500)
            await response(scope, receive, send)
