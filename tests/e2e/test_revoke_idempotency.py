"""`Idempotency-Key` on revoke: replay within 24 hours, 9006 for another request, per client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from coupons.adapters.tables import idempotency_keys
from coupons.services import runner
from tests.conftest import Backend
from tests.e2e.conftest import Api, error_code


def send(
    client: Api, body: Any, *, headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    """A revoke call with query parameters and extra headers."""
    return client.post("/v2/coupon/revoke", body, params=params, headers=headers or {})


@pytest.fixture
def series_id(api: Api) -> int:
    return api.series(codes=["ONE1", "TWO1"])


def revoke_events(api: Api, coupon_id: int) -> list[str]:
    return [h["action"] for h in api.coupon(coupon_id)["history"]]


def test_the_same_key_and_request_replay_the_first_response_and_do_nothing_again(
    api: Api, series_id: int
) -> None:
    # Given a revoke sent with a key, and the coupon reinstated since
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"], "reason": "dup test"}
    first = send(api, body, headers={"Idempotency-Key": "k-1"})
    coupon_id = api.ok(first)["revokedCoupons"][0]["couponId"]
    api.ok(api.post("/v2/coupon/reinstate", {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}))

    # When the same request is sent again with the same key (keys in another order)
    again = send(
        api,
        {"reason": "dup test", "couponCodes": ["ONE1"], "couponSeriesId": series_id},
        headers={"Idempotency-Key": "k-1"},
    )

    # Then the first response comes back byte for byte and the coupon is not revoked again
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.coupon(coupon_id)["state"] == "AVAILABLE"
    assert revoke_events(api, coupon_id) == ["REVOKE", "REINSTATE"]


def test_the_same_key_with_another_request_answers_9006_and_changes_nothing(
    api: Api, series_id: int
) -> None:
    api.ok(
        send(
            api,
            {"couponSeriesId": series_id, "couponCodes": ["ONE1"]},
            headers={"Idempotency-Key": "k-1"},
        )
    )

    response = send(
        api,
        {"couponSeriesId": series_id, "couponCodes": ["TWO1"]},
        headers={"Idempotency-Key": "k-1"},
    )

    assert response.status_code == 422
    assert error_code(response) == 9006
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 1


def test_another_query_string_makes_another_request(api: Api, series_id: int) -> None:
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}
    api.ok(send(api, body, headers={"Idempotency-Key": "k-1"}))

    response = send(api, body, couponCodeCase="LOWER", headers={"Idempotency-Key": "k-1"})

    assert error_code(response) == 9006


def test_keys_belong_to_one_client(api: Api, agent: Api, series_id: int) -> None:
    # Given the admin client revoked a code under a key
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1", "TWO1"]}
    first = send(api, body, headers={"Idempotency-Key": "shared"})

    # When another client of the org sends the same request with the same key
    second = send(agent, body, headers={"Idempotency-Key": "shared"})

    # Then it is not a replay: the agent's call ran and found both already revoked
    assert api.ok(first)["failedCount"] == 0
    assert "Idempotent-Replayed" not in second.headers
    assert agent.ok(second)["failedToRevoke"] == [
        {"errorCode": 682, "errorMessage": "Coupon not found", "couponCodes": ["ONE1", "TWO1"]}
    ]


def test_a_key_expires_after_24_hours(api: Api, series_id: int, backend: Backend) -> None:
    # Given a key used more than 24 hours ago
    api.ok(
        send(
            api,
            {"couponSeriesId": series_id, "couponCodes": ["ONE1"]},
            headers={"Idempotency-Key": "old"},
        )
    )
    with backend.db.engine.begin() as conn:
        conn.execute(
            update(idempotency_keys).values(created_at=datetime.now(UTC) - timedelta(hours=25))
        )

    # When it is used again, for another request
    response = send(
        api,
        {"couponSeriesId": series_id, "couponCodes": ["TWO1"]},
        headers={"Idempotency-Key": "old"},
    )

    # Then the request runs as new, and the key now remembers this request
    assert api.ok(response)["revokedCoupons"][0]["couponCode"] == "TWO1"
    again = send(
        api,
        {"couponSeriesId": series_id, "couponCodes": ["TWO1"]},
        headers={"Idempotency-Key": "old"},
    )
    assert again.content == response.content
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_a_key_within_24_hours_still_replays(api: Api, series_id: int, backend: Backend) -> None:
    body: dict[str, Any] = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}
    first = send(api, body, headers={"Idempotency-Key": "recent"})
    with backend.db.engine.begin() as conn:
        conn.execute(
            update(idempotency_keys).values(created_at=datetime.now(UTC) - timedelta(hours=23))
        )

    again = send(api, body, headers={"Idempotency-Key": "recent"})

    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_a_request_refused_as_a_whole_does_not_use_up_its_key(api: Api, series_id: int) -> None:
    # Given a revoke for a customer who does not exist yet, refused with 701
    body = {"couponSeriesId": series_id, "customer": {"externalId": "LATE-1"}}
    refused = send(api, body, headers={"Idempotency-Key": "retry-me"})
    assert error_code(refused) == 701

    # When the customer exists and the same request is retried with the same key
    api.customer(externalId="LATE-1")
    retried = send(api, body, headers={"Idempotency-Key": "retry-me"})

    # Then it runs (a refused request changed nothing, so running it now is the first time)
    assert api.ok(retried)["totalCount"] == 0
    assert "Idempotent-Replayed" not in retried.headers


def test_a_dry_run_does_not_use_up_its_key(api: Api, series_id: int) -> None:
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}
    api.ok(send(api, body, dryRun="true", headers={"Idempotency-Key": "k-dry"}))

    real = send(api, body, headers={"Idempotency-Key": "k-dry"})

    assert api.ok(real)["totalCount"] == 1
    assert "Idempotent-Replayed" not in real.headers


@pytest.mark.parametrize("key", ["", "   ", "x" * 256])
def test_a_blank_or_overlong_key_is_refused_with_9002(api: Api, series_id: int, key: str) -> None:
    response = send(
        api,
        {"couponSeriesId": series_id, "couponCodes": ["ONE1"]},
        headers={"Idempotency-Key": key},
    )

    assert error_code(response) == 9002
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 2


def test_a_key_sent_twice_is_refused_not_read_as_one_of_them(api: Api, series_id: int) -> None:
    # read as its first value, a retry sending only the second was another request
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}

    response = api.client.post(
        "/v2/coupon/revoke",
        json=body,
        headers=[
            *api.creds.headers.items(),
            ("Idempotency-Key", "twice-a"),
            ("Idempotency-Key", "twice-b"),
        ],
    )

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"] == "Idempotency-Key: given more than once"
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 2


def test_a_non_ascii_key_is_counted_in_characters_and_replays(api: Api, series_id: int) -> None:
    # sent as UTF-8, 255 characters of "é" are 510 bytes: they were refused as too long
    key = "é" * 255
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}
    headers = {k.encode(): v.encode() for k, v in api.creds.headers.items()}
    headers[b"Idempotency-Key"] = key.encode()

    first = api.client.post("/v2/coupon/revoke", json=body, headers=headers)
    again = api.client.post("/v2/coupon/revoke", json=body, headers=headers)

    assert api.ok(first)["totalCount"] == 1
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"


def test_a_dry_run_with_the_key_of_a_real_call_is_another_request(api: Api, series_id: int) -> None:
    body = {"couponSeriesId": series_id, "couponCodes": ["ONE1"]}
    api.ok(send(api, body, headers={"Idempotency-Key": "k-real"}))

    response = send(api, body, dryRun="true", headers={"Idempotency-Key": "k-real"})

    assert response.status_code == 422
    assert error_code(response) == 9006


def test_a_response_stored_before_compression_still_replays_byte_for_byte(
    api: Api, series_id: int, backend: Backend
) -> None:
    # Given a revoke stored under a key, whose row then holds the plain JSON body, as rows
    # written by earlier versions do
    body = {"couponSeriesId": series_id, "couponCodes": ["TWO1"]}
    first = send(api, body, headers={"Idempotency-Key": "old-row"})
    with backend.db.engine.begin() as conn:
        stored = conn.execute(
            idempotency_keys.select().where(idempotency_keys.c.key == "old-row")
        ).one()
        assert stored.body != first.content  # compressed at rest
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == "old-row")
            .values(body=first.content)
        )

    # When the same request is retried
    again = send(api, body, headers={"Idempotency-Key": "old-row"})

    # Then the stored answer comes back unchanged
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


def test_answers_past_their_window_are_deleted_oldest_first_a_batch_at_a_time(
    api: Api, series_id: int, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given answers stored 30, 28 and 26 hours ago, and one an hour ago; a batch of two
    for key in ("h30", "h28", "h26", "h1"):
        send(api, {"couponSeriesId": series_id, "couponCodes": ["ONE1"]},
             headers={"Idempotency-Key": key})  # fmt: skip
    now = datetime.now(UTC)
    with backend.db.engine.begin() as conn:
        for key in ("h30", "h28", "h26", "h1"):
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == key)
                .values(created_at=now - timedelta(hours=int(key[1:])))
            )
    monkeypatch.setattr(runner, "FORGET_BATCH", 2)

    # When the worker's cleanup runs twice
    first = backend.db.run(lambda uow: runner.forget_old_answers(uow, now))
    second = backend.db.run(lambda uow: runner.forget_old_answers(uow, now))

    # Then the two oldest went first, then the last one past the window; the recent one stays
    with backend.db.engine.connect() as conn:
        left = set(conn.scalars(select(idempotency_keys.c.key)))
    assert (first, second) == (2, 1)
    assert left == {"h1"}
