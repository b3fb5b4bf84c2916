"""Credentials: never stored or logged in plain text, tokens expire and die with their client,
secrets compare in constant time, and repeated failed logins are throttled (spec §2).

Constant time, by code review: `Authenticator._verify` (src/coupons/services/auth.py) checks a
secret with argon2's verify (constant time over the hash) or, for the in-memory cache of
verified secrets, `hmac.compare_digest` of SHA-256 digests; an unknown username is verified
against a dummy hash, so it costs the same argon2 work as a known one (tested below).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, inspect, select
from starlette.concurrency import run_in_threadpool

from coupons.adapters import tables
from coupons.domain import errors
from coupons.entrypoints.http import deps
from coupons.services import admin, auth
from tests.conftest import PASSWORD, Backend, Credentials
from tests.e2e.conftest import Api, error_code

TOKEN_KEY = "test-signing-key-0123456789abcdef0123456789"  # the conftest app's key
# That test key is shorter than PyJWT likes; production keys are generated at 64 characters.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def _new_client(backend: Backend, *, groups: str = "default") -> Credentials:
    """A fresh API client of acme (clients survive between tests, so names are unique)."""
    username = f"acme-cred-{uuid.uuid4().hex[:8]}"
    secret = f"pw-{uuid.uuid4().hex}"

    def work(uow: Any) -> None:
        admin.create_client(uow, org="acme", username=username, password=secret, groups=groups)
        uow.commit()

    backend.db.run(work)
    return Credentials(username=username, password=secret, org="acme")


def _set_active(backend: Backend, username: str, active: bool) -> None:
    def work(uow: Any) -> None:
        admin.set_client_active(uow, username, active)
        uow.commit()

    backend.db.run(work)


def _token(client: TestClient, creds: Credentials) -> str:
    response = client.post(
        "/v3/oauth/token/generate", json={"key": creds.username, "secret": creds.password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["accessToken"])


def _all_text_in_database(backend: Backend) -> str:
    """Every text column of every table, as one string (a pg_dump-free look at the data)."""
    found: list[str] = []
    with backend.db.engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        for table in tables.metadata.sorted_tables:
            if table.name not in names:
                continue
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if columns:
                for row in conn.execute(select(*columns)):
                    found.extend(str(v) for v in row if v is not None)
    return "\n".join(found)


def test_secrets_and_tokens_appear_neither_in_logs_nor_in_the_database(
    backend: Backend,
    client: TestClient,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a client that works with Basic and with a token, and a failed login
    caplog.set_level(logging.DEBUG)
    creds = _new_client(backend)
    api = Api(client, creds)
    token = _token(client, creds)
    customer = api.ok(api.post("/v2/customers", {"mobile": "+1 555 0100"}))["id"]
    by_token = client.get(
        f"/v2/customers/{customer}/coupons", headers={"X-CAP-API-OAUTH-TOKEN": token}
    )
    by_bearer = client.get(
        f"/v2/customers/{customer}/coupons", headers={"Authorization": f"Bearer {token}"}
    )
    wrong = Credentials(creds.username, creds.password + "-wrong", "acme")
    failed = client.get(f"/v2/customers/{customer}/coupons", headers=wrong.headers)
    client.get("/v2/coupon/1", headers={"Authorization": "Basic !!!not-base64"})
    assert (by_token.status_code, by_bearer.status_code, failed.status_code) == (200, 200, 401)

    # when the logs and the stored data are searched
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    stored = _all_text_in_database(backend)
    raw_file = b""
    if backend.name == "sqlite":
        path = Path(backend.url.removeprefix("sqlite:///"))
        raw_file = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))

    # then no secret, wrong secret, token or Basic header value is in any of them
    basic = creds.headers["Authorization"].split()[1]
    for needle in (creds.password, wrong.password, token, basic, PASSWORD):
        assert needle not in logs
        assert needle not in stored
        assert needle.encode() not in raw_file
    assert "$argon2" in stored  # the secret is there only as a hash


def test_an_expired_token_is_refused(client: TestClient, acme_agent: Credentials) -> None:
    # given a correctly signed token of a real client whose expiry has passed
    good = _token(client, acme_agent)
    claims = jwt.decode(good, TOKEN_KEY, algorithms=["HS256"])
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 1}, TOKEN_KEY, "HS256")

    # when it is used
    response = client.get("/v2/coupon/1", headers={"X-CAP-API-OAUTH-TOKEN": expired})

    # then it is 9010
    assert response.status_code == 401
    assert error_code(response) == 9010


def test_a_token_says_when_it_expires_and_is_not_accepted_signed_with_another_key(
    client: TestClient, acme_agent: Credentials
) -> None:
    # given a fresh token, and the same claims signed with a different key
    good = _token(client, acme_agent)
    claims = jwt.decode(good, TOKEN_KEY, algorithms=["HS256"])
    forged = jwt.encode(claims, "not-the-key", "HS256")
    unsigned = jwt.encode(claims, None, "none")

    # then the token expires within the configured lifetime, and forgeries are 9010
    assert 0 < claims["exp"] - time.time() <= 3600
    for token in (forged, unsigned):
        response = client.get("/v2/coupon/1", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


def _refused_within(client: TestClient, headers: dict[str, str], seconds: float) -> float:
    """How long until a request with `headers` is refused with 9010 (fails past `seconds`)."""
    start = time.monotonic()
    while True:
        response = client.get("/v2/coupon/1", headers=headers)
        waited = time.monotonic() - start
        if response.status_code == 401:
            assert error_code(response) == 9010
            return waited
        assert response.status_code == 404, response.text
        assert waited < seconds, f"still accepted after {waited:.2f}s"
        time.sleep(0.05)


def test_disabling_a_client_stops_its_tokens_and_secret_within_two_seconds(
    backend: Backend, client: TestClient
) -> None:
    # given a client with a valid token and a cached Basic login
    creds = _new_client(backend)
    token = _token(client, creds)
    assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404

    # when the client is disabled (behind the service's back, as the CLI does)
    _set_active(backend, creds.username, False)

    # then its token and its Basic credentials are refused within two seconds
    assert _refused_within(client, {"X-CAP-API-OAUTH-TOKEN": token}, 2.0) < 2.0
    assert _refused_within(client, creds.headers, 2.0) < 2.0


def test_a_changed_secret_stops_working_within_two_seconds_and_the_new_one_works(
    backend: Backend, client: TestClient
) -> None:
    # given a client whose Basic login the service has just checked and cached
    creds = _new_client(backend)
    assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404

    # when its secret is changed in the database
    new_secret = f"pw-{uuid.uuid4().hex}"

    def work(uow: Any) -> None:
        assert uow.clients.update_client(creds.username, secret_hash=auth.hash_secret(new_secret))
        uow.commit()

    backend.db.run(work)

    # then the old secret is refused within two seconds, and the new one is accepted
    assert _refused_within(client, creds.headers, 2.0) < 2.0
    renewed = Credentials(username=creds.username, password=new_secret, org=creds.org)
    assert client.get("/v2/coupon/1", headers=renewed.headers).status_code == 404


def test_a_wrong_secret_is_refused_even_while_the_client_row_is_cached(
    backend: Backend, client: TestClient
) -> None:
    creds = _new_client(backend)
    assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404

    wrong = Credentials(username=creds.username, password=creds.password + "x", org=creds.org)
    response = client.get("/v2/coupon/1", headers=wrong.headers)

    assert response.status_code == 401 and error_code(response) == 9010


def test_a_busy_client_is_read_from_the_database_about_once_a_second(
    app: FastAPI, client: TestClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a client that has just authenticated
    creds = _new_client(backend)
    token = _token(client, creds)
    assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404
    reads: list[str] = []
    authenticator = app.state.authenticator
    real_run = authenticator.db.run

    def counting_run(work: Any, **kwargs: Any) -> Any:
        reads.append(getattr(work, "__qualname__", "?"))
        return real_run(work, **kwargs)

    monkeypatch.setattr(authenticator.db, "run", counting_run)

    # when it sends ten Basic and ten token requests at once
    for _ in range(10):
        assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404
        response = client.get("/v2/coupon/1", headers={"X-CAP-API-OAUTH-TOKEN": token})
        assert response.status_code == 404

    # then authentication read the client table at most once per kind (the entries may just
    # have expired), not once per request
    assert sum("_client_by" in r for r in reads) <= 2, reads


def test_a_client_memory_vouches_for_is_checked_without_a_worker_thread(
    app: FastAPI, client: TestClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a client that has just authenticated by secret and by token (kept in memory for
    # longer than a second, which a slow machine can take between these calls)
    monkeypatch.setattr(app.state.authenticator, "client_cache_seconds", 3600.0)
    creds = _new_client(backend)
    token = _token(client, creds)
    assert client.get("/v2/coupon/1", headers=creds.headers).status_code == 404
    assert client.get("/v2/coupon/1", headers={"X-CAP-API-OAUTH-TOKEN": token}).status_code == 404
    hops: list[str] = []
    real_hop = run_in_threadpool

    async def counting_hop(function: Any, *args: Any) -> Any:
        hops.append(function.__name__)
        return await real_hop(function, *args)

    monkeypatch.setattr(deps, "run_in_threadpool", counting_hop)
    bearer = {"Authorization": f"Bearer {token}"}

    # when it sends more requests, then a wrong secret and a forged token
    for headers in (creds.headers, {"X-CAP-API-OAUTH-TOKEN": token}, bearer):
        assert client.get("/v2/coupon/1", headers=headers).status_code == 404
    assert hops == []
    wrong = Credentials(username=creds.username, password=creds.password + "x", org=creds.org)
    refused = client.get("/v2/coupon/1", headers=wrong.headers)
    forged = client.get("/v2/coupon/1", headers={"X-CAP-API-OAUTH-TOKEN": token + "x"})

    # then only the bad ones went the full way, and were refused there
    assert hops == ["authenticate", "authenticate"]
    assert (refused.status_code, error_code(refused)) == (401, 9010)
    assert (forged.status_code, error_code(forged)) == (401, 9010)


def test_an_unknown_username_still_costs_an_argon2_verify(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a counting wrapper around argon2's hasher
    calls: list[str] = []
    real = auth._hasher

    class Counting:
        def verify(self, hash: str, secret: str) -> bool:
            calls.append(hash)
            return bool(real.verify(hash, secret))

    monkeypatch.setattr(auth, "_hasher", Counting())
    authenticator: auth.Authenticator = app.state.authenticator

    # when a username that does not exist tries to log in
    with pytest.raises(Exception) as failure:
        authenticator.check_secret(f"ghost-{uuid.uuid4().hex}", "whatever", "10.9.9.9")

    # then it fails like a wrong secret, after verifying against the dummy hash
    assert type(failure.value).__name__ == "AuthenticationFailed"
    assert calls == [auth._dummy_hash()]


@pytest.fixture
def throttle(app: FastAPI) -> Iterator[auth.FailureThrottle]:
    """The app's throttle with a limit of 3, as each failure costs a slow argon2 verify."""
    shared: auth.FailureThrottle = app.state.authenticator.throttle
    limit, shared.limit = shared.limit, 3
    yield shared
    shared.limit = limit
    shared._failures.clear()


