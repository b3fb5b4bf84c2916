"""Entry point for ASGI servers: `uvicorn --factory coupons.entrypoints.http.asgi:app_from_env`."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from coupons.config import Settings
from coupons.entrypoints.http.app import create_app


def app_from_env() -> FastAPI:
    """The app, configured from `COUPONS_*` environment variables."""
    app = create_app(Settings.from_env())
    app.state.db.start_wal_checkpointer()
    # Everything built so far (modules, the app, SQLAlchemy's tables) lives as long as the
    # process: take it out of the cyclic collector's reach. Its full collections walked all of
    # it every few hundred requests, and those pauses were the slowest 1% of revokes (codes50
    # p99 went from 3.5-6.7x the median to 2.0-2.8x; docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    return app
