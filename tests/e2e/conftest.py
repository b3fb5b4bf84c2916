"""HTTP-level helpers: an `Api` per API client (over a TestClient or a live server), speaking
the spec's JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Credentials

FUTURE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
PAST = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()


class Api:
    """Calls the API as one client; helpers assert success so tests read as given/when/then."""

    def __init__(self, client: httpx.Client, creds: Credentials) -> None:
        self.client = client
        self.creds = creds

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.creds.headers, **kwargs.pop("headers", {})}
        response: httpx.Response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def ok(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["errors"] == []
        return body["entity"]

    # --- given ----------------------------------------------------------------------------

    def series(
        self,
        type: str = "DISC_CODE",
        *,
        generic_code: str | None = None,
        valid_till: str = FUTURE,
        codes: list[str] | None = None,
    ) -> int:
        body: dict[str, Any] = {
            "description": f"{type} series",
            "clientHandlingType": type,
            "validTill": valid_till,
            "discountType": "ABS",
            "discountValue": 5,
        }
        if generic_code:
            body["genericCode"] = generic_code
        series_id = int(self.ok(self.post("/v2/coupon/series", body))["id"])
        if codes:
            self.ok(self.post(f"/v2/coupon/series/{series_id}/codes", {"codes": codes}))
        return series_id

    def customer(self, mobile: str | None = None, **fields: Any) -> int:
        body = {"mobile": mobile, **fields} if mobile else fields
        return int(self.ok(self.post("/v2/customers", body))["id"])

    def issue(self, series_id: int, customer_id: int) -> dict[str, Any]:
        entity: dict[str, Any] = self.ok(
            self.post("/v2/coupon/issue", {"seriesId": series_id, "customer": {"id": customer_id}})
        )
        return entity

    def issue_many(self, series_id: int, customer_id: int, count: int) -> list[dict[str, Any]]:
        entity = self.ok(
            self.post(
                "/v2/coupon/issue/multiple",
                {"seriesId": series_id, "customer": {"id": customer_id}, "count": count},
            )
        )
        return list(entity["coupons"])

    def redeem(self, customer_id: int, *codes: str) -> httpx.Response:
        return self.post(
            "/v2/coupon/redeem",
            {
                "customer": {"id": customer_id},
                "transactionNumber": "T-1",
                "billAmount": 100,
                "redemptionRequestList": [{"code": c} for c in codes],
            },
        )

    def coupon(self, coupon_id: int) -> dict[str, Any]:
        entity: dict[str, Any] = self.ok(self.get(f"/v2/coupon/{coupon_id}"))
        return entity

    def revoke(self, body: Any, **params: Any) -> httpx.Response:
        return self.post("/v2/coupon/revoke", body, params=params)

    def revoke_with(self, body: Any, headers: dict[str, str]) -> httpx.Response:
        return self.post("/v2/coupon/revoke", body, headers=headers)


def error_code(response: httpx.Response) -> int:
    body = response.json()
    assert body["success"] is False, body
    assert "entity" not in body
    return int(body["errors"][0]["code"])
