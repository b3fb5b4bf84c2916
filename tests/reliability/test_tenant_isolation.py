"""The full tenant isolation matrix (spec §1, tenancy).

Every endpoint is called by org "acme" once with an id, code or identifier that belongs to org
"globex" and once with one that exists nowhere. Both calls must answer alike (same status, same
error code, same entity once the probed value is masked), the response must carry nothing of
globex's data, and globex's coupons must be untouched afterwards.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api

MISSING_ID = 987_654_321
MASK = "<probed>"


@dataclass
class Globex:
    """Everything org globex owns that acme could try to reach."""

    series_id: int
    customer_id: int
    coupon_id: int
    code: str
    redeemed_code: str
    redemption_id: int
    mobile: str
    email: str
    external_id: str
    revoke_request_id: str
    markers: tuple[str, ...]  # values that must never show up in acme's responses


@dataclass
class Acme:
    series_id: int
    customer_id: int


def _given_globex(other: Api) -> Globex:
    suffix = uuid.uuid4().hex[:8].upper()
    codes = [f"GLX{suffix}A", f"GLX{suffix}B", f"GLX{suffix}C", f"GLX{suffix}D"]
    series_id = other.series(codes=codes)
    mobile, email, external_id = "+44 7700 900123", f"Ceo.{suffix}@globex.example", f"GX-{suffix}"
    customer_id = other.customer(
        mobile, email=email, externalId=external_id, firstName="Hank", lastName="Scorpio"
    )
    issued = [other.issue(series_id, customer_id) for _ in range(3)]
    redeemed = issued[1]["couponCode"]
    redemption = other.ok(other.redeem(customer_id, redeemed))["redemptions"][0]
    revoked = other.revoke({"couponCodes": [issued[2]["couponCode"]], "reason": "globex only"})
    other.ok(revoked)
    return Globex(
        series_id=series_id,
        customer_id=customer_id,
        coupon_id=int(issued[0]["couponId"]),
        code=issued[0]["couponCode"],
        redeemed_code=redeemed,
        redemption_id=int(redemption["redemptionId"]),
        mobile=mobile,
        email=email,
        external_id=external_id,
        revoke_request_id=revoked.headers["x-request-id"],
        markers=(*codes, "Hank", "Scorpio", "globex-admin", "globex only", email, external_id),
    )


@dataclass(frozen=True)
class Probe:
    """One call made with a value that is either globex's or missing everywhere."""

    name: str
    call: Callable[[Api, Acme, Any], httpx.Response]
    value: Callable[[Globex], Any]
    missing: Any


def _customer(field: str) -> Callable[[Globex], dict[str, Any]]:
    def value(g: Globex) -> dict[str, Any]:
        return {field: getattr(g, {"externalId": "external_id"}.get(field, field))}

    return value


MISSING_CUSTOMER = {
    "id": {"id": MISSING_ID},
    "mobile": {"mobile": "+1 555 010 9999"},
    "email": {"email": "nobody@nowhere.example"},
    "externalId": {"externalId": "NO-SUCH-EXT"},
}
CUSTOMER_FIELDS = {
    "id": lambda g: {"id": g.customer_id},
    "mobile": _customer("mobile"),
    "email": _customer("email"),
    "externalId": _customer("externalId"),
}


def _redeem(api: Api, customer: dict[str, Any], code: str) -> httpx.Response:
    body = {
        "customer": customer,
        "transactionNumber": "T-ISO",
        "billAmount": 10,
        "redemptionRequestList": [{"code": code}],
    }
    return api.post("/v2/coupon/redeem", body)


