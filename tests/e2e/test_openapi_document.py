"""The OpenAPI document describes what the server does: a client built from it can start a
revoke job, knows the 503 and its `Retry-After`, reads CSV where CSV comes back, and sends
only ids and amounts the server takes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Api, error_code

JOBS = "/v2/coupon/revoke/jobs"


@pytest.fixture
def document(api: Api) -> dict[str, Any]:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def test_a_revoke_job_starts_with_each_documented_body(api: Api, document: dict[str, Any]) -> None:
    # given the job call's documented body, and a series holding the example's codes
    body = document["paths"][JOBS]["post"]["requestBody"]
    content = body["content"]
    assert body["required"] is True
    assert set(content) == {"text/csv", "text/plain", "application/json"}
    series_id = api.series(codes=["SUMMER-0001", "SUMMER-0002"])
    selector = content["application/json"]["schema"]
    assert selector["additionalProperties"] is False
    assert "couponSeriesId" in selector["required"]

    # when a job is started with each documented kind of body
    started = [
        api.post(
            JOBS,
            content=content[media]["example"],
            params={"couponSeriesId": series_id, "dryRun": "true"},
            headers={"Content-Type": media},
        )
        for media in ("text/csv", "text/plain")
    ]
    started.append(api.post(JOBS, {"couponSeriesId": series_id, "dryRun": True}))

    # then each is accepted, at the documented status and with the documented header
    documented = document["paths"][JOBS]["post"]["responses"]["202"]
    assert "Location" in documented["headers"]
    for response in started:
        assert response.status_code == 202, response.text
        job_id = response.json()["entity"]["jobId"]
        assert response.headers["Location"] == f"{JOBS}/{job_id}"


def test_every_api_call_documents_the_503_and_when_to_retry(document: dict[str, Any]) -> None:
    # given the document
    # when each operation's answers are read (/metrics reads no database)
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path != "/metrics"
        for method, operation in methods.items()
    ]

    # then each lists 503 with `Retry-After`, and 429 says when to come back too
    assert len(operations) > 30
    for path, method, operation in operations:
        responses = operation["responses"]
        assert "Retry-After" in responses["503"]["headers"], (method, path)
        assert "9024" not in responses["503"]["description"]  # the spec keeps 9024 for 429s
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"], (method, path)


def test_csv_is_documented_wherever_it_is_served(api: Api, document: dict[str, Any]) -> None:
    # given a series with a coupon (the lists have something to export)
    series_id = api.series(codes=["CSV-DOC-1"])
    paths = document["paths"]
    twins = [p for p in paths if p.endswith(".csv")]
    assert len(twins) == 5

    for twin in twins:
        listed = twin.removesuffix(".csv")
        # when the list is asked for CSV, and its `.csv` address for anything
        address = listed.replace("{id}", str(series_id)).replace("{couponId}", "1")
        if "customers" in listed:
            address = listed.replace("{id}", str(api.customer("5550001234")))
        by_accept = api.get(address, headers={"Accept": "text/csv"})
        plain = api.get(address + ".csv")

        # then both answer CSV, which the list documents beside JSON, and the twin alone
        for response in (by_accept, plain):
            assert response.headers["content-type"].startswith("text/csv"), address
        assert set(paths[listed]["get"]["responses"]["200"]["content"]) == {
            "application/json",
            "text/csv",
        }
        assert set(paths[twin]["get"]["responses"]["200"]["content"]) == {"text/csv"}
    report = paths[JOBS + "/{jobId}/report"]["get"]["responses"]["200"]["content"]
    assert set(report) == {"text/csv"}
    # and nowhere else: every other answer is JSON (or /metrics' text)
    exports = {*twins, *(t.removesuffix(".csv") for t in twins), JOBS + "/{jobId}/report"}
    for path, methods in paths.items():
        for method, operation in methods.items():
            content = operation["responses"].get("200", {}).get("content", {})
            assert path in exports or "text/csv" not in content, (method, path)


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alternative a schema allows, nested `anyOf`s flattened."""
    if "anyOf" not in schema:
        return [schema]
    return [b for branch in schema["anyOf"] for b in _branches(branch)]


@pytest.mark.parametrize(
    ("model", "field", "lowest"),
    [("CustomerIdentifiers", "id", 1), ("RedeemBody", "billAmount", 0)],
)
def test_ids_and_amounts_are_documented_with_the_bounds_the_server_keeps(
    document: dict[str, Any], model: str, field: str, lowest: int
) -> None:
    # given the field's documented alternatives
    schema = document["components"]["schemas"][model]["properties"][field]

    # then every number it allows is bounded: an integer branch without bounds let a
    # generated client send 0 or -3 as a customer id, or 1e11 as a bill
    numbers = [b for b in _branches(schema) if b.get("type") in ("integer", "number")]
    assert numbers
    for branch in numbers:
        assert branch["minimum"] == lowest, branch
        assert "maximum" in branch


def test_a_series_discount_is_documented_above_zero_as_the_server_wants_it(
    api: Api, document: dict[str, Any]
) -> None:
    # given the documented discount value
    schema = document["components"]["schemas"]["SeriesBody"]["properties"]["discountValue"]
    [number] = [b for b in _branches(schema) if b.get("type") == "number"]
    assert number["exclusiveMinimum"] == 0
    assert number["maximum"] == 9999999999.9999

    # when a series is created with a discount at and just past the documented bounds
    def create(value: Any) -> Any:
        return api.post(
            "/v2/coupon/series",
            {
                "description": "bounds",
                "clientHandlingType": "DISC_CODE",
                "validTill": "2099-01-01",
                "discountType": "ABS",
                "discountValue": value,
            },
        )

    # then the server keeps to them
    assert error_code(create(0)) == 9002
    assert error_code(create(10_000_000_000)) == 9002
    assert create(9999999999.9999).status_code == 200
    assert create("0.0001").status_code == 200


def test_an_ids_documented_maximum_is_the_exact_one_the_server_keeps(
    api: Api, document: dict[str, Any]
) -> None:
    # given the body id's documented maximum (it was written 4.611686018427388e+18, which
    # reads back as 4611686018427388000: ids up to that were valid by the document)
    schema = document["components"]["schemas"]["CustomerIdentifiers"]["properties"]["id"]
    [number] = [b for b in _branches(schema) if b.get("type") == "integer"]
    top = number["maximum"]
    assert isinstance(top, int)

    # when a lookup names it, and the next id past it
    def issue(customer_id: int) -> Any:
        return api.post("/v2/coupon/issue", {"seriesId": 1, "customer": {"id": customer_id}})

    # then the maximum is an id the server reads (no such customer: 707 or 701, not 9002)
    # and one past it is refused as out of range
    assert error_code(issue(top)) != 9002
    assert error_code(issue(top + 1)) == 9002
