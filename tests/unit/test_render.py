"""Every time leaves the API in one format: ISO 8601 in UTC with a `Z` suffix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from coupons.domain.model import Action, CouponState
from coupons.domain.records import DeliveryRecord, EventRecord, WebhookRecord
from coupons.entrypoints.http import render, render_events
from coupons.entrypoints.http.render import timestamp

AT = datetime(2026, 11, 26, 4, 17, 33, 512044, tzinfo=UTC)
AT_TEXT = "2026-11-26T04:17:33.512044Z"


def test_a_time_in_any_zone_is_written_in_utc_with_z() -> None:
    elsewhere = AT.astimezone(timezone(timedelta(hours=5, minutes=30)))

    assert timestamp(AT) == AT_TEXT
    assert timestamp(elsewhere) == AT_TEXT


def test_events_webhooks_and_deliveries_write_their_times_the_same_way() -> None:
    # Given an event, a subscription and a delivery, all at the same moment
    event = EventRecord(
        9, 1, 2, Action.REVOKE, CouponState.ISSUED, CouponState.REVOKED, AT, "ops", "r", None,
        3, "SAVE1", 4, 2,
    )  # fmt: skip
    webhook = WebhookRecord(
        5, 1, "https://example.com/hook", frozenset(), "whsec_x", "ACTIVE", 8, 0, None, AT,
        None, AT,
    )  # fmt: skip
    delivery = DeliveryRecord(6, 5, 9, 9, 1, 1, "DELIVERED", 200, None, 12, AT)

    # When each is rendered (and the webhook body is encoded)
    body = orjson.loads(render_events.webhook_body(webhook.id, [event]))
    shown = render_events.webhook(webhook)

    # Then every time is the same text
    assert render_events.event(event)["at"] == AT_TEXT
    assert body == {"webhookId": 5, "events": [render_events.event(event)]}
    assert (shown["nextAttemptAt"], shown["createdAt"]) == (AT_TEXT, AT_TEXT)
    assert render_events.delivery(delivery)["at"] == AT_TEXT
    assert "secret" not in shown


def test_a_dead_subscription_shows_no_next_attempt() -> None:
    dead = WebhookRecord(
        5, 1, "https://example.com/hook", frozenset(), "whsec_x", "DEAD", 8, 12, AT, AT,
        "HTTP 500", AT,
    )  # fmt: skip

    shown = render_events.webhook(dead)

    assert (shown["status"], shown["nextAttemptAt"], shown["lastError"]) == (
        "DEAD",
        None,
        "HTTP 500",
    )


def test_a_time_the_service_recorded_is_always_written_to_the_microsecond() -> None:
    # without a fraction when it was zero, `...33Z` sorted as text after `...33.5Z`
    on_the_second = datetime(2026, 11, 26, 4, 17, 33, tzinfo=UTC)

    assert render.timestamp(on_the_second) == "2026-11-26T04:17:33.000000Z"
    assert render.timestamp(on_the_second.replace(microsecond=512044)) == (
        "2026-11-26T04:17:33.512044Z"
    )
    # while a time a client set is written as it was given
    assert render.set_time(on_the_second) == "2026-11-26T04:17:33Z"
