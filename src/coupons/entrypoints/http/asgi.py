"""Entry point for ASGI servers: `uvicorn --factory coupons.entrypoints.http.asgi:app_from_env`."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait

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
    _end_with_the_supervisor()
    return app


def _end_with_the_supervisor() -> None:
    """A worker of `coupons serve --workers N` stops (gracefully) once its supervisor is gone.

    Killed on its own (the OOM killer, a `kill -9` of the main pid), the supervisor left its
    workers running: they kept the port and answered the API, but no job ran (the job and
    webhook workers live in the supervisor) and a restart failed on the taken port. The
    multiprocessing parent's sentinel becomes ready when that process ends, however it ends.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # one worker: this process is the server itself
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful shutdown

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
