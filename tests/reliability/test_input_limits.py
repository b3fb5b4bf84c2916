"""Input limits: every odd or oversized input is a 4xx in the spec's envelope, never a 500.

Covers body size, list lengths, string lengths, JSON nesting depth, NUL bytes (PostgreSQL
refuses them in text), lone surrogates, emoji and bidi marks, huge numbers, very long headers,
on bodies, query strings and path parameters alike, on both backends.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api, error_code

FUTURE = "2099-01-01"
SERIES = {
    "description": "limits",
    "clientHandlingType": "DISC_CODE",
    "validTill": FUTURE,
    "discountType": "ABS",
    "discountValue": 1,
}
CUSTOMER = {"id": 1}
REDEEM = {"customer": CUSTOMER, "redemptionRequestList": [{"code": "A"}]}

# (method, path, a valid-looking body) for every route that takes a body.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v2/coupon/revoke", {"couponCodes": ["A"]}),
    ("POST", "/v2/coupon/reinstate", {"couponCodes": ["A"]}),
    ("POST", "/v2/coupon/series", SERIES),
    ("POST", "/v2/coupon/series/1/codes", {"codes": ["A"]}),
    ("POST", "/v2/customers", {"mobile": "123"}),
    ("POST", "/v2/coupon/issue", {"seriesId": 1, "customer": CUSTOMER}),
    ("POST", "/v2/coupon/issue/multiple", {"seriesId": 1, "customer": CUSTOMER, "count": 1}),
    ("POST", "/v2/coupon/redeem", REDEEM),
    ("PATCH", "/v2/coupon/reactivate", {"redemptionIds": [1]}),
    ("POST", "/v3/oauth/token/generate", {"key": "k", "secret": "s"}),
]
GET_ROUTES = [
    "/v2/coupon/{}",
    "/v2/coupon/series/{}",
    "/v2/customers/{}/coupons",
]
ODD_STRINGS = {
    "nul": "a\x00b",
    "lone surrogate": "\ud800",
    "emoji": "😀🎟️",
    "rtl marks": "\u200f\u202eabc\u202c",
    "zero width": "a\u200bb\ufeff",
    "control chars": "\x01\x1b[31m\x7f",
}
ROUTE_IDS = [f"{m} {p}" for m, p, _ in BODY_ROUTES]


def _send(api: Api, method: str, path: str, content: bytes) -> httpx.Response:
    return api.request(method, path, content=content, headers={"Content-Type": "application/json"})


def _assert_envelope_4xx(response: httpx.Response) -> int:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    return error_code(response)


def _replace_strings(node: Any, value: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace_strings(v, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, value) for v in node]
    return value if isinstance(node, str) else node


def _json_with(node: Any) -> bytes:
    """JSON text that may carry a lone surrogate (which UTF-8 encoders refuse)."""
    return json.dumps(node, ensure_ascii=True).encode()


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
def test_a_body_over_one_mebibyte_is_413_with_code_9013(
    api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    # given a body just over the 1 MiB limit
    content = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'

    # when it is sent
    response = _send(api, method, path, content)

    # then it is refused whole, in the envelope
    assert response.status_code == 413
    assert error_code(response) == 9013


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("depth", [10_000])
def test_deeply_nested_json_is_a_4xx_not_a_recursion_error(
    api: Api, method: str, path: str, body: dict[str, Any], depth: int
) -> None:
    # given JSON nested `depth` levels deep, bare and inside a known field
    bare = b"[" * depth + b"]" * depth
    inside = b'{"customer": ' + b'{"id": ' * depth + b"1" + b"}" * depth + b"}"

    # when each is sent, then each is an envelope 4xx
    for content in (bare, inside):
        assert _assert_envelope_4xx(_send(api, method, path, content)) in (9001, 9002)


def test_10000_nested_arrays_are_reported_as_malformed_json(api: Api) -> None:
    # given a body the JSON parser cannot decode without exhausting the stack
    content = b"[" * 10_000 + b"]" * 10_000

    # when it is sent to revoke
    response = _send(api, "POST", "/v2/coupon/revoke", content)

    # then it is 9001 (body not JSON), as the spec says, not a generic 9002
    assert response.status_code == 400
    assert error_code(response) == 9001


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("kind", list(ODD_STRINGS))
def test_odd_characters_in_every_string_field_never_cause_a_5xx(
    api: Api, method: str, path: str, body: dict[str, Any], kind: str
) -> None:
    # given the route's body with every string replaced by odd characters
    content = _json_with(_replace_strings(body, ODD_STRINGS[kind]))

    # when it is sent
    response = _send(api, method, path, content)

    # then the answer is a success or an envelope 4xx, never a 5xx
    assert response.status_code < 500, response.text
    if kind == "nul" and _json_with(body) != content:
        assert _assert_envelope_4xx(response) == 9002


def test_nul_in_a_revoke_code_is_9002_naming_the_field(api: Api) -> None:
    # when a code holds a NUL character (PostgreSQL cannot store or compare it)
    response = api.revoke({"couponCodes": ["AB\x00C"]})

    # then it is 9002 and the message names couponCodes
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert "couponCodes" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("template", GET_ROUTES)
@pytest.mark.parametrize(
    "value",
    ["99999999999999999999999", "-1", "0", "1.5", "%00", "1%00", "%F0%9F%98%80", "%ED%A0%80"],
)
def test_out_of_range_or_odd_path_ids_are_4xx_in_the_envelope(
    api: Api, template: str, value: str
) -> None:
    # when a path id is huge, negative, fractional or holds odd bytes
    response = api.get(template.format(value))

    # then the answer is an envelope 4xx (never a 500 from a bigint overflow on PostgreSQL)
    _assert_envelope_4xx(response)


@pytest.mark.parametrize(
    "query",
    [
        "id=99999999999999999999999",
        "id=-5",
        "email=a%00b",
        "mobile=%ED%A0%80",
        "externalId=%E2%80%8F%E2%80%AEx",
        "email=" + "a" * 5000,
        "mobile=%F0%9F%98%80",
    ],
)
def test_odd_customer_lookup_queries_are_4xx_in_the_envelope(api: Api, query: str) -> None:
    # when a lookup query is huge, negative, or holds NUL, surrogates, bidi marks or emoji
    response = api.get(f"/v2/customers/lookup?{query}")

    # then it is an envelope 4xx (a 404 for "no such customer" is fine, a 500 is not)
    _assert_envelope_4xx(response)


@pytest.mark.parametrize(
    "query", ["couponCodeCase=%00", "couponCodeCase=" + "U" * 500, "dryRun=maybe", "dryRun=%00"]
)
def test_odd_revoke_query_parameters_are_4xx(api: Api, query: str) -> None:
    # when revoke's query parameters are odd
    response = api.post(f"/v2/coupon/revoke?{query}", {"couponCodes": ["A"]})

    # then they are refused in the envelope
    _assert_envelope_4xx(response)


def test_a_customer_status_filter_with_nul_is_a_400(api: Api) -> None:
    # when the status filter holds a NUL byte
    response = api.get("/v2/customers/1/coupons?status=ALL%00")

    # then it is 9002 naming the parameter
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert response.json()["errors"][0]["message"].startswith("status:")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v2/coupon/revocations?actor=demo%00", "actor"),
        ("/v2/coupon/revoke/jobs/%00", "path"),
        ("/v2/coupon/1%00", "path"),
    ],
)
def test_a_nul_in_a_query_parameter_or_the_path_is_9002_naming_where(
    api: Api, path: str, field: str
) -> None:
    response = api.get(path)

    assert response.status_code == 400 and error_code(response) == 9002
    assert response.json()["errors"][0]["message"] == f"{field}: must not contain NUL characters"


def test_a_nul_in_a_series_jobs_reason_is_9002_and_starts_no_job(api: Api) -> None:
    # given a series with coupons
    series_id = api.series(codes=["NUL-JOB-1"])

    # when a job for the whole series is asked for with a reason holding NUL
    response = api.post(
        "/v2/coupon/revoke/jobs", {"couponSeriesId": series_id, "reason": "a\u0000b"}
    )

    # then it is refused naming the field, and the coupon is untouched
    assert response.status_code == 400 and error_code(response) == 9002
    assert response.json()["errors"][0]["message"].startswith("reason:")
    assert [
        c["state"] for c in api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons"))["coupons"]
    ] == ["AVAILABLE"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v2/coupon/series/1/codes", {"codes": ["A"] * 10_001}, "codes"),
        (
            "POST",
            "/v2/coupon/redeem",
            {**REDEEM, "redemptionRequestList": [{"code": "A"}] * 51},
            "redemptionRequestList",
        ),
        ("PATCH", "/v2/coupon/reactivate", {"redemptionIds": [1] * 51}, "redemptionIds"),
        (
            "POST",
            "/v2/coupon/issue/multiple",
            {"seriesId": 1, "customer": CUSTOMER, "count": 501},
            "count",
        ),
        ("POST", "/v2/coupon/series/1/codes", {"generate": 10_001}, "generate"),
    ],
    ids=["add codes", "redeem lines", "reactivate ids", "issue count", "generate"],
)
def test_every_list_and_count_has_a_limit_reported_as_9002(
    api: Api, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    # when a list or count is one over its documented limit
    response = api.request(method, path, json=body)

    # then the request is 9002 and the message names the field
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert field in response.json()["errors"][0]["message"]


def test_more_than_fifty_distinct_revoke_codes_is_9003(api: Api) -> None:
    # when 51 distinct codes are revoked in one call (within the 1000-item list bound)
    response = api.revoke({"couponSeriesId": 1, "couponCodes": [f"C{i}" for i in range(51)]})

    # then it is the vendor's limit, 9003
    assert response.status_code == 400
    assert error_code(response) == 9003


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v2/coupon/revoke", {"couponCodes": ["A" * 101]}, "couponCodes[0]"),
        ("POST", "/v2/coupon/revoke", {"couponCodes": ["A"], "reason": "r" * 501}, "reason"),
        ("POST", "/v2/customers", {"mobile": "1" * 201}, "mobile"),
        ("POST", "/v2/customers", {"email": "e" * 321}, "email"),
        ("POST", "/v2/customers", {"mobile": "1", "firstName": "f" * 201}, "firstName"),
        ("POST", "/v2/coupon/series", {**SERIES, "description": "d" * 501}, "description"),
        ("POST", "/v2/coupon/series/1/codes", {"codes": ["c" * 101]}, "codes"),
        (
            "POST",
            "/v2/coupon/redeem",
            {**REDEEM, "redemptionRequestList": [{"code": "A", "pin": "1" * 21}]},
            "pin",
        ),
        ("POST", "/v3/oauth/token/generate", {"key": "k" * 201, "secret": "s"}, "key"),
    ],
    ids=[
        "code",
        "reason",
        "mobile",
        "email",
        "firstName",
        "description",
        "pool code",
        "pin",
        "token key",
    ],
)
def test_every_string_has_a_length_limit_reported_as_9002(
    api: Api, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    # when a string is one over its limit
    response = api.request(method, path, json=body)

    # then it is 9002 naming the field
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert field in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"couponSeriesId": 1e999, "couponCodes": ["A"]}',
        b'{"couponSeriesId": 99999999999999999999999999, "couponCodes": ["A"]}',
        b'{"couponSeriesId": NaN, "couponCodes": ["A"]}',
        b'{"customer": {"id": -1}}',
    ],
)
def test_out_of_range_numbers_in_bodies_are_9002(api: Api, raw: bytes) -> None:
    # when a number is infinite, beyond 64 bits, NaN or negative
    response = _send(api, "POST", "/v2/coupon/revoke", raw)

    # then it is refused before touching the database
    assert response.status_code == 400
    assert error_code(response) in (9001, 9002)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"couponSeriesId": 9%s, "couponCodes": ["A"]}' % (b"9" * 5000), "couponSeriesId"),
        (b'{"customer": {"id": -9%s}}' % (b"9" * 5000), "customer.id"),
        (b'{"couponCodes": [9%s]}' % (b"9" * 5000), "couponCodes"),
    ],
)
def test_an_integer_of_more_digits_than_python_converts_is_9002_naming_its_field(
    api: Api, raw: bytes, field: str
) -> None:
    # when a body holds an integer of 5,001 digits: still JSON, beyond what any field takes
    response = _send(api, "POST", "/v2/coupon/revoke", raw)

    # then it is a field's wrong value, not a body that is not JSON
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert field in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "valid_till",
    [
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01",
        # in range as written, out of it in UTC, where it is stored
        "1970-01-01T00:00:00+14:00",
        "9998-12-31T23:59:59-23:59",
    ],
)
def test_a_valid_till_that_overflows_in_utc_is_9002_not_a_500(api: Api, valid_till: str) -> None:
    # when a series' validTill cannot be moved to UTC or stored (it used to be a 500)
    response = api.post("/v2/coupon/series", {**SERIES, "validTill": valid_till})

    # then it is 9002 naming validTill, and no series was made
    assert response.status_code == 400
    assert error_code(response) == 9002
    assert "validTill" in response.json()["errors"][0]["message"]
    assert api.ok(api.get("/v2/coupon/series"))["series"] == []


@pytest.mark.parametrize("valid_till", ["1970-01-01T00:00:00-01:00", "9998-12-31T23:59:59Z"])
def test_a_valid_till_at_the_edges_of_the_range_in_utc_is_taken(api: Api, valid_till: str) -> None:
    response = api.post("/v2/coupon/series", {**SERIES, "validTill": valid_till})

    assert response.status_code == 200, response.text


def test_a_basic_username_holding_nul_is_401_not_a_500(api: Api) -> None:
    # given Basic credentials whose username holds NUL (PostgreSQL refuses it in a query)
    token = base64.b64encode(b"acme\x00admin:s3cret-for-tests").decode()

    # when they are used
    response = api.client.get("/v2/coupon/1", headers={"Authorization": f"Basic {token}"})

    # then it is an ordinary authentication failure
    assert response.status_code == 401
    assert error_code(response) == 9010


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Request-Id": "r" * 8000},
        {"X-Request-Id": "bad id with spaces\t"},
        {"X-Padding": "p" * 60_000},
        {"Idempotency-Key": "k" * 256},
        {"Authorization": "Bearer " + "t" * 8000},
        {"Authorization": "Basic " + "!" * 500},
        {"X-CAP-API-OAUTH-TOKEN": "\x7f" * 100},
    ],
    ids=[
        "long request id",
        "odd request id",
        "long header",
        "long key",
        "long bearer",
        "bad basic",
        "odd token",
    ],
)
def test_very_long_or_odd_headers_never_cause_a_5xx(api: Api, headers: dict[str, str]) -> None:
    # when a revoke is sent with a very long or malformed header
    response = api.revoke_with({"couponCodes": ["A"]}, headers)

    # then the answer is not a 5xx, and a long client request id is replaced, not echoed
    assert response.status_code < 500, response.text
    assert len(response.headers["x-request-id"]) <= 128


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v2/coupon/revoke", "dryRun=true&dryRun=false", "dryRun"),
        ("/v2/coupon/revoke", "dryRun=true&dryRun=true", "dryRun"),
        (
            "/v2/coupon/revoke/jobs",
            "couponSeriesId=1&dryRun=true&couponSeriesId=2",
            "couponSeriesId",
        ),
        ("/v2/coupon/series", "limit=5&limit=6", "limit"),
    ],
)
def test_a_query_parameter_given_twice_is_9002_and_nothing_is_done(
    api: Api, path: str, query: str, field: str
) -> None:
    # Given a coupon that a revoke would take
    series = api.ok(api.post("/v2/coupon/series", SERIES))["id"]
    api.ok(api.post(f"/v2/coupon/series/{series}/codes", {"codes": ["TWICE-1"]}))

    # When a call names one of its query parameters twice (the framework would keep the last)
    if path == "/v2/coupon/series":
        response = api.get(f"{path}?{query}")
    else:
        response = api.post(
            f"{path}?{query}", {"couponSeriesId": series, "couponCodes": ["TWICE-1"]}
        )

    # Then it is refused naming the parameter, and the coupon is as it was
    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith(field)
    found = api.ok(api.get("/v2/coupon/search", params={"code": "TWICE-1"}))
    assert [c["state"] for c in found["coupons"]] == ["AVAILABLE"]


def test_head_answers_as_get_does_without_a_body(api: Api) -> None:
    series = api.ok(api.post("/v2/coupon/series", SERIES))["id"]
    for path in ("/health", f"/v2/coupon/series/{series}", "/v2/coupon/series"):
        got = api.get(path)
        head = api.request("HEAD", path)

        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["x-request-id"]


def test_head_without_credentials_is_refused_as_get_is(client: Any) -> None:
    head = client.request("HEAD", "/v2/coupon/series")

    assert head.status_code == 401 and head.content == b""


def test_health_takes_a_repeated_cache_busting_parameter(client: Any) -> None:
    assert client.get("/health?_=1&_=2").status_code == 200
