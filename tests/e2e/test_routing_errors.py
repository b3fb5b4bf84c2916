"""Wrong methods, unknown paths and bad path parameters answer in the API's own words."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Api, error_code


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v2/coupon/revoke", "POST"),
        ("GET", "/v2/coupon/reinstate", "POST"),
        ("GET", "/v2/coupon/issue", "POST"),
        ("PUT", "/v2/coupon/reactivate", "PATCH"),
        ("DELETE", "/v2/coupon/7", "GET"),
        ("POST", "/v2/customers/lookup", "GET"),
    ],
)
def test_a_wrong_method_on_a_known_path_is_405_with_9022(
    api: Api, method: str, path: str, allow: str
) -> None:
    # when a path that exists is called with a method it does not take
    response = api.request(method, path)

    # then 405 / 9022 says so, with the methods the path takes, and no internal names
    assert response.status_code == 405, response.text
    assert error_code(response) == 9022
    assert allow in response.headers["allow"]
    # and HEAD wherever GET is allowed, since HEAD is answered as GET
    assert ("HEAD" in response.headers["allow"]) == ("GET" in response.headers["allow"])
    assert "coupon_id" not in response.text


def _filled(template: str) -> str:
    """A documented path with a value of the right kind in each of its parameters."""
    return re.sub(
        r"\{(\w+)\}",
        lambda m: "job_0123456789abcdef01234567" if "job" in m.group(1).lower() else "7",
        template,
    )


def test_a_405_allows_exactly_the_methods_each_documented_path_takes(app: Any, api: Api) -> None:
    # given every path of the published contract and the methods it documents
    for template, operations in app.openapi()["paths"].items():
        methods = {m.upper() for m in operations} & {"GET", "POST", "PUT", "PATCH", "DELETE"}
        if "GET" in methods:
            methods.add("HEAD")
        wrong = next(m for m in ("PUT", "DELETE", "PATCH", "POST") if m not in methods)

        # when it is called with a method it does not take
        response = api.request(wrong, _filled(template))

        # then the 405 names every method it takes, no more and no fewer
        assert response.status_code == 405, (template, response.text)
        assert response.headers["allow"] == ", ".join(sorted(methods)), template


def test_a_literal_path_is_never_taken_for_a_coupon_id(api: Api) -> None:
    # when GET is sent to a path whose only routes take other methods
    response = api.get("/v2/coupon/series")

    # then it is not answered by GET /v2/coupon/{couponId} with a complaint about the id
    assert response.status_code in (200, 405), response.text
    assert "couponId" not in response.text and "coupon_id" not in response.text


@pytest.mark.parametrize("path", ["/v2/nothing", "/v2/coupon/7/extra", "/v3/coupon/revoke", "/"])
def test_an_unknown_path_is_404_with_9014(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404, response.text
    assert error_code(response) == 9014


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/coupon/revok"),
        ("POST", "/v2/coupon/reinstat"),
        ("DELETE", "/v2/coupon/series/abc"),
        ("PATCH", "/v2/customers/x1"),
    ],
)
def test_a_typo_in_a_path_is_404_not_a_405_pointing_at_an_id_route(
    api: Api, method: str, path: str
) -> None:
    # a mistyped literal segment lands where an id would go, and is no number
    response = api.request(method, path, json={"couponCodes": ["A"]})

    assert response.status_code == 404, response.text
    assert error_code(response) == 9014
    assert "allow" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v2/coupon/revoke/"), ("GET", "/v2/coupon/series/"), ("GET", "/health/")],
)
def test_a_trailing_slash_is_an_unknown_path_not_an_empty_redirect(
    api: Api, method: str, path: str
) -> None:
    # A redirect had no body, and a client following it would send its POST again
    response = api.request(method, path, json={"couponCodes": ["A"]} if method == "POST" else None)

    assert response.status_code == 404, response.text
    assert error_code(response) == 9014


def test_the_console_without_its_slash_still_leads_to_the_console(client: TestClient) -> None:
    response = client.get("/console", follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/console/"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/coupon/abc", "couponId"),
        ("/v2/coupon/0", "couponId"),
        # written otherwise than in digits: once taken for coupon 7
        ("/v2/coupon/7.0", "couponId"),
        ("/v2/coupon/+7", "couponId"),
        ("/v2/coupon/%207", "couponId"),
        ("/v2/coupon/7.0.csv", "couponId"),
        ("/v2/coupon/series/+7/coupons", "id"),
        ("/v2/coupon/series/abc", "id"),
        ("/v2/customers/x1/coupons", "id"),
        ("/v2/webhooks/abc/deliveries", "id"),
    ],
)
def test_a_bad_path_parameter_is_9002_naming_it_as_the_api_does(
    api: Api, path: str, name: str
) -> None:
    response = api.get(path)
    assert response.status_code == 400, response.text
    assert error_code(response) == 9002
    message = response.json()["errors"][0]["message"]
    assert message == f"{name}: must be a whole number of 1 or more, written in digits", message


def test_a_path_id_of_thousands_of_digits_is_out_of_range_not_a_parser_error(api: Api) -> None:
    response = api.get("/v2/coupon/" + "9" * 5000)

    assert (response.status_code, error_code(response)) == (400, 9002)
    message = response.json()["errors"][0]["message"]
    assert message == f"couponId: Input should be less than or equal to {2**62}"


def test_a_negative_path_id_is_refused_in_words(api: Api) -> None:
    # "-1" was told "Input should be a valid integer", which it is
    response = api.request("DELETE", "/v2/webhooks/-1")

    assert (response.status_code, error_code(response)) == (400, 9002)
    message = response.json()["errors"][0]["message"]
    assert message == "id: must be a whole number of 1 or more, written in digits"


def test_every_path_parameter_in_the_openapi_document_is_named_in_camel_case(
    client: TestClient,
) -> None:
    # given the published document
    document: dict[str, Any] = client.get("/openapi.json").json()

    # then no path or parameter leaks a snake_case internal name
    for path, operations in document["paths"].items():
        assert "_" not in "".join(re.findall(r"{([^}]*)}", path)), path
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert "_" not in parameter["name"], (path, parameter["name"])


def _keys(node: Any) -> set[str]:
    """Every key of every object in a JSON document."""
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _keys(value)}
    if isinstance(node, list):
        return {k for item in node for k in _keys(item)}
    return set()


def test_the_openapi_document_states_bounds_in_json_schema_words(client: TestClient) -> None:
    # given the published document
    document: dict[str, Any] = client.get("/openapi.json").json()

    # then no schema carries pydantic's own names for bounds, which schema readers ignore
    assert not _keys(document) & {"ge", "le", "gt", "lt", "max_digits", "decimal_places"}
    # and an id in a path says which ids the server takes
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    assert parameter["schema"]["minimum"] == 1, path
                    assert parameter["schema"]["maximum"] == 2**62, path


def test_the_openapi_document_lists_the_values_each_choice_parameter_takes(
    client: TestClient, api: Api
) -> None:
    # given the published document
    document: dict[str, Any] = client.get("/openapi.json").json()

    def enum(path: str, method: str, name: str) -> list[str]:
        [found] = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
        values: list[str] = found["schema"]["enum"]
        return values

    # then each choice is a list of values, and the server takes every value listed
    series_id = api.series(codes=["ENUM-1"])
    for state in enum("/v2/coupon/series/{id}/coupons", "get", "state"):
        api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons", params={"state": state}))
    customer_id = api.customer("555-0199")
    for status in enum("/v2/customers/{id}/coupons", "get", "status"):
        api.ok(api.get(f"/v2/customers/{customer_id}/coupons", params={"status": status}))
    for state in enum("/v2/coupon/revoke/jobs", "get", "state"):
        api.ok(api.get("/v2/coupon/revoke/jobs", params={"state": state}))
    assert enum("/v2/coupon/revoke", "post", "couponCodeCase") == ["UPPER", "LOWER", "AS_IT_IS"]
    events = document["components"]["schemas"]["WebhookBody"]["properties"]["events"]
    assert "coupon.revoked" in events["items"]["enum"]
    # and a number where text goes is documented as a whole number, as the server takes it
    codes = document["components"]["schemas"]["RevokeBody"]["properties"]["couponCodes"]
    assert {"type": "integer"} in codes["anyOf"][0]["items"]["anyOf"]


@pytest.mark.parametrize("value", ["1.0", "+5", "5 ", "1e1", "0x5", "\uff15", "-0"])
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/coupon/series", "limit"),
        ("/v2/coupon/revocations", "limit"),
        ("/v2/coupon/revoke/jobs", "limit"),
        ("/v2/events", "limit"),
        ("/v2/events", "after"),
    ],
)
def test_a_count_in_the_query_is_written_in_digits_as_an_id_in_the_path_is(
    api: Api, path: str, name: str, value: str
) -> None:
    # `limit=1.0` and `limit=+5` were taken as 1 and 5, while `/v2/coupon/1.0` was refused
    response = api.get(path, params={name: value})

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    message = response.json()["errors"][0]["message"]
    assert message == f"{name}: must be a whole number written in digits", message


def test_a_count_in_the_query_may_have_leading_zeros_as_an_id_in_the_path_may(api: Api) -> None:
    page = api.ok(api.get("/v2/coupon/series", params={"limit": "05"}))

    assert page["nextCursor"] is None


def test_a_jobs_series_in_the_query_is_written_in_digits(api: Api) -> None:
    series_id = api.series(codes=["Q-1"])

    response = api.post(
        "/v2/coupon/revoke/jobs",
        params={"couponSeriesId": f"{series_id}.0"},
        content=b"code\nQ-1\n",
        headers={"Content-Type": "text/csv"},
    )

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    message = response.json()["errors"][0]["message"]
    assert message == "couponSeriesId: must be a whole number written in digits", message
