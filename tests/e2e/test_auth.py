"""Spec §2: HTTP Basic, tokens, access groups, and secrets that never leak."""

from __future__ import annotations

import base64
import logging
import re
import time

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.conftest import PASSWORD, Backend, Credentials
from tests.e2e.conftest import Api, error_code

TOKEN_PATH = "/v3/oauth/token/generate"
SIGNING_KEY = "a-test-signing-key-of-32-bytes-or-more"
# Routes that answer without credentials: operations, the login itself, and the API docs
# (the docs describe the API and hold no org's data).
PUBLIC_PATHS = {"/health", "/metrics", TOKEN_PATH, "/docs", "/openapi.json"}

# The shared app fixture signs tokens with a short test key; PyJWT warns about its length and
# warnings fail tests. Production keys are generated at 48 random bytes.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def basic(username: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def token_for(client: TestClient, creds: Credentials) -> str:
    response = client.post(TOKEN_PATH, json={"key": creds.username, "secret": creds.password})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["accessToken"])


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert error_code(response) == 9010


# --- Basic ----------------------------------------------------------------------------------


def test_basic_credentials_of_an_active_client_are_accepted(api: Api) -> None:
    # given a series of acme
    series_id = api.series()

    # when acme reads it with Basic credentials
    response = api.get(f"/v2/coupon/series/{series_id}")

    # then it is served
    assert api.ok(response)["id"] == series_id


BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "wrong-secret": basic("acme-admin", "wrong-secret"),
    "unknown-user": basic("nobody", PASSWORD),
    "empty-secret": basic("acme-admin", ""),
    "missing": {},
    "basic-without-value": {"Authorization": "Basic"},
    "not-base64": {"Authorization": "Basic !!!not-base64!!!"},
    "no-colon": {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    "empty-username": {"Authorization": "Basic " + base64.b64encode(b":x").decode()},
    "not-utf8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
    "other-scheme": {"Authorization": "Digest username=acme-admin"},
    "bearer-without-token": {"Authorization": "Bearer"},
    "bearer-garbage": {"Authorization": "Bearer not.a.jwt"},
    "vendor-header-garbage": {"X-CAP-API-OAUTH-TOKEN": "garbage"},
}


def test_missing_wrong_or_malformed_credentials_get_9010(client: TestClient) -> None:
    # Bytes past ASCII in the header (read as Latin-1) made base64 raise another error: a 500
    not_ascii = {
        "basic-not-ascii": {"Authorization": b"Basic \xc3\xbc"},
        "basic-valid-then-not-ascii": {
            "Authorization": b"Basic " + base64.b64encode(b"acme-admin:x") + b"\xe9"
        },
    }
    for name, headers in {**BAD_CREDENTIALS, **not_ascii}.items():
        # when a read is made with these credentials
        response = client.get("/v2/customers/lookup", params={"id": 1}, headers=headers)

        # then it is refused as unauthenticated, in the envelope
        assert response.status_code == 401, (name, response.text)
        assert error_code(response) == 9010, name


# --- tokens ---------------------------------------------------------------------------------


def test_token_endpoint_trades_key_and_secret_for_an_expiring_token(
    client: TestClient, acme_admin: Credentials
) -> None:
    # when acme-admin asks for a token
    response = client.post(
        TOKEN_PATH, json={"key": acme_admin.username, "secret": acme_admin.password}
    )

    # then it gets the vendor's shape
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"accessToken", "expiresIn"}
    assert data["expiresIn"] == 3600
    assert data["accessToken"].count(".") == 2


def test_token_endpoint_refuses_a_wrong_secret_with_9010(
    client: TestClient, acme_admin: Credentials
) -> None:
    response = client.post(TOKEN_PATH, json={"key": acme_admin.username, "secret": "nope"})

    assert_unauthenticated(response)


@pytest.mark.parametrize("style", ["vendor-header", "bearer"])
def test_a_token_is_accepted_in_the_vendor_header_and_as_bearer(
    client: TestClient, acme_admin: Credentials, style: str
) -> None:
    # given a token of acme-admin
    token = token_for(client, acme_admin)
    headers = (
        {"X-CAP-API-OAUTH-TOKEN": token}
        if style == "vendor-header"
        else {"Authorization": f"Bearer {token}"}
    )

    # when it creates a customer with only the token
    response = client.post("/v2/customers", json={"mobile": "5550100"}, headers=headers)

    # then the call is made as acme-admin
    assert response.status_code == 200, response.text
    assert response.json()["entity"]["mobile"] == "5550100"


