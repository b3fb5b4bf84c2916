"""The OpenAPI document describes revoke with the vendor's examples; /docs needs no internet."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Match

from coupons.config import Settings
from coupons.entrypoints.http import create_app, events_routes
from coupons.entrypoints.http.routes import router


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # Serving the document touches no data, so one SQLite file serves for both checks.
    path = tmp_path_factory.mktemp("openapi") / "coupons.db"
    return create_app(
        Settings(
            database_url=f"sqlite:///{path}",
            token_secret="openapi-test-signing-key-0123456789abcdef",
        )
    )


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    response = TestClient(app).get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def test_the_revoke_request_schema_and_the_vendors_request_examples_are_documented(
    spec: dict[str, Any],
) -> None:
    operation = spec["paths"]["/v2/coupon/revoke"]["post"]
    body = operation["requestBody"]["content"]["application/json"]

    schema = resolve(spec, body["schema"])
    assert {"couponSeriesId", "couponCodes", "customer", "reason"} <= set(schema["properties"])
    examples = {name: e["value"] for name, e in body["examples"].items()}
    assert examples["codes"] == {
        "couponSeriesId": 415446,
        "couponCodes": ["3138309782", "3636820421"],
    }
    assert examples["mobile"]["customer"] == {"mobile": "11223569865"}
    assert {"mobile", "email", "externalId", "id", "codes"} <= set(examples)
    parameters = {p["name"] for p in operation["parameters"]}
    assert {"couponCodeCase", "dryRun"} <= parameters


def test_the_revoke_response_schema_and_examples_have_the_vendors_shape(
    spec: dict[str, Any],
) -> None:
    responses = spec["paths"]["/v2/coupon/revoke"]["post"]["responses"]
    ok = responses["200"]["content"]["application/json"]

    entity = resolve(spec, resolve(spec, ok["schema"])["properties"]["entity"])
    assert set(entity["properties"]) == {
        "totalCount",
        "failedCount",
        "revokedCoupons",
        "failedToRevoke",
    }
    for example in ok["examples"].values():
        value = example["value"]
        assert set(value) == {"entity", "warnings", "errors", "success"}
        assert set(value["entity"]) == set(entity["properties"])
    failures = responses["400"]["content"]["application/json"]["examples"]
    codes = {e["value"]["errors"][0]["code"] for e in failures.values()}
    assert {108, 712, 756} <= codes


def test_the_docs_page_loads_every_asset_from_this_server(app: FastAPI) -> None:
    # Given the interactive docs page
    client = TestClient(app)
    page = client.get("/docs")
    assert page.status_code == 200

    # Then every script, stylesheet and icon it loads is served here, not from a CDN
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
    assert assets, page.text
    assert not [a for a in assets if re.match(r"^(https?:)?//", a)], assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    assert "/openapi.json" in page.text


def test_revoke_is_tried_first_and_no_other_route_would_serve_it() -> None:
    """Moving revoke to the front of the route list (for speed) can change which route
    answers a request only if another route also matches POST /v2/coupon/revoke."""
    scope = {"type": "http", "method": "POST", "path": "/v2/coupon/revoke", "root_path": ""}
    routes = [r for r in [*router.routes, *events_routes.router.routes] if isinstance(r, APIRoute)]
    assert routes[0].path == "/v2/coupon/revoke"
    full = [r.path for r in routes if r.matches(dict(scope))[0] == Match.FULL]
    assert full == ["/v2/coupon/revoke"]


PUBLIC = {"/health", "/metrics", "/v3/oauth/token/generate"}


def test_every_header_the_api_reads_is_a_documented_parameter_where_it_is_read(
    spec: dict[str, Any],
) -> None:
    # given every operation of the document
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            # then X-Request-Id is on every one (the edge reads it on every request)
            assert "X-Request-Id" in headers, (method, path)
            # and the token header on those needing credentials, Idempotency-Key on their writes
            needs_credentials = path not in PUBLIC
            assert ("X-CAP-API-OAUTH-TOKEN" in headers) == needs_credentials, (method, path)
            writes = needs_credentials and method in {"post", "put", "patch", "delete"}
            assert ("Idempotency-Key" in headers) == writes, (method, path)
    key = next(
        p
        for p in spec["paths"]["/v2/coupon/revoke"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    )
    assert key["schema"]["maxLength"] == 255 and not key["required"]


def test_documented_headers_work_as_documented(app: FastAPI) -> None:
    # given a request sending the documented token and request id headers
    client = TestClient(app)
    response = client.post(
        "/v2/coupon/revoke",
        json={"couponCodes": ["A1"]},
        headers={
            "X-CAP-API-OAUTH-TOKEN": "not-a-token",
            "X-Request-Id": "doc-header-1",
        },
    )

    # then each is read: the token is checked (401) and the request id echoed
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "doc-header-1"


def test_the_docs_page_sends_the_document_to_no_outside_validator(app: FastAPI) -> None:
    page = TestClient(app).get("/docs").text
    assert '"validatorUrl": null' in page
