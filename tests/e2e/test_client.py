"""The Python client offline: retries, Retry-After, idempotency keys and tokens on a mock server."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from coupons.client import (
    BasicAuth,
    CouponApiError,
    CouponApiUnavailable,
    CouponClient,
    OAuth,
    RetryPolicy,
)

Handler = Callable[[httpx.Request], httpx.Response]
REVOKED = {
    "totalCount": 2,
    "failedCount": 1,
    "revokedCoupons": [{"couponId": 7, "couponCode": "abc", "issuedToUserId": None}],
    "failedToRevoke": [{"errorCode": 405, "errorMessage": "redeemed", "couponCodes": ["xyz"]}],
}


def ok(entity: object, **kwargs: object) -> httpx.Response:
    body = {"entity": entity, "warnings": [], "errors": [], "success": True}
    return httpx.Response(200, json=body, **kwargs)  # type: ignore[arg-type]


def failure(status: int, code: int, message: str, **kwargs: object) -> httpx.Response:
    body = {"warnings": [], "errors": [{"status": False, "code": code, "message": message}]}
    return httpx.Response(status, json={**body, "success": False}, **kwargs)  # type: ignore[arg-type]


class Recorder:
    """A mock server that answers from a script and remembers every request and sleep."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, auth: BasicAuth | OAuth | None = None, attempts: int = 5) -> CouponClient:
        return CouponClient(
            "http://coupons.test",
            auth or BasicAuth("acme-agent", "s3cret"),
            transport=httpx.MockTransport(self),
            retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=4, deadline=60),
            sleep=self.sleeps.append,
        )

    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


def test_a_revoke_after_connection_errors_and_a_503_reuses_one_idempotency_key() -> None:
    # given a server that drops the connection twice and is then briefly unavailable
    server = Recorder(
        httpx.ConnectError("refused"),
        httpx.ReadError("reset by peer"),
        failure(503, 9000, "database unreachable"),
        ok(REVOKED),
    )

    # when revoking once
    result = server.client().revoke(series_id=3, codes=["abc", "xyz"])

    # then it took four attempts carrying the same key, with growing backoff
    assert len(server.requests) == 4
    keys = server.keys()
    assert keys[0] and len(set(keys)) == 1
    assert 0.25 <= server.sleeps[0] <= 0.5
    assert 0.5 <= server.sleeps[1] <= 1.0 and 1.0 <= server.sleeps[2] <= 2.0
    assert result.total_count == 2 and result.changed[0].coupon_id == 7
    assert result.failed[0].error_code == 405 and result.failed[0].coupon_codes == ["xyz"]


def test_a_429_waits_as_long_as_retry_after_says() -> None:
    # given a server that asks the client to come back in 7 seconds
    server = Recorder(failure(429, 9021, "slow down", headers={"Retry-After": "7"}), ok(REVOKED))

    # when revoking
    server.client().revoke(series_id=3, codes=["abc"])

    # then the client slept exactly that long, then resent the same request
    assert server.sleeps == [7.0]
    assert server.keys()[0] == server.keys()[1]
    assert server.requests[0].content == server.requests[1].content


def test_separate_calls_get_separate_keys_and_a_given_key_is_sent_as_is() -> None:
    # given a healthy server
    server = Recorder(ok(REVOKED), ok(REVOKED), ok(REVOKED))
    client = server.client()

    # when revoking twice without a key and once with one
    client.revoke(series_id=1, codes=["a"])
    client.revoke(series_id=1, codes=["a"])
    client.revoke(series_id=1, codes=["a"], idempotency_key="batch-0001")

    # then each call had its own key, and the given one was used verbatim
    first, second, third = server.keys()
    assert first and second and first != second
    assert third == "batch-0001"


def test_a_client_error_is_raised_at_once_with_the_envelope_code() -> None:
    # given a server that does not know the series
    server = Recorder(failure(400, 707, "coupon series id is invalid"))

    # when revoking, then the error carries the spec's code, message and status, untried again
    with pytest.raises(CouponApiError) as raised:
        server.client().revoke(series_id=99, codes=["a"])
    assert (raised.value.code, raised.value.http_status) == (707, 400)
    assert raised.value.message == "coupon series id is invalid"
    assert raised.value.describe() == "coupon series id is invalid (error 707)"
    assert not isinstance(raised.value, CouponApiUnavailable)
    assert len(server.requests) == 1 and server.sleeps == []


