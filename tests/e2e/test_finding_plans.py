"""The finding reads reach their rows through the intended index on both stores, in index
order (no sort of the whole range): a page's cost must not grow with the table."""

from __future__ import annotations

import pytest

from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.e2e.test_query_plans import captured, full_scans, plan


def sorts(backend: Backend, text: str) -> list[str]:
    if backend.name == "postgresql":
        return [line for line in text.splitlines() if "Sort" in line and "Key" not in line]
    return [line for line in text.splitlines() if "TEMP B-TREE" in line]


@pytest.mark.parametrize(
    ("call", "table", "index"),
    [
        ("series_page", "coupons", "ix_coupons_series_id_id"),
        ("series_page_after", "coupons", "ix_coupons_series_id_id"),
        ("prefix", "coupons", "ix_coupons_org_code"),
        ("prefix_after", "coupons", "ix_coupons_org_code"),
        ("exact", "coupons", "ix_coupons_org_code"),
        ("trail", "revocations", "ix_revocations_org_at"),
        ("trail_after", "revocations", "ix_revocations_org_at"),
        ("trail_actor", "revocations", "ix_revocations_org_actor_at"),
        ("history", "coupon_history", "ix_coupon_history_org_id"),
        ("history_after", "coupon_history", "ix_coupon_history_org_id"),
    ],
)
def test_each_finding_read_uses_its_index_in_order(
    api: Api, backend: Backend, call: str, table: str, index: str
) -> None:
    # Given a series with codes and two revokes
    series_id = api.series(codes=[f"PLAN-{i:03}" for i in range(30)])
    for i in range(2):
        api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [f"PLAN-00{i}"]}))
    first = api.ok(
        api.get(f"/v2/coupon/series/{series_id}/coupons", params={"limit": 2, "state": "AVAILABLE"})
    )
    search = api.ok(api.get("/v2/coupon/search", params={"codePrefix": "plan", "limit": 2}))
    trail = api.ok(api.get("/v2/coupon/revocations", params={"limit": 1}))
    history = api.ok(api.get("/v2/coupon/history", params={"limit": 1}))
    requests = {
        "series_page": (f"/v2/coupon/series/{series_id}/coupons", {"limit": 5}),
        "series_page_after": (
            f"/v2/coupon/series/{series_id}/coupons",
            {"limit": 5, "after": first["nextCursor"], "state": "AVAILABLE"},
        ),
        "prefix": ("/v2/coupon/search", {"codePrefix": "PLAN-0"}),
        "prefix_after": (
            "/v2/coupon/search",
            {"codePrefix": "plan", "after": search["nextCursor"]},
        ),
        "exact": ("/v2/coupon/search", {"code": "plan-003"}),
        "trail": ("/v2/coupon/revocations", {}),
        "trail_after": ("/v2/coupon/revocations", {"after": trail["nextCursor"]}),
        "trail_actor": ("/v2/coupon/revocations", {"actor": "acme-admin"}),
        "history": ("/v2/coupon/history", {"since": "2020-01-01", "until": "2999-01-01"}),
        "history_after": ("/v2/coupon/history", {"after": history["nextCursor"]}),
    }
    path, params = requests[call]

    # When the read runs
    with captured(backend) as statements:
        api.ok(api.get(path, params=params))

    # Then its statement on the table reads the index, with no full scan and no sort
    ((statement, parameters),) = [
        (s, p)
        for s, p in statements
        if f"FROM {table}" in " ".join(s.split()) and "LIMIT" in s.upper()
    ]
    text = plan(backend, statement, parameters)
    assert index in text, text
    assert full_scans(backend, text) == [], text
    assert sorts(backend, text) == [], text