def _basic(username: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def test_repeated_failed_basic_logins_for_one_username_are_throttled_with_retry_after(
    throttle: auth.FailureThrottle, client: TestClient, acme_agent: Credentials
) -> None:
    # given the failure limit of wrong secrets for one username
    limit = throttle.limit
    for _ in range(limit):
        wrong = client.get("/v2/coupon/1", headers=_basic(acme_agent.username, "wrong"))
        assert wrong.status_code == 401

    # when the right secret is then presented
    response = client.get("/v2/coupon/1", headers=acme_agent.headers)

    # then it is 429 with Retry-After and 9021, until the window passes
    assert response.status_code == 429
    assert error_code(response) == 9021
    assert 1 <= int(response.headers["Retry-After"]) <= 61


def test_the_token_endpoint_and_basic_share_one_throttle(
    throttle: auth.FailureThrottle, client: TestClient, acme_agent: Credentials
) -> None:
    # given the failure limit reached through the token endpoint only
    limit = throttle.limit
    for _ in range(limit):
        body = {"key": acme_agent.username, "secret": "wrong"}
        assert client.post("/v3/oauth/token/generate", json=body).status_code == 401

    # when the same username tries Basic, and the token endpoint again with the right secret
    basic = client.get("/v2/coupon/1", headers=acme_agent.headers)
    token = client.post(
        "/v3/oauth/token/generate", json={"key": acme_agent.username, "secret": PASSWORD}
    )

    # then both are throttled
    assert basic.status_code == 429 and error_code(basic) == 9021
    assert token.status_code == 429 and error_code(token) == 9021
    assert "Retry-After" in token.headers


def test_failed_logins_spread_over_many_usernames_from_one_address_are_throttled(
    throttle: auth.FailureThrottle, client: TestClient, acme_agent: Credentials
) -> None:
    # given one address that failed the limit with a different made-up username each time
    limit = throttle.limit
    for i in range(limit):
        assert client.get("/v2/coupon/1", headers=_basic(f"spray-{i}", "x")).status_code == 401

    # when that address tries another username
    response = client.get("/v2/coupon/1", headers=acme_agent.headers)

    # then it is throttled too (password spraying)
    assert response.status_code == 429
    assert error_code(response) == 9021


def test_failures_below_the_limit_do_not_lock_out_the_right_secret(
    throttle: auth.FailureThrottle, client: TestClient, acme_agent: Credentials
) -> None:
    # given one fewer failure than the limit
    limit = throttle.limit
    for _ in range(limit - 1):
        client.get("/v2/coupon/1", headers=_basic(acme_agent.username, "wrong"))

    # when the right secret is presented
    response = client.get("/v2/coupon/1", headers=acme_agent.headers)

    # then it works
    assert response.status_code == 404  # authenticated; coupon 1 just does not exist


def test_the_throttle_forgets_failures_once_the_window_has_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a throttle that has just reached its limit
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    throttle = auth.FailureThrottle(limit=3, window_seconds=60)
    throttle.fail("user:a", "user:a", "user:a")
    with pytest.raises(Exception, match="too many"):
        throttle.check("user:a")

    # when the window passes
    clock[0] += 61

    # then the key may try again
    throttle.check("user:a")


def test_refused_attempts_from_a_throttled_address_keep_nothing() -> None:
    # given an address that has used up its failures
    throttle = auth.FailureThrottle(limit=2, window_seconds=60)
    throttle.fail("addr:203.0.113.9", "addr:203.0.113.9")

    # when it goes on with a fresh username each time (each refused without a secret check)
    for n in range(2_000):
        with pytest.raises(errors.TooManyAuthFailures):
            throttle.check(f"user:spray-{n}", "addr:203.0.113.9")

    # then the throttle remembers the address alone: a refusal adds no key
    assert list(throttle._failures) == ["addr:203.0.113.9"]


def test_a_huge_username_is_remembered_by_a_short_key() -> None:
    # given failures under a 20 KB username
    throttle = auth.FailureThrottle(limit=2, window_seconds=60)
    huge = "user:" + "x" * 20_000
    throttle.fail(huge, huge)

    # then it is throttled by it, under a key of bounded length
    with pytest.raises(errors.TooManyAuthFailures):
        throttle.check(huge)
    assert max(len(k) for k in throttle._failures) <= 80


def test_past_its_bound_the_throttle_lets_go_of_the_oldest_failures_only() -> None:
    # given a locked-out username, then more failing usernames than the throttle keeps
    throttle = auth.FailureThrottle(limit=2, window_seconds=60, max_keys=10)
    throttle.fail("user:early", "user:early")
    for n in range(15):
        throttle.fail(f"user:other-{n}")
    throttle.fail("user:victim", "user:victim")

    # then it keeps at most its bound, lets the earliest go, and the newest lockout holds
    # (it used to forget every key at once, lockouts in progress included)
    assert len(throttle._failures) == 10
    throttle.check("user:early")
    with pytest.raises(errors.TooManyAuthFailures):
        throttle.check("user:victim")
