"""The retry schedule: exponential, capped, jittered; and the operator's retry command."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from typer.testing import CliRunner

from coupons.entrypoints.cli import app
from coupons.services.webhooks import RetryPolicy
from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.events.conftest import subscribe


def test_retry_delays_double_from_five_seconds_up_to_an_hour_with_jitter() -> None:
    policy = RetryPolicy()

    slowest = [policy.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 12, 30)]
    fastest = [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3)]

    assert slowest == [timedelta(seconds=s) for s in (5, 10, 20, 40, 3600, 3600)]
    assert fastest == [timedelta(seconds=s) for s in (2.5, 5, 10)]


def test_a_delivery_failing_for_days_still_waits_the_capped_delay() -> None:
    # past attempt 44, 5 s doubled overflowed timedelta before the cap: nothing was recorded
    # and the receiver was called again every lease (a minute) instead of every hour
    policy = RetryPolicy(give_up_after=timedelta(days=30))

    assert {policy.delay(n, rng=lambda: 1.0) for n in (45, 100, 10_000)} == {timedelta(hours=1)}
    # whatever the first delay
    slow = RetryPolicy(first_delay=timedelta(days=30), max_delay=timedelta(days=60))
    assert slow.delay(10_000, rng=lambda: 1.0) == timedelta(days=60)


def test_the_retry_command_revives_a_dead_subscription(api: Api, backend: Backend) -> None:
    # given a subscription dead-lettered after failing for a day
    hook = subscribe(api, "http://127.0.0.1:9/down")
    with backend.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE webhooks SET status = 'DEAD', attempts = 40 WHERE id = :id"),
            {"id": hook["id"]},
        )

    # when an operator retries it
    result = CliRunner().invoke(app, ["webhook", "retry", str(hook["id"]), "--db", backend.url])

    # then it is active again with a fresh retry budget; an unknown id fails loudly
    assert result.exit_code == 0, result.output
    listed = api.ok(api.get("/v2/webhooks"))["webhooks"][0]
    assert (listed["status"], listed["attempts"]) == ("ACTIVE", 0)
    missing = CliRunner().invoke(app, ["webhook", "retry", "999999", "--db", backend.url])
    assert (missing.exit_code, missing.output) == (1, "error: no live webhook 999999\n")


def test_a_round_with_nothing_readable_keeps_a_failing_subscriptions_backoff(
    api: Api, backend: Backend
) -> None:
    # A round can find nothing to read yet (events held back behind a transaction still
    # open): counted as a success, it reset a failing subscription's backoff and the clock
    # that ends it in dead letter
    from datetime import UTC, datetime

    from coupons.services.webhooks import deliver

    hook = subscribe(api, "http://127.0.0.1:9/hook")
    failing_since = datetime(2026, 1, 1, tzinfo=UTC)
    with backend.db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE webhooks SET attempts = 3, failing_since = :since, lease_owner = 'w1', "
                "lease_until = :until WHERE id = :id"
            ),
            {"since": failing_since, "until": datetime(2999, 1, 1, tzinfo=UTC), "id": hook["id"]},
        )
        org_id = conn.scalar(text("SELECT org_id FROM webhooks WHERE id = :id"), {"id": hook["id"]})
    record = backend.db.run(lambda uow: uow.webhooks.webhook(org_id, hook["id"]), write=False)
    assert record is not None

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("nothing to send, so no receiver is called")

    result = deliver(backend.db, record, "w1", never, render_body=never, policy=RetryPolicy())  # type: ignore[arg-type]

    after = backend.db.run(lambda uow: uow.webhooks.webhook(org_id, hook["id"]), write=False)
    assert result.outcome == "NOTHING" and after is not None
    assert (after.attempts, after.failing_since) == (3, failing_since)
