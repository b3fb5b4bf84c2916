"""Entry point for ASGI servers: `uvicorn --factory coupons.entrypoints.http.asgi:app_from_env`."""

from __future__ import annotations

from fastapi import FastAPI

from coupons.config import Settings
from coupons.entrypoints.http.app import create_app


def app_from_env() -> FastAPI:
    """The app, configured from `COUPONS_*` environment variables."""
    app = create_app(Settings.from_env())
    app.state.db.start_wal_checkpointer()
    return app
