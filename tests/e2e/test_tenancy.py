"""Spec §1 tenancy: another org's ids and codes behave exactly like ones that do not exist.

Every case calls a route as acme twice: once with one of globex's ids or codes, once with a
value nobody has. Both answers must be the same (status and body, the value itself aside),
must leak nothing of globex, and globex's data must be unchanged afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.e2e.conftest import Api
from tests.e2e.test_auth import PUBLIC_PATHS

MISSING_ID = 987_654_321

# Routes with no foreign id or code to try: creation takes none, and a customer created with
# another org's identifiers is simply a new customer (tests/e2e/test_customers.py).
NO_FOREIGN_INPUT = {
    ("POST", "/v2/coupon/series"),
    ("POST", "/v2/customers"),
    # These take no other org's ids: they list or create within the caller's org (the full
    # isolation matrix of the event log lives with the reliability tests).
    ("GET", "/v2/events"),
    ("GET", "/v2/coupon/series"),
    ("GET", "/v2/webhooks"),
    ("POST", "/v2/webhooks"),
    ("GET", "/v2/coupon/revoke/jobs"),
    # The history range takes times only (its org scoping: tests/e2e/test_finding.py).
    ("GET", "/v2/coupon/history"),
    ("GET", "/v2/coupon/history.csv"),
}
JOBS = "/v2/coupon/revoke/jobs"
MISSING_JOB = "job_000000000000000000000000"


@dataclass(frozen=True)
class Globex:
    series_id: int
    series_codes: list[str]
    customer_id: int
    mobile: str
    email: str
    external_id: str
    issued_id: int
    issued_code: str
    revoked_code: str
    redemption_id: int
    revoke_request_id: str
    webhook_id: int
    job_id: str

    def secrets(self) -> list[str]:
        """Strings that must never reach acme unless acme itself sent them."""
        return [
            *self.series_codes,
            self.mobile,
            self.email,
            self.email.upper(),
            self.external_id,
            "globex",
            self.revoke_request_id,
        ]


@dataclass(frozen=True)
class Acme:
    series_id: int
    customer_id: int


@pytest.fixture
def globex(other: Api) -> Globex:
    """Globex's data: a series with coupons issued, redeemed and revoked, and a customer."""
    codes = ["GLXISSUED1", "GLXREDEEM1", "GLXREVOKE1", "GLXPOOL01"]
    series_id = other.series(codes=codes)
    customer_id = other.customer(
        "5557777", email="Secret.Buyer@globex.example", externalId="GLX-EXT-7"
    )
    issued, redeemed, revoked = other.issue_many(series_id, customer_id, 3)
    redemption = other.ok(other.redeem(customer_id, redeemed["couponCode"]))
    other.ok(
        other.revoke_with(
            {"couponSeriesId": series_id, "couponCodes": [revoked["couponCode"]]},
            {"X-Request-Id": "globex-revoke-1"},
        )
    )
    return Globex(
        series_id=series_id,
        series_codes=codes,
        customer_id=customer_id,
        mobile="5557777",
        email="Secret.Buyer@globex.example",
        external_id="GLX-EXT-7",
        issued_id=issued["couponId"],
        issued_code=issued["couponCode"],
        revoked_code=revoked["couponCode"],
        redemption_id=redemption["redemptions"][0]["redemptionId"],
        revoke_request_id="globex-revoke-1",
        webhook_id=other.ok(
            other.post("/v2/webhooks", {"url": "http://127.0.0.1:9/globex-hook", "events": []})
        )["id"],
        job_id=other.request(
            "POST",
            JOBS,
            content=b"GLXPOOL01\n",
            params={"couponSeriesId": series_id, "dryRun": "true"},
            headers={"Content-Type": "text/plain"},
        ).json()["entity"]["jobId"],
    )


@pytest.fixture
def acme(api: Api) -> Acme:
    return Acme(series_id=api.series(codes=["ACMEPOOL1"]), customer_id=api.customer("5550100"))


Call = Callable[[Api, Acme, Any], httpx.Response]


@dataclass(frozen=True)
class Case:
    """One route tried with a foreign value (picked from globex) and a missing one."""

    route: tuple[str, str]
    foreign: Callable[[Globex], Any]
    missing: Any
    call: Call


