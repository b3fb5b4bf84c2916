"""The revoke fast path: plain calls skip the framework's routing, and every call answers
exactly as the route alone answers it.

The differential tests run one request sequence against two apps over two identically seeded
databases, one app with the fast path and one without it, and compare the answers byte for
byte: successes, per-code failures, whole-request refusals, bodies that do not validate, and
calls the fast path hands on (query parameters, unknown credentials). The path is independent
of the store, so they use SQLite only (two fresh files per run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import hypothesis.strategies as st
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from coupons.entrypoints.http.fast_revoke import RevokeFastPath
from tests.conftest import creds, sqlite_database
from tests.e2e.conftest import PAST, Api

SECRET = "test-signing-key-0123456789abcdef0123456789"
# Headers that differ between any two answers, whoever gives them.
VARYING = {"x-request-id", "date"}


def _app(url: str, db: Any, *, fast: bool) -> FastAPI:
    app = create_app(Settings(database_url=url, token_secret=SECRET), db=db)
    if not fast:
        app.user_middleware = [
            m
            for m in app.user_middleware
            if getattr(m.cls, "__name__", "") != RevokeFastPath.__name__
        ]
    return app


def _seed(api: Api) -> dict[str, Any]:
    """The same series, codes, customers and issued coupons in every database."""
    live = api.series(codes=[f"LIVE{i:03}" for i in range(120)])
    expired = api.series(valid_till=PAST, codes=["OLD001", "OLD002"])
    generic = api.series("GENERIC", generic_code="SHARED")
    customer = api.customer("5550001", externalId="ext-1")
    issued = [c["couponCode"] for c in api.issue_many(live, customer, 30)]
    api.ok(api.post(f"/v2/coupon/series/{live}/codes", {"codes": ["12345", "Mixed-Case"]}))
    return {"live": live, "expired": expired, "generic": generic, "issued": issued}


class Twins:
    """Two apps, with and without the fast path, each over its own seeded database."""

    def __init__(self, clients: list[TestClient], seeded: dict[str, Any]) -> None:
        self.clients = clients
        self.seeded = seeded

    def both(
        self, body: bytes, *, query: str = "", headers: dict[str, str] | None = None
    ) -> list[tuple[int, dict[str, str], bytes]]:
        sent = {
            **creds("acme", "admin").headers,
            "content-type": "application/json",
            **(headers or {}),
        }
        answers = []
        for client in self.clients:
            response = client.post(f"/v2/coupon/revoke{query}", content=body, headers=sent)
            kept = {k: v for k, v in response.headers.items() if k not in VARYING}
            answers.append((response.status_code, kept, response.content))
        return answers

    def each(
        self, body: Any, headers: dict[str, str], index: int = 0
    ) -> tuple[int, dict[str, str], bytes]:
        """One app's answer (the fast path's by default) with headers of its own."""
        sent = {**creds("acme", "admin").headers, **headers}
        response = self.clients[index].post("/v2/coupon/revoke", json=body, headers=sent)
        kept = {k: v for k, v in response.headers.items() if k not in VARYING}
        return response.status_code, kept, response.content

    def same(self, body: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        fast, route = self.both(raw, **kwargs)
        assert fast == route, f"fast path and route differ for {raw[:300]!r}"
        return fast


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    clients: list[TestClient] = []
    seeded: list[dict[str, Any]] = []
    with (
        sqlite_database(Path(tmp_path_factory.mktemp("fast"))) as fast_db,
        sqlite_database(Path(tmp_path_factory.mktemp("route"))) as route_db,
    ):
        for backend, fast in ((fast_db, True), (route_db, False)):
            client = TestClient(
                _app(backend.url, backend.db, fast=fast), raise_server_exceptions=False
            )
            clients.append(client)
            seeded.append(_seed(Api(client, creds("acme", "admin"))))
        assert seeded[0] == seeded[1], "the two databases must start alike"
        yield Twins(clients, seeded[0])


def test_plain_revokes_and_every_kind_of_refusal_answer_alike(twins: Twins) -> None:
    s = twins.seeded
    live, issued = s["live"], s["issued"]
    cases: list[Any] = [
        {"couponSeriesId": live, "couponCodes": issued[:5], "reason": "leak"},
        {"couponSeriesId": live, "couponCodes": issued[:5]},  # already revoked now
        {"couponSeriesId": live, "couponCodes": [issued[5].lower(), " " + issued[6], "NOPE"]},
        {"couponSeriesId": live, "couponCodes": ["LIVE100"]},  # AVAILABLE
        {"couponSeriesId": live, "couponCodes": [12345, "mixed-case"]},  # numbers are text
        {"couponSeriesId": live, "couponCodes": [f"X{i}" for i in range(51)]},  # 9003
        {"couponCodes": ["LIVE101", "LIVE102"]},  # several codes need a series
        {"couponCodes": ["LIVE103"]},  # one code across the org
        {"couponSeriesId": s["expired"], "couponCodes": ["OLD001"]},  # 712
        {"couponSeriesId": s["generic"], "couponCodes": ["SHARED"]},  # 108
        {"couponSeriesId": 999999, "couponCodes": ["LIVE104"]},  # unknown series
        {"couponSeriesId": live, "customer": {"externalId": "ext-1"}, "reason": "churn"},
        {"customer": {"mobile": "0000"}},  # unknown customer
        {},  # neither codes nor customer
        {"couponSeriesId": live, "couponCodes": ["LIVE105"], "unknownField": [1, 2]},
        {"couponSeriesId": "many", "couponCodes": ["LIVE106"]},  # does not validate
        {"couponSeriesId": 0, "couponCodes": ["LIVE106"]},
        {"couponSeriesId": live, "couponCodes": "LIVE106"},
        {"couponSeriesId": live, "couponCodes": ["bad\u0000code"]},
        {"couponSeriesId": live, "couponCodes": ["x" * 101]},
        {"couponSeriesId": live, "couponCodes": ["LIVE106"], "reason": "r" * 5000},
        [{"couponSeriesId": live}],  # not an object
        "LIVE106",
        None,
        b"",
        b"{not json",
        b'{"couponSeriesId": NaN, "couponCodes": ["LIVE107"]}',
        b"[" * 10_000 + b"]" * 10_000,  # nested past the parser's recursion limit
        b'{"couponCodes": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b'{"couponSeriesId": %d, "couponCodes": ["LIVE107"], "couponCodes": ["LIVE108"]}' % live,
    ]
    statuses = [twins.same(case)[0] for case in cases]
    assert statuses[0] == 200 and 400 in statuses and 422 not in statuses[:5]


def test_calls_the_fast_path_hands_on_answer_alike(twins: Twins) -> None:
    live = twins.seeded["live"]
    body = {"couponSeriesId": live, "couponCodes": ["LIVE110", "live111"]}
    status, _, answer = twins.same(body, query="?couponCodeCase=LOWER")
    assert status == 200 and b"live110" in answer  # the route read the whole body
    twins.same({"couponSeriesId": live, "couponCodes": ["LIVE112"]}, query="?dryRun=true")
    twins.same({"couponSeriesId": live, "couponCodes": ["LIVE113"]}, query="?couponCodeCase=no")
    for headers in (
        creds("acme", "viewer").headers,  # not allowed to revoke
        {"Authorization": "Basic bm90LWEtdXNlcjpubw=="},  # unknown client
        {"Authorization": "Basic !!!"},
        {"Authorization": ""},
    ):
        twins.same({"couponSeriesId": live, "couponCodes": ["LIVE114"]}, headers=headers)


def test_token_callers_and_bad_keys_answer_alike(twins: Twins) -> None:
    live = twins.seeded["live"]
    admin = creds("acme", "admin")
    # A token is bound to its client's stored secret, which differs between the databases:
    # each app gets one of its own.
    tokens = []
    for client in twins.clients:
        answer = client.post(
            "/v3/oauth/token/generate", json={"key": admin.username, "secret": admin.password}
        )
        assert answer.status_code == 200, answer.text
        tokens.append(answer.json()["entity"]["accessToken"])
    for code in ("LIVE088", "LIVE089"):
        body = {"couponSeriesId": live, "couponCodes": [code]}
        fast = twins.each(body, {"Authorization": "", "X-CAP-API-OAUTH-TOKEN": tokens[0]})
        route = twins.each(body, {"Authorization": "", "X-CAP-API-OAUTH-TOKEN": tokens[1]}, 1)
        assert fast == route and fast[0] == 200
        fast = twins.each(body, {"Authorization": f"Bearer {tokens[0]}"})
        route = twins.each(body, {"Authorization": f"Bearer {tokens[1]}"}, 1)
        assert fast == route
    for headers in (
        {"Authorization": "Bearer not-a-token"},
        {"Idempotency-Key": "   "},
        {"Idempotency-Key": "k" * 1000},
    ):
        for code in ("LIVE090", "LIVE091"):
            twins.same({"couponSeriesId": live, "couponCodes": [code]}, headers=headers)


def test_idempotent_replays_answer_alike(twins: Twins) -> None:
    live = twins.seeded["live"]
    key = {"Idempotency-Key": "fast-path-replay"}
    first = twins.same({"couponSeriesId": live, "couponCodes": ["LIVE115"]}, headers=key)
    again = twins.same({"couponSeriesId": live, "couponCodes": ["LIVE115"]}, headers=key)
    assert first[2] == again[2] and again[1].get("idempotent-replayed") == "true"
    reused = twins.same({"couponSeriesId": live, "couponCodes": ["LIVE116"]}, headers=key)
    assert reused[0] != 200


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_field = st.sampled_from(["couponSeriesId", "couponCodes", "customer", "reason", "extra"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(_field, _json, max_size=4) | _json,
    codes=st.lists(st.sampled_from(["LIVE117", "live118", "12345", " LIVE119 ", "NOPE"])),
)
def test_any_body_answers_alike(twins: Twins, body: Any, codes: list[str]) -> None:
    twins.same(body)
    twins.same({"couponSeriesId": twins.seeded["live"], "couponCodes": codes})


def test_a_plain_revoke_skips_dependency_solving_and_others_do_not(
    twins: Twins, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = twins.clients[0]
    headers = creds("acme", "admin").headers
    # Memory vouches for a caller for a second; a slow machine may take longer than that
    # between the last call and this one, so the test keeps it longer and warms it first.
    app: Any = fast.app
    monkeypatch.setattr(app.state.authenticator, "client_cache_seconds", 3600.0)
    assert fast.get("/v2/coupon/series", headers=headers).status_code == 200
    solved: list[str] = []
    original = getattr(fastapi.routing, "solve_dependencies")  # noqa: B009 - not exported

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr("fastapi.routing.solve_dependencies", counting)
    body = {"couponSeriesId": twins.seeded["live"], "couponCodes": ["LIVE120"]}
    assert fast.post("/v2/coupon/revoke", json=body, headers=headers).status_code == 200
    assert solved == []
    response = fast.post("/v2/coupon/revoke?dryRun=true", json=body, headers=headers)
    assert response.status_code == 200 and solved == ["/v2/coupon/revoke"]
    assert fast.post("/v2/coupon/reinstate", json=body, headers=headers).status_code == 200
    assert solved[-1] == "/v2/coupon/reinstate"
