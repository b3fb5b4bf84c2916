"""GET /v2/events: every coupon state change, once, in order, per org."""

from __future__ import annotations

from tests.e2e.conftest import Api, error_code
from tests.events.conftest import events_of


def test_every_state_change_appears_once_in_order_with_its_details(api: Api) -> None:
    # given a coupon taken through its whole lifecycle
    series_id = api.series(codes=["LIFE1"])
    customer_id = api.customer("555-0101")
    coupon = api.issue(series_id, customer_id)
    redemption = api.ok(api.redeem(customer_id, "LIFE1"))["redemptions"][0]
    api.ok(
        api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redemption["redemptionId"]]}
        )
    )
    api.ok(
        api.revoke(
            {"couponSeriesId": series_id, "couponCodes": ["life1"], "reason": "fraud"},
        )
    )
    reinstate = {"couponSeriesId": series_id, "couponCodes": ["LIFE1"]}
    api.ok(api.post("/v2/coupon/reinstate", reinstate))

    # when the event log is read from the start
    events = events_of(api)

    # then it holds one event per change, in order, each describing the coupon
    assert [e["type"] for e in events] == [
        "coupon.issued",
        "coupon.redeemed",
        "coupon.reactivated",
        "coupon.revoked",
        "coupon.reinstated",
    ]
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    assert [e["couponVersion"] for e in events] == [1, 2, 3, 4, 5]
    history = api.coupon(coupon["couponId"])["history"]
    for event, entry in zip(events, history, strict=True):
        assert event["couponId"] == coupon["couponId"]
        assert event["couponCode"] == "LIFE1"
        assert event["seriesId"] == series_id
        assert event["customerId"] == customer_id
        assert event["actor"] == "acme-admin"
        assert event["requestId"] == entry["requestId"]
        assert event["reason"] == entry["reason"]
    assert events[3]["reason"] == "fraud"
    assert (events[3]["fromState"], events[3]["toState"]) == ("ISSUED", "REVOKED")
    assert events[0]["at"].endswith("Z")


def test_each_coupon_counts_its_own_versions_from_its_first_change(api: Api) -> None:
    # given a pool code (no change yet), a code generated at issue, and a generic code that
    # a redeem creates
    pool_series = api.series(codes=["VER1"])
    generated_series = api.series()
    api.series("GENERIC_REDEEMABLE", generic_code="VERGEN")
    customer_id = api.customer("555-0109")

    # when each goes through its changes, interleaved
    pooled = api.issue(pool_series, customer_id)
    generated = api.issue(generated_series, customer_id)
    api.ok(api.revoke({"couponSeriesId": pool_series, "couponCodes": ["VER1"]}))
    api.ok(api.redeem(customer_id, "VERGEN"))
    api.ok(
        api.post("/v2/coupon/reinstate", {"couponSeriesId": pool_series, "couponCodes": ["VER1"]})
    )

    # then every coupon's events carry 1, 2, 3, ... of its own, in log order
    versions: dict[int, list[int]] = {}
    for event in events_of(api):
        versions.setdefault(event["couponId"], []).append(event["couponVersion"])
    assert versions.pop(pooled["couponId"]) == [1, 2, 3]
    assert versions.pop(generated["couponId"]) == [1]
    assert list(versions.values()) == [[1]]  # the generic coupon the redeem created


def test_dry_runs_and_idempotent_replays_add_no_events(api: Api) -> None:
    # given an issued coupon and its one event
    series_id = api.series(codes=["DRY1"])
    api.issue(series_id, api.customer("555-0102"))
    before = events_of(api)
    body = {"couponSeriesId": series_id, "couponCodes": ["DRY1"]}

    # when it is revoked in a dry run, then for real twice under one idempotency key
    api.ok(api.revoke(body, dryRun="true"))
    after_dry_run = events_of(api)
    api.ok(api.post("/v2/coupon/revoke", body, headers={"Idempotency-Key": "k-1"}))
    replay = api.post("/v2/coupon/revoke", body, headers={"Idempotency-Key": "k-1"})

    # then only the real revoke added an event
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert after_dry_run == before
    assert [e["type"] for e in events_of(api)] == ["coupon.issued", "coupon.revoked"]


def test_the_log_pages_forward_from_next_after(api: Api) -> None:
    # given five issued coupons
    series_id = api.series(codes=[f"PAGE{i}" for i in range(5)])
    api.issue_many(series_id, api.customer("555-0103"), 5)

    # when it is read two at a time, following nextAfter
    seen: list[int] = []
    after = 0
    for _ in range(4):
        page = api.ok(api.get("/v2/events", params={"after": after, "limit": 2}))
        seen.extend(e["id"] for e in page["events"])
        after = page["nextAfter"]

    # then every event came once, in order, and an empty page keeps the cursor
    assert seen == [e["id"] for e in events_of(api)] and len(seen) == 5
    assert after == seen[-1]


def test_another_orgs_events_are_invisible(api: Api, other: Api) -> None:
    # given a change in acme
    api.issue(api.series(codes=["MINE1"]), api.customer("555-0104"))

    # when globex reads its log
    theirs = events_of(other)

    # then it sees none of acme's events
    assert theirs == [] and len(events_of(api)) == 1


def test_a_read_only_client_may_read_the_log(api: Api, viewer: Api) -> None:
    api.issue(api.series(codes=["VIEW1"]), api.customer("555-0105"))

    assert [e["type"] for e in events_of(viewer)] == ["coupon.issued"]


def test_a_limit_out_of_range_is_a_field_error(api: Api) -> None:
    for limit in (0, 1001):
        response = api.get("/v2/events", params={"limit": limit})

        assert response.status_code == 400 and error_code(response) == 9002
        assert "limit" in response.json()["errors"][0]["message"]