def test_a_token_decides_alone_beside_a_basic_header(
    client: TestClient, acme_viewer: Credentials, acme_admin: Credentials
) -> None:
    # (as documented: a gateway in front may add its own Basic header)
    # given a read-only client's token, sent with an admin's Basic header and with a wrong one
    token = token_for(client, acme_viewer)
    for other in (basic(acme_admin.username, acme_admin.password), basic("nobody", "wrong")):
        headers = {"X-CAP-API-OAUTH-TOKEN": token, **other}

        # when it reads, and when it tries to create a customer
        read = client.get("/v2/coupon/series", headers=headers)
        write = client.post("/v2/customers", json={"mobile": "5550111"}, headers=headers)

        # then both are judged as the token's client: allowed to read, not to write
        assert read.status_code == 200, read.text
        assert (write.status_code, error_code(write)) == (403, 9011)


def test_two_different_tokens_in_the_two_token_headers_are_refused(
    client: TestClient, acme_viewer: Credentials, acme_admin: Credentials
) -> None:
    # given an admin's token in the vendor header and a viewer's as a Bearer token (the
    # vendor header's was served, whatever the other said)
    admin, viewer = token_for(client, acme_admin), token_for(client, acme_viewer)
    mixed = {"X-CAP-API-OAUTH-TOKEN": admin, "Authorization": f"Bearer {viewer}"}
    same = {"X-CAP-API-OAUTH-TOKEN": admin, "Authorization": f"Bearer {admin}"}

    # when each creates a customer
    refused = client.post("/v2/customers", json={"mobile": "5550224"}, headers=mixed)
    served = client.post("/v2/customers", json={"mobile": "5550225"}, headers=same)

    # then two different tokens are 9010, and the same one twice is that one
    assert_unauthenticated(refused)
    assert "different tokens" in refused.json()["errors"][0]["message"]
    assert served.status_code == 200, served.text


def test_a_credential_header_sent_twice_is_refused_not_read_as_its_first_copy(
    client: TestClient, acme_viewer: Credentials, acme_admin: Credentials
) -> None:
    # given an admin's and a viewer's credentials in two headers of one name (a proxy that
    # adds its own, a library that appends), in either order, and two vendor token headers
    admin, viewer = (
        basic(acme_admin.username, acme_admin.password),
        basic(acme_viewer.username, acme_viewer.password),
    )
    token = token_for(client, acme_admin)
    doubled = [
        [("Authorization", admin["Authorization"]), ("Authorization", viewer["Authorization"])],
        [("Authorization", viewer["Authorization"]), ("Authorization", admin["Authorization"])],
        [("Authorization", admin["Authorization"]), ("Authorization", admin["Authorization"])],
        [("X-CAP-API-OAUTH-TOKEN", token), ("X-CAP-API-OAUTH-TOKEN", "junk")],
    ]
    for headers in doubled:
        # when it creates a customer
        response = client.post("/v2/customers", json={"mobile": "5550222"}, headers=headers)

        # then neither copy is chosen: 9010, and nothing is created
        assert_unauthenticated(response)
        assert "sent twice" in response.json()["errors"][0]["message"]
    lookup = client.get("/v2/customers/lookup?mobile=5550222", headers=admin)
    assert error_code(lookup) == 701

    # but beside one token, whose call Authorization does not decide, two of them are
    # ignored as one is (two gateways, each adding its own)
    beside_token = [
        ("X-CAP-API-OAUTH-TOKEN", token),
        ("Authorization", viewer["Authorization"]),
        ("Authorization", "Basic junk"),
    ]
    created = client.post("/v2/customers", json={"mobile": "5550223"}, headers=beside_token)
    assert created.status_code == 200, created.text