PROBES: list[Probe] = [
    Probe(
        "get series",
        lambda api, a, v: api.get(f"/v2/coupon/series/{v}"),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "add codes to series",
        lambda api, a, v: api.post(f"/v2/coupon/series/{v}/codes", {"codes": ["ISO-NEW-1"]}),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "generate codes in series",
        lambda api, a, v: api.post(f"/v2/coupon/series/{v}/codes", {"generate": 2}),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "add a code another org uses",
        lambda api, a, v: api.post(f"/v2/coupon/series/{a.series_id}/codes", {"codes": [v]}),
        lambda g: g.code,
        "FRESH-CODE-1",
    ),
    Probe(
        "get coupon",
        lambda api, a, v: api.get(f"/v2/coupon/{v}"),
        lambda g: g.coupon_id,
        MISSING_ID,
    ),
    Probe(
        "customer coupons",
        lambda api, a, v: api.get(f"/v2/customers/{v}/coupons", params={"status": "ALL"}),
        lambda g: g.customer_id,
        MISSING_ID,
    ),
    *[
        Probe(
            f"lookup customer by {field}",
            lambda api, a, v: api.get("/v2/customers/lookup", params=v),
            CUSTOMER_FIELDS[field],
            MISSING_CUSTOMER[field],
        )
        for field in CUSTOMER_FIELDS
    ],
    *[
        Probe(
            f"create customer with another org's {field}",
            lambda api, a, v: api.post("/v2/customers", v),
            CUSTOMER_FIELDS[field],
            MISSING_CUSTOMER[field],
        )
        for field in ("mobile", "email", "externalId")
    ],
    Probe(
        "issue from series",
        lambda api, a, v: api.post(
            "/v2/coupon/issue", {"seriesId": v, "customer": {"id": a.customer_id}}
        ),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "issue many from series",
        lambda api, a, v: api.post(
            "/v2/coupon/issue/multiple",
            {"seriesId": v, "customer": {"id": a.customer_id}, "count": 2},
        ),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    *[
        Probe(
            f"issue to customer by {field}",
            lambda api, a, v: api.post(
                "/v2/coupon/issue", {"seriesId": a.series_id, "customer": v}
            ),
            CUSTOMER_FIELDS[field],
            MISSING_CUSTOMER[field],
        )
        for field in CUSTOMER_FIELDS
    ],
    *[
        Probe(
            f"redeem for customer by {field}",
            lambda api, a, v: _redeem(api, v, "ANY-CODE"),
            CUSTOMER_FIELDS[field],
            MISSING_CUSTOMER[field],
        )
        for field in CUSTOMER_FIELDS
    ],
    Probe(
        "redeem another org's code",
        lambda api, a, v: _redeem(api, {"id": a.customer_id}, v),
        lambda g: g.code,
        "NO-SUCH-CODE",
    ),
    Probe(
        "reactivate redemption",
        lambda api, a, v: api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [v]}
        ),
        lambda g: g.redemption_id,
        MISSING_ID,
    ),
    Probe(
        "revoke by series",
        lambda api, a, v: api.revoke({"couponSeriesId": v, "couponCodes": ["X1", "X2"]}),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "revoke one code without series",
        lambda api, a, v: api.revoke({"couponCodes": [v]}),
        lambda g: g.code,
        "NO-SUCH-CODE",
    ),
    Probe(
        "revoke a redeemed code of another org",
        lambda api, a, v: api.revoke({"couponCodes": [v]}),
        lambda g: g.redeemed_code,
        "NO-SUCH-CODE",
    ),
    Probe(
        "revoke codes in own series",
        lambda api, a, v: api.revoke({"couponSeriesId": a.series_id, "couponCodes": [v, "Z9"]}),
        lambda g: g.code,
        "NO-SUCH-CODE",
    ),
    *[
        Probe(
            f"revoke for customer by {field}",
            lambda api, a, v: api.revoke({"customer": v}),
            CUSTOMER_FIELDS[field],
            MISSING_CUSTOMER[field],
        )
        for field in CUSTOMER_FIELDS
    ],
    Probe(
        "dry-run revoke one code",
        lambda api, a, v: api.revoke({"couponCodes": [v]}, dryRun="true"),
        lambda g: g.code,
        "NO-SUCH-CODE",
    ),
    Probe(
        "reinstate one code",
        lambda api, a, v: api.post("/v2/coupon/reinstate", {"couponCodes": [v]}),
        lambda g: g.code,
        "NO-SUCH-CODE",
    ),
    Probe(
        "reinstate by series",
        lambda api, a, v: api.post(
            "/v2/coupon/reinstate", {"couponSeriesId": v, "couponCodes": ["X1", "X2"]}
        ),
        lambda g: g.series_id,
        MISSING_ID,
    ),
    Probe(
        "reinstate for customer",
        lambda api, a, v: api.post("/v2/coupon/reinstate", {"customer": v}),
        CUSTOMER_FIELDS["id"],
        MISSING_CUSTOMER["id"],
    ),
    Probe(
        "undo another org's revoke request",
        lambda api, a, v: api.post("/v2/coupon/reinstate", {"revokeRequestId": v}),
        lambda g: g.revoke_request_id,
        "no-such-request-id",
    ),
]


