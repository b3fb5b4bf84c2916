"""Property-based fuzzing of the live API from its own OpenAPI document (schemathesis).

Every generated request, well-formed (positive) or not (negative), must get a documented status
code and content type, a body matching the documented schema, and never a 5xx; malformed input
must be rejected. The run is bounded (a fixed, derandomized number of examples per backend and
mode, about half a minute each) so `make test` stays fast and repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Credentials
from tests.reliability.live import threaded_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_MODE = 150
# Schemathesis fills the documented auth headers with junk; the token header wins over Basic,
# so every call would be a 401 and never reach the route's own validation.
AUTH_HEADERS = ("Authorization", "X-CAP-API-OAUTH-TOKEN")


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free port, with the login throttle out of the way."""
    throttle = app.state.authenticator.throttle
    limit = throttle.limit
    # Fuzzed token requests fail login on purpose; from one address they would soon make
    # every request a 429. The throttle has its own tests (tests/reliability).
    throttle.limit = 1_000_000
    try:
        with threaded_server(app) as url:
            yield url
    finally:
        throttle.limit = limit


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_5xx_or_an_undocumented_response(
    live_url: str, acme_admin: Credentials, mode: GenerationMode
) -> None:
    # given the service's own OpenAPI document, served live, and a coupon_admin client
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")

    # when schemathesis sends generated requests to every operation
    # then each response passes every conformance check
    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        headers: dict[str, Any] = case.headers or {}
        for name in AUTH_HEADERS:
            headers.pop(name, None)
        case.call_and_validate(base_url=live_url, headers=acme_admin.headers, checks=CHECKS)

    run()


# --- regressions found by the fuzzer ------------------------------------------------------


def test_metrics_is_documented_as_plain_text_which_it_serves(live_url: str) -> None:
    # given the OpenAPI document
    document = httpx.get(f"{live_url}/openapi.json").json()

    # when /metrics is fetched
    response = httpx.get(f"{live_url}/metrics")

    # then the documented content type is the one served (it used to say application/json)
    documented = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(documented) == ["text/plain"]
    assert response.headers["content-type"].startswith("text/plain")