def test_an_expired_token_is_refused(backend: Backend, acme_admin: Credentials) -> None:
    # given an app whose tokens live three seconds (at least two: `exp` is whole seconds,
    # rounded down), and a token from it
    short = create_app(
        Settings(database_url=backend.url, token_secret=SIGNING_KEY, token_ttl_seconds=3),
        db=backend.db,
    )
    client = TestClient(short, raise_server_exceptions=False)
    token = token_for(client, acme_admin)
    fresh = client.get("/v2/customers/lookup?id=1", headers={"X-CAP-API-OAUTH-TOKEN": token})
    assert (fresh.status_code, error_code(fresh)) == (404, 701)

    # when the token has expired
    time.sleep(3.1)
    response = client.get("/v2/customers/lookup?id=1", headers={"X-CAP-API-OAUTH-TOKEN": token})

    # then it no longer authenticates
    assert_unauthenticated(response)


def test_a_token_accepted_before_expiry_is_not_refused(
    client: TestClient, acme_admin: Credentials
) -> None:
    # given a fresh token
    token = token_for(client, acme_admin)

    # when it is used at once for a lookup of a customer that does not exist
    response = client.get("/v2/customers/lookup?id=1", headers={"X-CAP-API-OAUTH-TOKEN": token})

    # then authentication passed and the lookup answered 701
    assert response.status_code == 404
    assert error_code(response) == 701


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_a_tampered_token_is_refused(
    client: TestClient, acme_admin: Credentials, part: str
) -> None:
    # given a valid token with one character changed in one of its parts
    token = token_for(client, acme_admin)
    pieces = token.split(".")
    index = ["header", "payload", "signature"].index(part)
    pieces[index] = _flip(pieces[index][0]) + pieces[index][1:]
    tampered = ".".join(pieces)

    # when it is used
    response = client.get("/v2/customers/lookup?id=1", headers={"X-CAP-API-OAUTH-TOKEN": tampered})

    # then it is refused
    assert_unauthenticated(response)


def test_a_token_signed_with_another_key_is_refused(
    backend: Backend, client: TestClient, acme_admin: Credentials
) -> None:
    # given a token from an app with a different signing key
    foreign = create_app(
        Settings(database_url=backend.url, token_secret=SIGNING_KEY[::-1]), db=backend.db
    )
    token = token_for(TestClient(foreign), acme_admin)

    # when it is presented to our app
    response = client.get("/v2/customers/lookup?id=1", headers={"Authorization": f"Bearer {token}"})

    # then it is refused
    assert_unauthenticated(response)


# --- access groups --------------------------------------------------------------------------


def test_read_only_clients_can_read(api: Api, viewer: Api) -> None:
    series_id = api.series()

    assert viewer.ok(viewer.get(f"/v2/coupon/series/{series_id}"))["id"] == series_id


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/customers", {"mobile": "5550100"}),
        ("/v2/coupon/series", {"description": "x"}),
        ("/v2/coupon/issue", {"seriesId": 1, "customer": {"id": 1}}),
        ("/v2/coupon/revoke", {"couponCodes": ["X"]}),
    ],
)
def test_read_only_clients_cannot_post_and_get_9011(viewer: Api, path: str, body: object) -> None:
    # when a read_only client writes
    response = viewer.post(path, body)

    # then it is forbidden and nothing was created
    assert response.status_code == 403, response.text
    assert error_code(response) == 9011


def test_read_only_client_creates_no_customer(api: Api, viewer: Api) -> None:
    # given a refused customer creation by a viewer
    viewer.post("/v2/customers", {"mobile": "5550100"})

    # then the mobile is still free in acme
    assert api.ok(api.post("/v2/customers", {"mobile": "5550100"}))["id"]


def test_default_clients_cannot_create_series_and_get_9011(agent: Api) -> None:
    response = agent.post(
        "/v2/coupon/series",
        {
            "description": "agent series",
            "clientHandlingType": "DISC_CODE",
            "validTill": "2099-01-01",
            "discountType": "ABS",
            "discountValue": 5,
        },
    )

    assert response.status_code == 403, response.text
    assert error_code(response) == 9011


def test_default_clients_cannot_add_codes_and_get_9011(api: Api, agent: Api) -> None:
    # given a series made by the admin
    series_id = api.series()

    # when the agent tries to add or generate codes
    upload = agent.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["A1"]})
    generate = agent.post(f"/v2/coupon/series/{series_id}/codes", {"generate": 3})

    # then both are forbidden and the pool stays empty
    assert (upload.status_code, error_code(upload)) == (403, 9011)
    assert (generate.status_code, error_code(generate)) == (403, 9011)
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["totalCount"] == 0