def _mask(node: Any, probed: list[str]) -> Any:
    """`node` with every probed value inside its strings replaced by MASK.

    Only strings are masked (messages echo the caller's input); numbers are left alone, as
    small ids and counts occur everywhere.
    """
    if isinstance(node, dict):
        return {k: _mask(v, probed) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, probed) for v in node]
    if isinstance(node, str):
        for value in probed:
            node = re.sub(rf"(?<![\w.+-]){re.escape(value)}(?![\w.+-])", MASK, node, flags=re.I)
    return node


def _masked(response: httpx.Response, value: Any) -> tuple[int, Any]:
    """Status and JSON body, with the probed value (as the caller sent it) masked out."""
    parts = value.values() if isinstance(value, dict) else [value]
    body = _mask(response.json(), [str(p) for p in parts])
    entity = body.get("entity")
    if isinstance(entity, dict):
        # Fresh rows get fresh ids and timestamps; those differ between any two calls.
        for volatile in ("id", "couponId", "createdAt"):
            entity.pop(volatile, None)
    return response.status_code, body


def _states(other: Api, globex: Globex) -> dict[str, Any]:
    return {
        "coupon": other.coupon(globex.coupon_id),
        "customer": other.ok(other.get(f"/v2/customers/{globex.customer_id}/coupons")),
        "series": other.ok(other.get(f"/v2/coupon/series/{globex.series_id}")),
    }


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_another_orgs_ids_answer_exactly_like_ids_that_do_not_exist(
    api: Api, other: Api, probe: Probe
) -> None:
    # given globex's data, and acme with a series, a customer and one coupon of its own
    globex = _given_globex(other)
    acme = Acme(series_id=api.series(codes=["ACME-1"]), customer_id=api.customer("+1 202 555 0101"))
    before = _states(other, globex)

    # when acme calls with globex's value, and with a value that exists nowhere
    foreign = probe.call(api, acme, probe.value(globex))
    missing = probe.call(api, acme, probe.missing)

    # then both answer alike, nothing of globex leaks, and globex's data is untouched
    assert foreign.status_code < 500, foreign.text
    assert _masked(foreign, probe.value(globex)) == _masked(missing, probe.missing)
    sent = probe.value(globex)
    sent_parts = {str(p).upper() for p in (sent.values() if isinstance(sent, dict) else [sent])}
    for marker in globex.markers:
        if marker.upper() not in sent_parts:
            assert marker.upper() not in foreign.text.upper(), f"{marker} leaked: {foreign.text}"
    assert _states(other, globex) == before


def test_an_idempotency_key_used_by_another_org_neither_replays_nor_conflicts(
    api: Api, other: Api
) -> None:
    # given globex revoked one of its codes under an idempotency key
    globex = _given_globex(other)
    key = {"Idempotency-Key": "shared-key-1"}
    other.ok(other.revoke_with({"couponCodes": [globex.code]}, key))
    acme_series = api.series(codes=["ACME-IDEM-1"])

    # when acme uses the same key for a different request
    response = api.post(
        "/v2/coupon/revoke",
        {"couponSeriesId": acme_series, "couponCodes": ["ACME-IDEM-1"]},
        headers=key,
    )

    # then acme's request runs as its own (no 9006, no replay of globex's answer)
    entity = api.ok(response)
    assert "idempotent-replayed" not in response.headers
    assert [c["couponCode"] for c in entity["revokedCoupons"]] == ["ACME-IDEM-1"]
    assert globex.code not in response.text
