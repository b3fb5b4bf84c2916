"""Reliability fixtures: the e2e `Api` helper per org, as the e2e tests use it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Credentials
from tests.e2e.conftest import Api


@pytest.fixture
def api(client: TestClient, acme_admin: Credentials) -> Api:
    return Api(client, acme_admin)


@pytest.fixture
def other(client: TestClient, globex_admin: Credentials) -> Api:
    return Api(client, globex_admin)