def test_default_clients_can_create_customers_and_issue(api: Api, agent: Api) -> None:
    series_id = api.series(codes=["POOL1"])
    customer_id = agent.customer("5550100")

    assert agent.issue(series_id, customer_id)["couponCode"] == "POOL1"


def test_coupon_admin_clients_can_create_series_and_add_codes(api: Api) -> None:
    series_id = api.series()

    entity = api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["A1", "B2"]}))

    assert entity == {"added": 2, "duplicates": []}


# --- public and protected routes ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_health_and_metrics_need_no_credentials(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200, response.text


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented (method, path) but the public ones, path parameters set to 1."""
    routes: list[tuple[str, str]] = []
    for template, operations in app.openapi()["paths"].items():
        if template not in PUBLIC_PATHS:
            path = re.sub(r"\{[^}]+\}", "1", template)
            routes.extend((method.upper(), path) for method in sorted(operations))
    return routes


def test_every_other_route_without_credentials_gets_9010(app: FastAPI, client: TestClient) -> None:
    # given every API route but the public ones
    routes = protected_routes(app)
    assert len(routes) >= 13, routes

    # when each is called without credentials, with a plausible body
    for method, path in routes:
        response = client.request(method, path, json={})

        # then each answers 9010 before looking at the body
        assert response.status_code == 401, (method, path, response.text)
        assert error_code(response) == 9010, (method, path)


# --- secrets --------------------------------------------------------------------------------


def test_client_secrets_are_stored_only_as_argon2_hashes(backend: Backend) -> None:
    # when the api_clients table is read directly
    with backend.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_clients")).mappings().all()

    # then no column of any client holds the secret, and each hash is argon2
    assert rows
    for row in rows:
        assert row["secret_hash"].startswith("$argon2"), row["username"]
        assert all(PASSWORD not in str(value) for value in row.values())


def test_secrets_and_tokens_never_appear_in_logs(
    client: TestClient,
    acme_admin: Credentials,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given every log record captured
    caplog.set_level(logging.DEBUG)

    # when a client authenticates with Basic, gets a token, uses it, and fails once
    ok = client.get("/v2/customers/lookup?id=1", headers=acme_admin.headers)
    token = token_for(client, acme_admin)
    with_token = client.get("/v2/customers/lookup?id=1", headers={"X-CAP-API-OAUTH-TOKEN": token})
    failed = client.get(
        "/v2/customers/lookup?id=1", headers=basic(acme_admin.username, PASSWORD + "x")
    )
    bad_body = client.post(TOKEN_PATH, json={"key": acme_admin.username, "secret": [PASSWORD]})

    # then the calls ran, and neither the secret nor the token was written anywhere
    assert [ok.status_code, with_token.status_code, failed.status_code] == [404, 404, 401]
    assert bad_body.status_code == 400
    assert PASSWORD not in bad_body.text
    captured = capsys.readouterr()
    for sink in (caplog.text, captured.out, captured.err):
        assert PASSWORD not in sink
        assert token not in sink


def test_the_openapi_document_names_the_credentials_of_every_protected_operation(
    app: FastAPI,
) -> None:
    # given the OpenAPI document
    document = app.openapi()
    # then it declares the three ways to present credentials
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] + ":" + s.get("scheme", s.get("name", "")) for s in schemes.values()} == {
        "http:basic",
        "http:bearer",
        "apiKey:X-CAP-API-OAUTH-TOKEN",
    }
    # and every operation that needs them lists them, the public ones none
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            expected: list[dict[str, list[str]]] | None = (
                None if template in PUBLIC_PATHS else [{n: []} for n in schemes]
            )
            assert operation.get("security") == expected, (method, template)


@pytest.mark.parametrize("sub", ["0", "-1", str(2**63), "9" * 23])
def test_a_signed_token_naming_no_possible_client_id_is_refused_not_a_fault(
    client: TestClient, sub: str
) -> None:
    # A 23-digit id overflowed the database's integer: a 500 for a token we had signed
    now = int(time.time())
    claims = {"sub": sub, "org": 1, "iat": now, "exp": now + 60, "sv": "x"}
    key = client.app.state.authenticator.signing_key()  # type: ignore[attr-defined]
    token = jwt.encode(claims, key, algorithm="HS256")

    response = client.get("/v2/customers/lookup?id=1", headers={"Authorization": f"Bearer {token}"})

    assert_unauthenticated(response)
