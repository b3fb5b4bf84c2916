"""The ASGI factory that `coupons serve` and any ASGI server start each worker with."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coupons.adapters import migrate
from coupons.entrypoints.http.asgi import app_from_env


def test_a_worker_built_from_the_environment_serves_and_keeps_its_startup_objects_out_of_gc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a migrated database named by the environment, as `coupons serve` sets it
    url = f"sqlite:///{tmp_path / 'asgi.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("COUPONS_DATABASE_URL", url)
    gc.unfreeze()
    try:
        # When a worker builds its app
        app = app_from_env()
        frozen = gc.get_freeze_count()
        # Then what it built at start-up is frozen (full collections no longer walk it:
        # those pauses were the revoke path's p99), and it serves
        assert frozen > 10_000
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
        app.state.db.dispose()
    finally:
        gc.unfreeze()
