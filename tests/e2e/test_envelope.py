"""Spec §1: one envelope for every answer, framework errors included, and request ids."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import FUTURE, Api, error_code

MIB = 1024 * 1024
SERIES_BODY = {
    "description": "envelope series",
    "clientHandlingType": "DISC_CODE",
    "validTill": FUTURE,
    "discountType": "ABS",
    "discountValue": 5,
}


def assert_failure_envelope(response: Any) -> None:
    body = response.json()
    assert set(body) == {"warnings", "errors", "success"}
    assert body["success"] is False and body["warnings"] == []
    [error] = body["errors"]
    assert set(error) == {"status", "code", "message"} and error["status"] is False


NOT_AN_OBJECT = [b'{"mobile": ', b"not json", b"", b"[1, 2]", b'"a string"', b"42", b"null"]
# Python's own parser takes these; no other JSON reader does (RFC 8259 has no such numbers)
NOT_JSON_NUMBERS = [b'{"mobile": NaN}', b'{"mobile": Infinity}', b'{"mobile": -Infinity}']


@pytest.mark.parametrize("path", ["/v2/customers", "/v2/coupon/series", "/v2/coupon/issue"])
def test_a_body_that_is_not_a_json_object_gets_9001(api: Api, path: str) -> None:
    for raw in NOT_AN_OBJECT:
        # when a body that is not a JSON object is posted
        response = api.post(path, content=raw, headers={"Content-Type": "application/json"})

        # then the envelope says 9001 with HTTP 400
        assert response.status_code == 400, (raw, response.text)
        assert error_code(response) == 9001, raw
        assert_failure_envelope(response)


@pytest.mark.parametrize("raw", NOT_JSON_NUMBERS)
@pytest.mark.parametrize("path", ["/v2/customers", "/v2/coupon/revoke"])
def test_nan_and_infinity_are_not_json_9001(api: Api, path: str, raw: bytes) -> None:
    body = raw.replace(b'"mobile"', b'"couponSeriesId"') if path.endswith("revoke") else raw

    response = api.post(path, content=body, headers={"Content-Type": "application/json"})

    assert (response.status_code, error_code(response)) == (400, 9001), response.text


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v2/coupon/revoke?dryRun=true", b'{"couponCodes": ["DUP-1"], "couponCodes": ["DUP-2"]}'),
        ("/v2/coupon/revoke", b'{"couponCodes": ["DUP-2"], "customer": {"id": 1, "id": 2}}'),
        ("/v2/coupon/revoke/jobs", b'{"couponSeriesId": 1, "dryRun": true, "dryRun": false}'),
        ("/v2/customers", b'{"mobile": "5550101", "mobile": "5550102"}'),
    ],
)
def test_a_name_given_twice_in_a_json_object_is_9001_and_nothing_is_done(
    api: Api, path: str, raw: bytes
) -> None:
    # Python's parser keeps the last value, other readers the first: neither is safe
    series = api.series(codes=["DUP-1", "DUP-2"])
    body = raw.replace(b'"couponCodes"', f'"couponSeriesId": {series}, "couponCodes"'.encode(), 1)
    body = body.replace(b'"couponSeriesId": 1,', f'"couponSeriesId": {series},'.encode())

    response = api.post(path, content=body, headers={"Content-Type": "application/json"})

    assert (response.status_code, error_code(response)) == (400, 9001), response.text
    listed = api.ok(api.get(f"/v2/coupon/series/{series}/coupons"))["coupons"]
    assert {c["couponCode"]: c["state"] for c in listed} == {
        "DUP-1": "AVAILABLE",
        "DUP-2": "AVAILABLE",
    }
    assert api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"] == []


@pytest.mark.parametrize("raw", [b"{bad", b"[1]", b"\xff\xfe"])
@pytest.mark.parametrize("path", ["/v2/coupon/revoke", "/v2/customers", "/v2/coupon/series"])
def test_credentials_are_checked_before_the_body_is_judged(
    client: TestClient, viewer: Api, path: str, raw: bytes
) -> None:
    # Only health and metrics answer anyone: a body that is not JSON is no reason to skip
    # the caller's credentials, or its access group
    json_header = {"Content-Type": "application/json"}
    anonymous = client.post(path, content=raw, headers=json_header)
    wrong = client.post(path, content=raw, headers=json_header, auth=("acme-viewer", "nope"))
    refused = viewer.post(path, content=raw, headers=json_header)

    assert (anonymous.status_code, error_code(anonymous)) == (401, 9010)
    assert (wrong.status_code, error_code(wrong)) == (401, 9010)
    assert (refused.status_code, error_code(refused)) == (403, 9011)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v2/coupon/issue", {"seriesId": "abc", "customer": {"id": 1}}, "seriesId"),
        ("/v2/coupon/issue", {"seriesId": 1, "customer": {"id": "x"}}, "customer.id"),
        ("/v2/coupon/issue", {"seriesId": 1, "customer": "bob"}, "customer"),
        ("/v2/coupon/issue", {"customer": {"id": 1}}, "seriesId"),
        ("/v2/coupon/series", {**SERIES_BODY, "validTill": "soon"}, "validTill"),
        ("/v2/coupon/series", {**SERIES_BODY, "discountType": "FREE"}, "discountType"),
        ("/v2/coupon/series", {**SERIES_BODY, "clientHandlingType": "X"}, "clientHandlingType"),
        ("/v2/coupon/series", {**SERIES_BODY, "discountValue": [1]}, "discountValue"),
        ("/v2/customers", {"mobile": ["555"]}, "mobile"),
        ("/v2/coupon/issue/multiple", {"seriesId": 1, "customer": {"id": 1}}, "count"),
        # An id or a count is a JSON integer: not a numeric string, a float or a boolean
        ("/v2/coupon/revoke", {"couponSeriesId": "1", "couponCodes": ["A"]}, "couponSeriesId"),
        ("/v2/coupon/revoke", {"couponSeriesId": True, "couponCodes": ["A"]}, "couponSeriesId"),
        ("/v2/coupon/revoke", {"couponSeriesId": 1.0, "couponCodes": ["A"]}, "couponSeriesId"),
        ("/v2/coupon/revoke", {"customer": {"id": True}}, "customer.id"),
        ("/v2/coupon/revoke", {"customer": {"id": "1.0"}}, "customer.id"),
        ("/v2/coupon/issue", {"seriesId": "1", "customer": {"id": 1}}, "seriesId"),
        (
            "/v2/coupon/issue/multiple",
            {"seriesId": 1, "customer": {"id": 1}, "count": "2"},
            "count",
        ),
        ("/v2/coupon/revoke/jobs", {"couponSeriesId": "1"}, "couponSeriesId"),
    ],
)
def test_a_field_of_the_wrong_type_gets_9002_naming_the_field(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    # when a body with one bad field is posted
    response = api.post(path, body)

    # then the failure names that field
    assert response.status_code == 400, response.text
    assert error_code(response) == 9002
    assert_failure_envelope(response)
    assert field in response.json()["errors"][0]["message"]


def test_a_body_over_one_mebibyte_gets_9013_and_http_413(api: Api) -> None:
    # given a JSON object just over 1 MiB
    raw = b'{"mobile": "5550100", "padding": "' + b"x" * MIB + b'"}'

    # when it is posted
    response = api.post("/v2/customers", content=raw)

    # then it is refused as too large and nothing is created
    assert response.status_code == 413
    assert error_code(response) == 9013
    assert api.ok(api.post("/v2/customers", {"mobile": "5550100"}))["id"]


def test_a_streamed_body_over_one_mebibyte_without_length_gets_9013(api: Api) -> None:
    # given a body sent in chunks with no Content-Length
    def chunks() -> Any:
        yield b'{"mobile": "5550100", "padding": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    # when it is posted
    response = api.post("/v2/customers", content=chunks())

    # then the size limit still holds
    assert response.status_code == 413
    assert error_code(response) == 9013


def test_a_body_just_under_one_mebibyte_is_accepted(api: Api) -> None:
    raw = b'{"mobile": "5550100", "padding": "' + b"x" * (MIB - 100) + b'"}'

    response = api.post("/v2/customers", content=raw)

    assert api.ok(response)["mobile"] == "5550100"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v2/customers", {"json": {"mobile": "555\x000100"}}),
        ("POST", "/v2/customers", {"json": {"mobile": "5550100", "firstName": "A\x00"}}),
        ("POST", "/v2/coupon/issue", {"json": {"seriesId": 1, "customer": {"email": "a\x00@b"}}}),
        ("GET", "/v2/customers/lookup", {"params": {"email": "a\x00@b.c"}}),
        ("GET", "/v2/customers/lookup", {"params": {"externalId": "\x00"}}),
    ],
)
def test_nul_characters_are_refused_with_a_4xx(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = api.request(method, path, **kwargs)

    assert 400 <= response.status_code < 500, response.text
    assert_failure_envelope(response)


def test_nul_characters_in_uploaded_codes_are_refused(api: Api) -> None:
    # given a series
    series_id = api.series()

    # when codes with NUL are uploaded, plain and with a pin
    plain = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["OK1", "BAD\x00"]})
    pinned = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": [{"code": "B\x00"}]})

    # then both are refused and the pool stays empty
    assert (plain.status_code, error_code(plain)) == (400, 9002)
    assert (pinned.status_code, error_code(pinned)) == (400, 9002)
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["totalCount"] == 0


def test_an_unknown_route_gets_a_404_envelope(api: Api) -> None:
    response = api.get("/v2/no/such/thing")

    assert response.status_code == 404
    assert_failure_envelope(response)


def test_a_wrong_method_gets_an_envelope(api: Api) -> None:
    response = api.request("DELETE", "/v2/customers")

    assert response.status_code == 405
    assert_failure_envelope(response)


def test_unknown_body_fields_are_ignored(api: Api) -> None:
    # when a series is created with fields the API does not know
    response = api.post("/v2/coupon/series", {**SERIES_BODY, "colour": "blue", "x": {"y": 1}})

    # then it is created as if they were absent
    entity = api.ok(response)
    assert entity["description"] == "envelope series"
    assert "colour" not in entity


def test_success_responses_use_the_envelope(api: Api) -> None:
    body = api.post("/v2/customers", {"mobile": "5550100"}).json()

    assert set(body) == {"entity", "warnings", "errors", "success"}
    assert body["warnings"] == [] and body["errors"] == [] and body["success"] is True


# --- request ids ----------------------------------------------------------------------------

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/health", {}),
    ("POST", "/v2/customers", {"json": {"mobile": "5550199"}}),
    ("POST", "/v2/customers", {"content": b"not json"}),
    ("GET", "/v2/customers/lookup", {"params": {"id": 999999}}),
    ("GET", "/v2/nowhere", {}),
    ("POST", "/v2/customers", {"content": b"x" * (MIB + 1)}),
]


def test_a_client_request_id_is_echoed_on_success_and_error(api: Api) -> None:
    for method, path, kwargs in CALLS:
        response = api.request(method, path, headers={"X-Request-Id": "client-id-42"}, **kwargs)

        assert response.headers["X-Request-Id"] == "client-id-42", (method, path)


def test_a_request_id_is_generated_when_none_is_sent(api: Api) -> None:
    for method, path, kwargs in CALLS:
        first = api.request(method, path, **kwargs)
        second = api.request(method, path, **kwargs)

        assert first.headers["X-Request-Id"], (method, path)
        assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"], (method, path)


def test_an_unauthenticated_call_still_gets_a_request_id(client: TestClient) -> None:
    response = client.get("/v2/customers/lookup?id=1", headers={"X-Request-Id": "anon-1"})

    assert response.status_code == 401
    assert response.headers["X-Request-Id"] == "anon-1"


def test_an_unusable_request_id_is_replaced_by_a_generated_one(api: Api) -> None:
    # when the client sends an id with spaces and markup (it would be logged and stored)
    response = api.get("/health", headers={"X-Request-Id": "<script> x"})

    # then a clean id is generated instead
    assert response.headers["X-Request-Id"]
    assert "<" not in response.headers["X-Request-Id"]


# --- no 500 for malformed input -------------------------------------------------------------

MALFORMED: list[Any] = [
    {},
    {"seriesId": None, "customer": None},
    {"seriesId": -1, "customer": {"id": -1}},
    {"seriesId": 2**70, "customer": {"id": 2**70}},
    {"seriesId": 1.5, "customer": {"mobile": 5}},
    {"seriesId": True, "customer": {"email": {}}},
    {"couponCodes": [None, 1, {}], "customer": []},
    {"codes": [[]], "generate": "many"},
    {"codes": ["x" * 101]},
    {"generate": 10**9},
    {"description": "", "clientHandlingType": "DISC_CODE", "validTill": "2020-13-45"},
    {
        "description": "d",
        "clientHandlingType": "GENERIC",
        "genericCode": "",
        "validTill": "2099-01-01",
        "discountType": "PERC",
        "discountValue": "NaN",
    },
    {
        "description": "d",
        "clientHandlingType": "DISC_CODE",
        "validTill": "2099-01-01",
        "discountType": "ABS",
        "discountValue": 1e300,
    },
    {"mobile": "", "email": "", "externalId": ""},
    {"mobile": "x" * 201},
    {"email": "@", "mobile": "12"},
    {"redemptionIds": ["a"], "count": 0},
    {"key": None, "secret": None},
]
MALFORMED_PATHS = [
    ("POST", "/v2/customers"),
    ("POST", "/v2/coupon/series"),
    ("POST", "/v2/coupon/series/1/codes"),
    ("POST", "/v2/coupon/series/99999999999999999999/codes"),
    ("POST", "/v2/coupon/issue"),
    ("POST", "/v2/coupon/issue/multiple"),
    ("POST", "/v3/oauth/token/generate"),
]


@pytest.mark.parametrize(("method", "path"), MALFORMED_PATHS)
def test_malformed_bodies_never_get_a_500(api: Api, method: str, path: str) -> None:
    # given a series so that /series/1 exists for one of the backends' id sequences
    api.series()
    for body in MALFORMED:
        # when each malformed body is sent
        response = api.request(method, path, json=body)

        # then the answer is a 4xx envelope, never a server error
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert_failure_envelope(response)


MALFORMED_LOOKUPS: list[dict[str, str]] = [
    {"id": "abc"},
    {"id": "-5"},
    {"id": str(2**80)},
    {"mobile": "x" * 500},
    {"email": ""},
    {},
]


def test_malformed_lookups_never_get_a_500(api: Api) -> None:
    for query in MALFORMED_LOOKUPS:
        response = api.get("/v2/customers/lookup", params=query)

        assert 400 <= response.status_code < 500, (query, response.text)
        assert_failure_envelope(response)
