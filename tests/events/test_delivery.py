"""Webhook delivery to a real HTTP receiver on localhost: complete, ordered, signed, isolated."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from coupons.entrypoints.worker import Worker
from coupons.services.webhooks import RetryPolicy, sign, verify
from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.events.conftest import Receiver, events_of, subscribe, wait_until


def _lifecycle(api: Api, code: str, mobile: str) -> None:
    """Issue, redeem, reactivate, revoke and reinstate one coupon: five events."""
    series_id = api.series(codes=[code])
    customer_id = api.customer(mobile)
    api.issue(series_id, customer_id)
    redemption = api.ok(api.redeem(customer_id, code))["redemptions"][0]
    api.ok(
        api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redemption["redemptionId"]]}
        )
    )
    body = {"couponSeriesId": series_id, "couponCodes": [code], "reason": "test"}
    api.ok(api.revoke(body))
    api.ok(api.post("/v2/coupon/reinstate", body))


def test_every_state_change_arrives_signed_exactly_as_the_log_describes_it(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given a subscription and a running worker
    hook = subscribe(api, receiver.url)
    start_worker()

    # when a coupon goes through its lifecycle
    _lifecycle(api, "SIGNED1", "555-0201")

    # then the receiver gets the five events, equal to the log, each batch verifiably signed
    wait_until(lambda: len(receiver.all_events()) >= 5)
    assert receiver.all_events() == events_of(api)
    for request in receiver.received:
        header = request.headers["X-Coupons-Signature"]
        assert verify(hook["secret"], header, request.body)
        assert request.headers["Content-Type"] == "application/json"


def test_a_tampered_body_or_an_old_signature_fails_verification(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given one delivered, signed batch
    hook = subscribe(api, receiver.url)
    start_worker()
    api.issue(api.series(codes=["TAMPER1"]), api.customer("555-0202"))
    wait_until(lambda: len(receiver.received) == 1)
    request = receiver.received[0]
    header = request.headers["X-Coupons-Signature"]

    # then changing one byte, the key, or presenting it six minutes late fails verification
    tampered = request.body.replace(b"coupon.issued", b"coupon.revoked")
    assert verify(hook["secret"], header, request.body)
    assert not verify(hook["secret"], header, tampered)
    assert not verify("whsec_wrong", header, request.body)
    assert not verify(hook["secret"], header, request.body, now=time.time() + 360)
    stale = sign(hook["secret"], request.body, int(time.time()) - 360)
    assert not verify(hook["secret"], stale, request.body)


def test_a_receiver_that_is_down_for_a_while_gets_everything_in_order_once_back(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given a receiver answering 503 and a worker retrying quickly
    receiver.status = 503
    subscribe(api, receiver.url)
    start_worker(batch_size=3)

    # when changes happen while it is down, and it then comes back
    _lifecycle(api, "DOWN1", "555-0203")
    _lifecycle(api, "DOWN2", "555-0204")
    wait_until(lambda: len(receiver.received) >= 3)
    receiver.status = 200

    # then every event arrives once acknowledged, in order, with no gap
    expected = [e["id"] for e in events_of(api)]
    wait_until(lambda: [e["id"] for e in receiver.acknowledged_events()] == expected)
    hook_id = api.ok(api.get("/v2/webhooks"))["webhooks"][0]["id"]
    deliveries = api.ok(api.get(f"/v2/webhooks/{hook_id}/deliveries"))["deliveries"]
    assert {d["outcome"] for d in deliveries} == {"FAILED", "DELIVERED"}
    assert any(d["httpStatus"] == 503 and d["attempt"] > 1 for d in deliveries)

    # and the attempts can be walked a page at a time, newest first, each once
    walked: list[dict[str, object]] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 1, **({"after": cursor} if cursor else {})}
        page = api.ok(api.get(f"/v2/webhooks/{hook_id}/deliveries", params=params))
        walked += page["deliveries"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        # a cursor names its own subscription's list: another's refuses it
        other = subscribe(api, receiver.url)["id"]
        refused = api.get(f"/v2/webhooks/{other}/deliveries", params={"after": cursor})
        assert refused.status_code == 400 and "after" in refused.text
    ids = [int(str(d["id"])) for d in walked]
    assert ids == sorted(set(ids), reverse=True)
    assert {d["id"] for d in deliveries} <= set(ids)


def test_a_dead_receiver_does_not_slow_another(
    api: Api, start_receiver: Callable[[], Receiver], start_worker: Callable[..., Worker]
) -> None:
    # given one receiver that hangs on every request and one that answers at once
    hanging, healthy = start_receiver(), start_receiver()
    hanging.hold = threading.Event()
    subscribe(api, hanging.url)
    subscribe(api, healthy.url)
    start_worker(http_timeout=5.0, lease=timedelta(seconds=10))

    # when changes happen one after another
    series_id = api.series(codes=[f"FAST{i}" for i in range(3)])
    customer_id = api.customer("555-0205")
    latencies = []
    for expected in range(1, 4):
        started = time.monotonic()
        api.issue(series_id, customer_id)
        wait_until(lambda n=expected: len(healthy.all_events()) == n, timeout=8)  # type: ignore[misc]
        latencies.append(time.monotonic() - started)

    # then the healthy receiver gets each well within the other's 5 s timeout
    assert hanging.arrived.is_set() and hanging.received == []
    assert max(latencies) < 2.0, latencies


@pytest.mark.parametrize("part", ["body", "head"])
def test_an_answer_trickled_in_is_cut_off_at_the_http_timeout(
    start_receiver: Callable[[], Receiver], start_worker: Callable[..., Worker], part: str
) -> None:
    # httpx's timeout bounds each read: a byte of the body, or a header line, every 0.3 s
    # never tripped it, and a delivery outlived its lease while another worker sent batches
    slow = start_receiver()
    if part == "body":
        slow.trickle = 0.3  # 40 bytes: 12 s in all
    else:
        slow.trickle_head = 0.3  # 40 header lines: 12 s in all
    worker = start_worker(http_timeout=1.0, lease=timedelta(seconds=3))

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        worker.post(slow.url, b"{}", {"Content-Type": "application/json"})

    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "resolved", ["169.254.169.254", "fe80::1", "0.0.0.0", "fd00:ec2::254", "100.100.100.200"]
)
def test_a_name_that_resolves_to_a_link_local_address_is_not_sent_to(
    start_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch, resolved: str
) -> None:
    # a name can point at the instance-metadata address after the subscription was made
    worker = start_worker()
    family = socket.AF_INET6 if ":" in resolved else socket.AF_INET
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *args, **kwargs: [(family, socket.SOCK_STREAM, 6, "", (resolved, 80))],
    )

    with pytest.raises(httpx.ConnectError, match="link-local, unspecified or cloud metadata"):
        worker.post("http://hooks.example.test/x", b"{}", {"Content-Type": "application/json"})


def test_a_name_is_resolved_once_and_the_connection_goes_to_the_checked_address(
    start_receiver: Callable[[], Receiver],
    start_worker: Callable[..., Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DNS rebinding: a name that answers a harmless address to the check and the metadata
    # address to the connection's own look-up must not reach the second
    receiver = start_receiver()
    port = receiver.server.server_address[1]
    worker = start_worker()
    answers = iter(["127.0.0.1", "169.254.169.254", "169.254.169.254"])
    asked: list[str] = []
    resolve = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host[0].isdigit():  # an address resolves to itself, with no look-up
            return resolve(host, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)

    status = worker.post(
        f"http://hooks.example.test:{port}/hook", b"{}", {"Content-Type": "application/json"}
    )

    assert status == 200
    assert asked == ["hooks.example.test"]
    assert receiver.received[0].headers["Host"] == f"hooks.example.test:{port}"


def test_a_name_answering_a_link_local_address_among_others_is_refused_whole(
    start_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = start_worker()
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *args, **kwargs: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)),
        ],
    )

    with pytest.raises(httpx.ConnectError, match="link-local, unspecified or cloud metadata"):
        worker.post("http://hooks.example.test/x", b"{}", {"Content-Type": "application/json"})


def test_through_a_proxy_the_workers_own_answer_for_the_name_is_still_checked(
    start_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the proxy makes the connection, so the check can only be made before it
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    worker = start_worker()
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.1.1", 80))],
    )

    with pytest.raises(httpx.ConnectError, match="link-local, unspecified or cloud metadata"):
        worker.post("http://hooks.example.test/x", b"{}", {"Content-Type": "application/json"})


def test_a_name_that_does_not_resolve_is_a_failed_attempt_saying_so(
    start_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = start_worker()

    def nowhere(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)

    with pytest.raises(httpx.ConnectError, match="does not resolve"):
        worker.post("http://hooks.example.test/x", b"{}", {"Content-Type": "application/json"})


def test_retries_end_in_dead_letter_and_a_manual_retry_resumes_where_it_stopped(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given a worker that gives up at the first failure
    receiver.status = 500
    hook = subscribe(api, receiver.url)
    start_worker(policy=RetryPolicy(give_up_after=timedelta(0)))
    api.issue(api.series(codes=["DEAD1"]), api.customer("555-0206"))

    def status() -> str:
        return str(api.ok(api.get("/v2/webhooks"))["webhooks"][0]["status"])

    wait_until(lambda: status() == "DEAD")
    attempts = len(receiver.received)
    time.sleep(0.3)
    assert len(receiver.received) == attempts  # a dead subscription is left alone

    # when the receiver is fixed and the subscription retried by hand
    receiver.status = 200
    retried = api.ok(api.post(f"/v2/webhooks/{hook['id']}/retry"))

    # then the event that failed is delivered, and the subscription is active again
    assert retried["status"] == "ACTIVE"
    wait_until(lambda: len(receiver.acknowledged_events()) == 1)
    assert receiver.acknowledged_events()[0]["type"] == "coupon.issued"
    assert status() == "ACTIVE"


def test_only_subscribed_event_types_are_sent(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    subscribe(api, receiver.url, ["coupon.revoked"])
    start_worker()

    _lifecycle(api, "ONLY1", "555-0207")

    wait_until(lambda: len(receiver.all_events()) == 1)
    time.sleep(0.3)
    assert [e["type"] for e in receiver.all_events()] == ["coupon.revoked"]


def test_two_workers_deliver_each_event_once(
    api: Api, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given two workers sharing one subscription
    subscribe(api, receiver.url)
    start_worker(batch_size=2)
    start_worker(batch_size=2)

    # when many changes happen
    series_id = api.series(codes=[f"TWO{i}" for i in range(12)])
    customer_id = api.customer("555-0208")
    for _ in range(12):
        api.issue(series_id, customer_id)

    # then each event arrived exactly once, in order
    expected = [e["id"] for e in events_of(api)]
    wait_until(lambda: len(receiver.all_events()) >= len(expected))
    time.sleep(0.3)
    assert [e["id"] for e in receiver.all_events()] == expected


def test_a_worker_killed_mid_delivery_loses_nothing_and_repeats_the_same_events(
    api: Api, backend: Backend, receiver: Receiver, start_worker: Callable[..., Worker]
) -> None:
    # given three events and a worker process whose delivery the receiver holds open
    subscribe(api, receiver.url)
    series_id = api.series(codes=[f"KILL{i}" for i in range(3)])
    api.issue_many(series_id, api.customer("555-0209"), 3)
    receiver.hold = threading.Event()
    command = "from coupons.entrypoints.cli import main; main()"
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", command, "worker", "--db", backend.url),
            *("--lease-seconds", "3", "--timeout", "2", "--poll-interval", "0.05"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert receiver.arrived.wait(30), "the worker process never delivered"

        # when it is SIGKILLed mid-delivery, and another worker takes over
        process.kill()
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    receiver.hold.set()
    wait_until(lambda: len(receiver.received) == 1)
    start_worker()

    # then after the lease lapses the same events go out again, and all are acknowledged
    expected = [e["id"] for e in events_of(api)]
    wait_until(lambda: len(receiver.received) == 2, timeout=15)
    first, repeat = receiver.received
    assert [e["id"] for e in first.events] == [e["id"] for e in repeat.events] == expected
    assert first.events == repeat.events