def _redeem(api: Api, customer: dict[str, Any], code: str) -> httpx.Response:
    return api.post(
        "/v2/coupon/redeem",
        {
            "customer": customer,
            "transactionNumber": "T-9",
            "billAmount": 10,
            "redemptionRequestList": [{"code": code}],
        },
    )


CASES: dict[str, Case] = {
    "get-series": Case(
        ("GET", "/v2/coupon/series/{id}"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/coupon/series/{v}"),
    ),
    "add-codes": Case(
        ("POST", "/v2/coupon/series/{id}/codes"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(f"/v2/coupon/series/{v}/codes", {"codes": ["GLXPOOL01"]}),
    ),
    "generate-codes": Case(
        ("POST", "/v2/coupon/series/{id}/codes"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(f"/v2/coupon/series/{v}/codes", {"generate": 2}),
    ),
    "patch-series": Case(
        ("PATCH", "/v2/coupon/series/{id}"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.request(
            "PATCH", f"/v2/coupon/series/{v}", json={"validTill": "2020-01-01"}
        ),
    ),
    "lookup-id": Case(
        ("GET", "/v2/customers/lookup"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.get("/v2/customers/lookup", params={"id": v}),
    ),
    "lookup-mobile": Case(
        ("GET", "/v2/customers/lookup"),
        lambda g: g.mobile,
        "5550009999",
        lambda api, a, v: api.get("/v2/customers/lookup", params={"mobile": v}),
    ),
    "lookup-email": Case(
        ("GET", "/v2/customers/lookup"),
        lambda g: g.email,
        "Nobody.Here@nowhere.example",
        lambda api, a, v: api.get("/v2/customers/lookup", params={"email": v}),
    ),
    "lookup-external-id": Case(
        ("GET", "/v2/customers/lookup"),
        lambda g: g.external_id,
        "NO-SUCH-EXT",
        lambda api, a, v: api.get("/v2/customers/lookup", params={"externalId": v}),
    ),
    "customer-coupons": Case(
        ("GET", "/v2/customers/{id}/coupons"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/customers/{v}/coupons", params={"status": "ALL"}),
    ),
    "issue-foreign-series": Case(
        ("POST", "/v2/coupon/issue"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(
            "/v2/coupon/issue", {"seriesId": v, "customer": {"id": a.customer_id}}
        ),
    ),
    "issue-foreign-customer": Case(
        ("POST", "/v2/coupon/issue"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.post(
            "/v2/coupon/issue", {"seriesId": a.series_id, "customer": {"id": v}}
        ),
    ),
    "issue-foreign-email": Case(
        ("POST", "/v2/coupon/issue"),
        lambda g: g.email,
        "Nobody.Here@nowhere.example",
        lambda api, a, v: api.post(
            "/v2/coupon/issue", {"seriesId": a.series_id, "customer": {"email": v}}
        ),
    ),
    "issue-multiple-foreign-series": Case(
        ("POST", "/v2/coupon/issue/multiple"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(
            "/v2/coupon/issue/multiple",
            {"seriesId": v, "customer": {"id": a.customer_id}, "count": 2},
        ),
    ),
    "issue-multiple-foreign-customer": Case(
        ("POST", "/v2/coupon/issue/multiple"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.post(
            "/v2/coupon/issue/multiple",
            {"seriesId": a.series_id, "customer": {"id": v}, "count": 2},
        ),
    ),
    "get-coupon": Case(
        ("GET", "/v2/coupon/{couponId}"),
        lambda g: g.issued_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/coupon/{v}"),
    ),
    "redeem-foreign-code": Case(
        ("POST", "/v2/coupon/redeem"),
        lambda g: g.issued_code,
        "NOSUCHCODE1",
        lambda api, a, v: _redeem(api, {"id": a.customer_id}, v),
    ),
    "redeem-foreign-customer": Case(
        ("POST", "/v2/coupon/redeem"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: _redeem(api, {"id": v}, "ACMEPOOL1"),
    ),
    "reactivate": Case(
        ("PATCH", "/v2/coupon/reactivate"),
        lambda g: g.redemption_id,
        MISSING_ID,
        lambda api, a, v: api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [v]}
        ),
    ),
    "revoke-foreign-code": Case(
        ("POST", "/v2/coupon/revoke"),
        lambda g: g.issued_code,
        "NOSUCHCODE1",
        lambda api, a, v: api.revoke({"couponCodes": [v]}),
    ),
    "revoke-foreign-code-in-own-series": Case(
        ("POST", "/v2/coupon/revoke"),
        lambda g: g.issued_code,
        "NOSUCHCODE1",
        lambda api, a, v: api.revoke({"couponSeriesId": a.series_id, "couponCodes": [v]}),
    ),
    "revoke-foreign-series": Case(
        ("POST", "/v2/coupon/revoke"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.revoke({"couponSeriesId": v, "couponCodes": ["GLXISSUED1"]}),
    ),
    "revoke-foreign-customer": Case(
        ("POST", "/v2/coupon/revoke"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.revoke({"customer": {"id": v}}),
    ),
    "revoke-foreign-mobile": Case(
        ("POST", "/v2/coupon/revoke"),
        lambda g: g.mobile,
        "5550009999",
        lambda api, a, v: api.revoke({"customer": {"mobile": v}}),
    ),
    "reinstate-foreign-code": Case(
        ("POST", "/v2/coupon/reinstate"),
        lambda g: g.revoked_code,
        "NOSUCHCODE1",
        lambda api, a, v: api.post("/v2/coupon/reinstate", {"couponCodes": [v]}),
    ),
    "reinstate-foreign-series": Case(
        ("POST", "/v2/coupon/reinstate"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(
            "/v2/coupon/reinstate", {"couponSeriesId": v, "couponCodes": ["GLXREVOKE1"]}
        ),
    ),
    "reinstate-foreign-request": Case(
        ("POST", "/v2/coupon/reinstate"),
        lambda g: g.revoke_request_id,
        "no-such-request-1",
        lambda api, a, v: api.post("/v2/coupon/reinstate", {"revokeRequestId": v}),
    ),
    "delete-webhook": Case(
        ("DELETE", "/v2/webhooks/{id}"),
        lambda g: g.webhook_id,
        MISSING_ID,
        lambda api, a, v: api.request("DELETE", f"/v2/webhooks/{v}"),
    ),
    "retry-webhook": Case(
        ("POST", "/v2/webhooks/{id}/retry"),
        lambda g: g.webhook_id,
        MISSING_ID,
        lambda api, a, v: api.post(f"/v2/webhooks/{v}/retry"),
    ),
    "job-file-foreign-series": Case(
        ("POST", JOBS),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.request(
            "POST",
            JOBS,
            content=b"GLXPOOL01\n",
            params={"couponSeriesId": v},
            headers={"Content-Type": "text/plain"},
        ),
    ),
    "job-selector-foreign-series": Case(
        ("POST", JOBS),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.post(JOBS, {"couponSeriesId": v}),
    ),
    "get-job": Case(
        ("GET", JOBS + "/{jobId}"),
        lambda g: g.job_id,
        MISSING_JOB,
        lambda api, a, v: api.get(f"{JOBS}/{v}"),
    ),
    "job-report": Case(
        ("GET", JOBS + "/{jobId}/report"),
        lambda g: g.job_id,
        MISSING_JOB,
        lambda api, a, v: api.get(f"{JOBS}/{v}/report"),
    ),
    "cancel-job": Case(
        ("POST", JOBS + "/{jobId}/cancel"),
        lambda g: g.job_id,
        MISSING_JOB,
        lambda api, a, v: api.post(f"{JOBS}/{v}/cancel"),
    ),
    "undo-job": Case(
        ("POST", JOBS + "/{jobId}/undo"),
        lambda g: g.job_id,
        MISSING_JOB,
        lambda api, a, v: api.post(f"{JOBS}/{v}/undo"),
    ),
    "webhook-deliveries": Case(
        ("GET", "/v2/webhooks/{id}/deliveries"),
        lambda g: g.webhook_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/webhooks/{v}/deliveries"),
    ),
    # Finding things (spec §7): lists, search, the trail and exports.
    "series-coupons": Case(
        ("GET", "/v2/coupon/series/{id}/coupons"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/coupon/series/{v}/coupons"),
    ),
    "series-coupons-csv": Case(
        ("GET", "/v2/coupon/series/{id}/coupons.csv"),
        lambda g: g.series_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/coupon/series/{v}/coupons.csv"),
    ),
    "customer-coupons-csv": Case(
        ("GET", "/v2/customers/{id}/coupons.csv"),
        lambda g: g.customer_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/customers/{v}/coupons.csv"),
    ),
    "coupon-history-csv": Case(
        ("GET", "/v2/coupon/{couponId}.csv"),
        lambda g: g.issued_id,
        MISSING_ID,
        lambda api, a, v: api.get(f"/v2/coupon/{v}.csv"),
    ),
    "search-foreign-code": Case(
        ("GET", "/v2/coupon/search"),
        lambda g: g.issued_code,
        "NOSUCHCODE1",
        lambda api, a, v: api.get("/v2/coupon/search", params={"code": v}),
    ),
    "search-foreign-prefix": Case(
        ("GET", "/v2/coupon/search"),
        lambda g: g.issued_code[:6],
        "NOSUCH",
        lambda api, a, v: api.get("/v2/coupon/search", params={"codePrefix": v}),
    ),
    "trail-foreign-actor": Case(
        ("GET", "/v2/coupon/revocations"),
        lambda g: "globex-admin",
        "nobody-at-all",
        lambda api, a, v: api.get("/v2/coupon/revocations", params={"actor": v}),
    ),
    "trail-csv-foreign-actor": Case(
        ("GET", "/v2/coupon/revocations.csv"),
        lambda g: "globex-admin",
        "nobody-at-all",
        lambda api, a, v: api.get("/v2/coupon/revocations.csv", params={"actor": v}),
    ),
}


def _masked(response: httpx.Response, value: Any) -> Any:
    """The body with the value acme sent masked inside its strings (messages and revoke's
    failed codes may echo it), so two answers can be compared value aside."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])", re.IGNORECASE)

    def mask(node: Any) -> Any:
        if isinstance(node, str):
            return pattern.sub("<value>", node)
        if isinstance(node, list):
            return [mask(item) for item in node]
        if isinstance(node, dict):
            return {key: mask(item) for key, item in node.items()}
        return node

    if response.headers.get("content-type", "").startswith("text/csv"):
        return mask(response.text)  # an export: the whole file, value aside
    return mask(response.json())


def _globex_snapshot(other: Api, g: Globex) -> dict[str, Any]:
    series = other.ok(other.get(f"/v2/coupon/series/{g.series_id}"))
    coupons = other.ok(other.get(f"/v2/customers/{g.customer_id}/coupons"))["coupons"]
    return {"counts": series["counts"], "coupons": coupons}


def test_another_orgs_values_behave_exactly_like_missing_ones_on_every_route(
    api: Api, other: Api, acme: Acme, globex: Globex
) -> None:
    # One world for all cases: building globex's data per case would dominate the run time.
    before = _globex_snapshot(other, globex)
    for name, case in sorted(CASES.items()):
        foreign = case.foreign(globex)

        # when acme calls the route with globex's value, and with a value nobody has
        with_foreign = case.call(api, acme, foreign)
        with_missing = case.call(api, acme, case.missing)

        # then the answers match, value aside
        assert with_foreign.status_code == with_missing.status_code, (name, with_foreign.text)
        assert _masked(with_foreign, foreign) == _masked(with_missing, case.missing), name
        # and nothing of globex leaks that acme did not send itself
        for secret in globex.secrets():
            if not (isinstance(foreign, str) and secret.lower() == foreign.lower()):
                assert secret.lower() not in with_foreign.text.lower(), (name, secret)
        # and globex's data is untouched
        assert _globex_snapshot(other, globex) == before, name


def test_every_route_with_a_foreign_input_has_a_tenancy_case(app: FastAPI) -> None:
    # given every documented (method, path) but the public ones
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in PUBLIC_PATHS
        for method in operations
    }

    # then each is tried with another org's values, or is known to take none
    covered = {case.route for case in CASES.values()} | NO_FOREIGN_INPUT
    assert routes <= covered, routes - covered


def test_a_globex_token_sees_none_of_acmes_data(api: Api, other: Api, acme: Acme) -> None:
    # given an acme customer with a coupon
    coupon = api.issue(acme.series_id, acme.customer_id)

    # when globex asks for them by id
    series = other.get(f"/v2/coupon/series/{acme.series_id}")
    found = other.get(f"/v2/coupon/{coupon['couponId']}")
    lookup = other.get("/v2/customers/lookup", params={"mobile": "5550100"})

    # then none exist for globex
    assert [series.status_code, found.status_code, lookup.status_code] == [404, 404, 404]
    assert "ACMEPOOL1" not in found.text