def test_a_server_that_stays_down_raises_unavailable_after_the_last_attempt() -> None:
    # given a server that never answers
    server = Recorder(*[httpx.ConnectError("refused") for _ in range(3)])

    # when calling with three attempts allowed
    with pytest.raises(CouponApiUnavailable) as raised:
        server.client(attempts=3).health()

    # then it tried three times, slept twice, and says it never got an answer
    assert len(server.requests) == 3 and len(server.sleeps) == 2
    assert raised.value.code == 0 and raised.value.http_status is None
    # and a person is told so, with no error code that was never sent
    assert raised.value.describe() == "no answer from the server: ConnectError: refused"


class Clock:
    """Time that passes only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _timed_client(server: Handler, clock: Clock, seconds: float) -> CouponClient:
    return CouponClient(
        "http://coupons.test",
        BasicAuth("u", "p"),
        transport=httpx.MockTransport(server),
        retry=RetryPolicy.for_seconds(seconds),
        sleep=clock.sleep,
    )


def test_a_time_bound_retry_rides_out_an_outage_of_more_tries_than_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a server down for 40 s (a restart), and a client told to retry for 60 s
    clock = Clock()
    monkeypatch.setattr("coupons.client.time.monotonic", lambda: clock.now)
    down_until = clock.now + 40

    def server_(request: httpx.Request) -> httpx.Response:
        if clock.now < down_until:
            raise httpx.ConnectError("refused")
        return ok({"status": "ok"})

    # when calling, then the call succeeds once the server is back, within the 60 s
    assert _timed_client(server_, clock, 60).health() == {"status": "ok"}
    assert len(clock.sleeps) > 8 and 40 <= sum(clock.sleeps) <= 60


def test_a_time_bound_retry_tries_once_more_at_its_deadline_and_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a server that stays away, and a client told to retry for 30 s
    clock = Clock()
    monkeypatch.setattr("coupons.client.time.monotonic", lambda: clock.now)
    server = Recorder(*[httpx.ConnectError("refused") for _ in range(100)])

    # when calling, then it gives up unavailable, having waited exactly its 30 s
    with pytest.raises(CouponApiUnavailable):
        _timed_client(server, clock, 30).health()
    assert sum(clock.sleeps) == pytest.approx(30)
    assert len(server.requests) == len(clock.sleeps) + 1


def test_a_retry_that_would_pass_the_deadline_is_not_attempted() -> None:
    # given a deadline shorter than the server's Retry-After
    server = Recorder(failure(429, 9021, "slow down", headers={"Retry-After": "120"}))
    client = CouponClient(
        "http://coupons.test",
        BasicAuth("u", "p"),
        transport=httpx.MockTransport(server),
        retry=RetryPolicy(deadline=5),
        sleep=server.sleeps.append,
    )

    # when calling, then the client gives up rather than sleeping past its deadline
    with pytest.raises(CouponApiUnavailable) as raised:
        client.get_series(1)
    assert raised.value.http_status == 429 and server.sleeps == []


def test_oauth_fetches_a_token_once_and_sends_it_as_bearer() -> None:
    # given a server that hands out tokens
    token = httpx.Response(200, json={"data": {"accessToken": "tok-1", "expiresIn": 3600}})
    server = Recorder(token, ok({"id": 1}), ok({"coupons": []}))
    client = server.client(OAuth("acme-agent", "s3cret"))

    # when making two authenticated calls
    client.lookup_customer(id=1)
    client.customer_coupons(1, "ACTIVE")

    # then the token was fetched once, with the credentials, and used for both calls
    fetch, first, second = server.requests
    assert fetch.url.path == "/v3/oauth/token/generate"
    assert json.loads(fetch.content) == {"key": "acme-agent", "secret": "s3cret"}
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer tok-1"
    assert second.url.params["status"] == "ACTIVE"


def test_oauth_refreshes_the_token_after_a_401_and_retries_with_the_same_key() -> None:
    # given a token the server has stopped accepting
    server = Recorder(
        httpx.Response(200, json={"data": {"accessToken": "old", "expiresIn": 3600}}),
        failure(401, 9010, "authentication missing or failed"),
        httpx.Response(200, json={"data": {"accessToken": "new", "expiresIn": 3600}}),
        ok(REVOKED),
    )

    # when revoking
    server.client(OAuth("u", "p")).revoke(series_id=1, codes=["abc"])

    # then a new token was fetched and the revoke resent with it and its original key
    _, rejected, refetch, accepted = server.requests
    assert rejected.headers["authorization"] == "Bearer old"
    assert refetch.url.path == "/v3/oauth/token/generate"
    assert accepted.headers["authorization"] == "Bearer new"
    assert rejected.headers["idempotency-key"] == accepted.headers["idempotency-key"]
    assert server.sleeps == []


def test_oauth_refreshes_a_token_that_is_about_to_expire_before_using_it() -> None:
    # given tokens that live for less than the client's safety margin
    short = {"data": {"accessToken": "short", "expiresIn": 10}}
    server = Recorder(
        httpx.Response(200, json=short),
        ok({"id": 1}),
        httpx.Response(200, json=short),
        ok({"id": 1}),
    )
    client = server.client(OAuth("u", "p"))

    # when calling twice
    client.lookup_customer(id=1)
    client.lookup_customer(id=1)

    # then a token was fetched before each call
    paths = [r.url.path for r in server.requests]
    assert paths == ["/v3/oauth/token/generate", "/v2/customers/lookup"] * 2


def test_a_401_with_basic_auth_is_not_retried() -> None:
    # given wrong basic credentials
    server = Recorder(failure(401, 9010, "authentication missing or failed"))

    # when calling, then 9010 is raised after one request
    with pytest.raises(CouponApiError) as raised:
        server.client().get_coupon(5)
    assert raised.value.code == 9010 and len(server.requests) == 1


def test_revoke_sends_the_vendor_body_case_and_dry_run_and_reads_a_replay() -> None:
    # given a server replaying a stored answer
    server = Recorder(ok(REVOKED, headers={"Idempotent-Replayed": "true"}))

    # when revoking with every option
    result = server.client().revoke(
        series_id=12, codes=[" abc "], reason="fraud", code_case="LOWER", dry_run=True
    )

    # then the request is the vendor's shape and the replay is visible
    request = server.requests[0]
    assert request.url.path == "/v2/coupon/revoke"
    assert dict(request.url.params) == {"couponCodeCase": "LOWER", "dryRun": "true"}
    assert json.loads(request.content) == {
        "couponSeriesId": 12,
        "couponCodes": [" abc "],
        "reason": "fraud",
    }
    assert request.headers["authorization"].startswith("Basic ")
    assert result.replayed is True


def test_reads_carry_no_idempotency_key_and_health_no_credentials() -> None:
    # given a healthy server
    coupon = {"couponId": 1, "couponCode": "A", "seriesId": 2, "state": "ISSUED"}
    server = Recorder(ok({"status": "ok"}), ok({**coupon, "issuedToUserId": 3, "history": []}))
    client = server.client()

    # when reading
    client.health()
    found = client.get_coupon(1)

    # then neither read has a key, and /health went without credentials
    assert server.keys() == [None, None]
    assert "authorization" not in server.requests[0].headers
    assert found.state == "ISSUED" and found.history == []


def test_a_non_json_error_page_still_raises_a_typed_error() -> None:
    # given a proxy in front of the server answering with HTML
    server = Recorder(httpx.Response(404, text="<html>not here</html>"))

    # when calling, then the error keeps the status and a piece of the text
    with pytest.raises(CouponApiError) as raised:
        server.client().get_series(1)
    assert raised.value.http_status == 404 and "not here" in raised.value.message


@pytest.mark.parametrize(
    ("answers", "delivered"),
    [
        ([httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")], False),
        ([httpx.ConnectError("refused"), httpx.ReadTimeout("no answer")], True),
        ([failure(503, 9023, "database unavailable"), httpx.ConnectError("refused")], True),
    ],
    ids=["never-connected", "sent-then-lost", "answered-503"],
)
def test_giving_up_says_whether_any_try_could_have_reached_the_server(
    answers: list[httpx.Response | Exception], delivered: bool
) -> None:
    # given a server that gives no usable answer to either of two tries
    server = Recorder(*answers)

    # when calling, then the client gives up and says whether the request may have landed
    with pytest.raises(CouponApiUnavailable) as raised:
        server.client(attempts=2).revoke(series_id=1, codes=["a"])
    assert raised.value.delivered is delivered


def test_a_stop_set_while_retrying_ends_the_call_at_once() -> None:
    # given a server that never answers, and a client whose stop is set after the first try
    import threading

    stop = threading.Event()
    tries: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        stop.set()
        raise httpx.ConnectError("refused")

    client = CouponClient(
        "http://coupons.test",
        BasicAuth("u", "p"),
        transport=httpx.MockTransport(server),
        retry=RetryPolicy.for_seconds(3600),
        stop=stop,
    )

    # when calling, then it gives up after that one try, saying nothing reached the server
    with pytest.raises(CouponApiUnavailable) as raised:
        client.health()
    assert len(tries) == 1 and raised.value.delivered is False


def test_a_retry_for_hours_never_outgrows_its_longest_pause() -> None:
    # `for_seconds` retries without a count: 2.0 ** 1024 overflowed after about 1.7 hours
    policy = RetryPolicy.for_seconds(7200)

    assert {policy.delay(n) <= policy.max_delay for n in (1_025, 10_000, 10**9)} == {True}
