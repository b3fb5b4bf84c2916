"""What the OpenAPI document says beyond what each route declares, so that a client generated
from it can make every call and read every answer it will get.

The routes declare their parameters, bodies and error codes; some of what they answer is
decided elsewhere and was missing from the document:

- 503 (9023, with `Retry-After`) on every operation that reads the database, and on `/health`:
  a client that retries must know the status exists and when to come back (429 likewise).
- `Location` on the 202s that start a job (the job's address).
- The revoke job's body: a codes file (`text/csv`, `text/plain`) or a JSON selector. The
  route reads the body itself (it may be 64 MiB, streamed), so the framework saw no body.
- CSV: the lists that export their rows under `Accept: text/csv` answer `text/csv` too, and
  the `.csv` addresses (and a job's report) answer nothing but CSV.
- Bounds the server enforces on amounts and ids that the document left open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

JSON = "application/json"
CSV = "text/csv"
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
UNAVAILABLE = {
    "description": "The database does not answer (error 9023): try again after `Retry-After` "
    "seconds. Nothing was written, unless the message says the commit's outcome is unknown: "
    "then retry with the same `Idempotency-Key`, which applies the change at most once.",
    "headers": RETRY_AFTER,
    "content": {JSON: {"schema": ERROR_SCHEMA}},
}
LOCATION = {
    "Location": {"description": "the job's address", "schema": {"type": "string"}},
}
# A text body: a CSV file, or plain lines.
CSV_BODY = {"schema": {"type": "string"}}
SELECTOR = (
    "Every unredeemed coupon of one series (a cancelled campaign). Unknown fields are refused."
)
JOB_BODY = "/v2/coupon/revoke/jobs"
JOB_REPORT = "/v2/coupon/revoke/jobs/{jobId}/report"
# Amounts are stored as NUMERIC(14, 4); a series' discount must be above zero (a PERC one at
# most 100, which a schema without conditions cannot say).
AMOUNT_PATTERN = r"^\s*[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?\s*$"
DISCOUNT_VALUE = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 9999999999.9999},
        {"type": "string", "pattern": AMOUNT_PATTERN},
    ],
    "description": "above 0, at most 10 digits before the point and 4 after it; a PERC "
    "discount is at most 100",
}


def complete_document(app: FastAPI, job_selector: dict[str, Any]) -> None:
    """Have `app.openapi` add what is described in this module's docstring, once.

    `job_selector` is the JSON schema of a revoke job's JSON body."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        paths: dict[str, dict[str, Any]] = schema["paths"]
        for path, operations in paths.items():
            for operation in operations.values():
                _responses(path, operation, paths)
        job = paths.get(JOB_BODY, {}).get("post")
        if job is not None:
            job["requestBody"] = _job_body(job_selector)
        series = schema.get("components", {}).get("schemas", {}).get("SeriesBody")
        if series is not None:
            series["properties"]["discountValue"] = DISCOUNT_VALUE
        app.openapi_schema = _whole_bounds(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _whole_bounds(node: Any) -> Any:
    """Whole bounds written as integers: FastAPI's document model holds them as floats, and
    an id's 2**62 was written 4.611686018427388e+18, which reads back as a larger number
    than the one enforced."""
    if isinstance(node, dict):
        return {
            key: int(value)
            if key in BOUNDS and isinstance(value, float) and value.is_integer()
            else _whole_bounds(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_whole_bounds(item) for item in node]
    return node


def _responses(path: str, operation: dict[str, Any], paths: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path == "/metrics":
        return
    responses.setdefault("503", UNAVAILABLE)
    if "429" in responses:
        responses["429"].setdefault("headers", {}).update(RETRY_AFTER)
    if "202" in responses:
        responses["202"].setdefault("headers", {}).update(LOCATION)
    ok = responses.get("200", {}).get("content")
    if ok is None:
        return
    if path.endswith(".csv") or path == JOB_REPORT:
        # Only CSV comes back from these; the framework listed its JSON default beside it.
        ok.pop(JSON, None)
        ok.setdefault(CSV, CSV_BODY)
    elif path + ".csv" in paths:  # a list with a `.csv` twin exports under `Accept: text/csv`
        ok.setdefault(CSV, CSV_BODY)


def _job_body(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "description": "A codes file, the whole body (`text/csv` with a `code` column, or "
        "`text/plain`, one code a line; up to 1,000,000 codes / 64 MiB), or a JSON selector "
        "naming a whole series.",
        "content": {
            CSV: {**CSV_BODY, "example": "code\nSUMMER-0001\nSUMMER-0002\n"},
            "text/plain": {**CSV_BODY, "example": "SUMMER-0001\nSUMMER-0002\n"},
            JSON: {"schema": {**selector, "description": SELECTOR}},
        },
    }
