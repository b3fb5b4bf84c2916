"""The FastAPI application, built from settings (no globals, nothing at import time)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import fastapi_offline
import structlog
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from coupons import __version__
from coupons.adapters.sql_uow import Database
from coupons.config import Settings
from coupons.domain import errors
from coupons.entrypoints.console import create_console
from coupons.entrypoints.console.web import SECURITY_HEADERS
from coupons.entrypoints.http import (
    events_routes,
    finding_routes,
    handlers,
    jobs_routes,
    metrics,
    openapi_doc,
)
from coupons.entrypoints.http.deps import document_security
from coupons.entrypoints.http.envelope import failure, success
from coupons.entrypoints.http.fast_revoke import RevokeFastPath, revoke_route
from coupons.entrypoints.http.middleware import EdgeMiddleware
from coupons.entrypoints.http.routes import router
from coupons.services.auth import Authenticator, FailureThrottle

log = structlog.get_logger("coupons.http")

# Swagger UI assets ship inside a Python package, so /docs works with no internet access.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"

DESCRIPTION = """
A self-hostable coupon service. `POST /v2/coupon/revoke` is wire-compatible with a large
loyalty vendor's revoke API. Authenticate with HTTP Basic (API client username and secret) or
a token from `POST /v3/oauth/token/generate`. Every response uses one envelope:
`{"entity", "warnings", "errors", "success"}`.
"""


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the application for `settings`; pass `db` to share an existing store."""
    database = db or Database.from_url(
        settings.database_url,
        pool_size=settings.db_pool_size,
        retry_after=settings.db_retry_after_seconds,
    )
    app = FastAPI(
        title="Coupons",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        # `/v2/coupon/revoke/` is no route: a 404 in the envelope, not an empty redirect
        # (a client following it would re-send its POST elsewhere).
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.authenticator = Authenticator(
        database,
        token_secret=settings.token_secret,
        token_ttl_seconds=settings.token_ttl_seconds,
        throttle=FailureThrottle(settings.auth_failure_limit, settings.auth_failure_window_seconds),
    )
    handlers.install(app)
    finding_routes.install(router)
    app.include_router(router)
    app.include_router(events_routes.router)
    app.include_router(jobs_routes.router)
    document_security(app, [router, events_routes.router, jobs_routes.router])
    openapi_doc.complete_document(app, jobs_routes.JobSelector.model_json_schema(by_alias=True))
    app.add_middleware(RevokeFastPath, route=revoke_route(router))  # inside metrics: timed, logged
    metrics.install(app, database)  # inside EdgeMiddleware: it sees the request id
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount(
        "/console",
        create_console(
            database,
            app.state.authenticator.throttle,
            session_lifetime=timedelta(seconds=settings.console_session_seconds),
        ),
        name="console",
    )

    @app.get("/console", include_in_schema=False)
    async def console_home() -> RedirectResponse:
        # The address people type: the console's pages are under `/console/`. (Slashes are
        # not redirected in general, see above.)
        return RedirectResponse("/console/", status_code=307, headers=SECURITY_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Coupons API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            # Off: the default sends this document's URL to an outside validation service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/health", tags=["operations"])
    async def health(request: Request) -> Response:
        """Liveness and database reachability (one `SELECT 1`); needs no credentials.

        503 (9023, with `Retry-After`) while the database does not answer, so a load balancer
        takes this process out of rotation until it does.
        """
        try:
            await run_in_threadpool(database.ping)
        except errors.DatabaseUnavailable as error:
            return failure(error.code, error.message, error.http_status, _retry(error))
        except Exception:
            log.warning("health check failed", exc_info=True)
            return failure(9023, "database unreachable", 503, {"Retry-After": "2"})
        return success({"status": "ok", "database": database.backend, "version": __version__})

    return app


def _retry(error: errors.DatabaseUnavailable) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}
