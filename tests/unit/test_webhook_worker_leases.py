"""The delivery worker's loop: a subscription it leases again while that subscription's last
delivery is still returning is delivered at once, not left leased and idle for a minute."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from coupons.domain.records import WebhookRecord
from coupons.entrypoints.worker import Worker, WorkerOptions
from coupons.services import webhooks

NOW = datetime(2026, 12, 6, tzinfo=UTC)
HOOK = WebhookRecord(
    id=7, org_id=1, url="https://example.test/in", events=frozenset(), secret="whsec_x",
    status="ACTIVE", cursor=0, attempts=0, failing_since=None, next_attempt_at=NOW,
    last_error=None, created_at=NOW,
)  # fmt: skip


def test_a_subscription_leased_while_its_delivery_returns_is_delivered_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a first delivery that has released its lease but not yet returned, and the next
    # claim that leases the same subscription again (new events came in meanwhile)
    claims = [[HOOK], [HOOK]]
    claimed_twice = threading.Event()

    def claim(db: Any, owner: str, lease: Any, limit: int) -> list[WebhookRecord]:
        if not claims:
            claimed_twice.set()
            return []
        return claims.pop(0)

    monkeypatch.setattr(webhooks, "claim", claim)
    worker = Worker(db=None, options=WorkerOptions(poll_interval=0.01))  # type: ignore[arg-type]
    deliveries: list[int] = []
    first_may_return = threading.Event()

    def deliver(webhook: WebhookRecord) -> webhooks.DeliveryResult:
        deliveries.append(webhook.id)
        if len(deliveries) == 1:
            first_may_return.wait(5)
        return webhooks.DeliveryResult("DELIVERED", 1)

    monkeypatch.setattr(worker, "_deliver", deliver)
    loop = threading.Thread(target=worker.run)
    loop.start()
    try:
        assert claimed_twice.wait(5)
        # When the first delivery returns
        first_may_return.set()
        deadline = time.monotonic() + 5
        while len(deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
        first_may_return.set()
        loop.join(5)

    # Then the second lease is delivered at once, by this worker
    assert deliveries == [HOOK.id, HOOK.id]
