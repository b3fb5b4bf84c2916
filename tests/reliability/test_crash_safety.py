"""Crash safety: SIGKILL the server mid-flight, restart it, and find every request applied
whole or not at all, with every coupon's history agreeing with its state (spec §5).

The server runs as a real process (`coupons serve`) on a real database (the SQLite file or the
PostgreSQL database of the `backend` fixture). Coupons come in groups of three; each group is
revoked by one request, redeemed by one request, or contested by both at once. Every request
carries its own X-Request-Id, which the history records, so after the restart each request's
effect can be read back from the coupon history (the database, checked against the
restarted server's `GET /v2/coupon/{id}`).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from coupons.domain.model import Action, CouponState, HistoryEntry, replay
from coupons.services.ports import UnitOfWork
from tests.conftest import Backend, Credentials
from tests.e2e.conftest import Api
from tests.reliability.live import ServerProcess

GROUPS = 30
GROUP_SIZE = 3
KILL_AFTER_RESPONSES = 8


@dataclass
class Sent:
    """One request fired at the server, and what (if anything) came back."""

    request_id: str
    kind: str  # "revoke" or "redeem"
    codes: list[str]
    response: dict[str, Any] | None = None
    error: str | None = None
    changed: set[str] = field(default_factory=set)  # codes the response says it changed


def _fire(base_url: str, creds: Credentials, sent: Sent, body: dict[str, Any]) -> None:
    path = "/v2/coupon/revoke" if sent.kind == "revoke" else "/v2/coupon/redeem"
    headers = {**creds.headers, "X-Request-Id": sent.request_id}
    try:
        response = httpx.post(f"{base_url}{path}", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        sent.error = type(error).__name__
        return
    sent.response = response.json()
    entity = sent.response.get("entity") or {}
    if sent.kind == "revoke":
        sent.changed = {c["couponCode"] for c in entity.get("revokedCoupons", [])}
    else:
        sent.changed = {r["code"].upper() for r in entity.get("redemptions", [])}


def _states(
    uow: UnitOfWork, ids_by_code: dict[str, int]
) -> dict[str, tuple[CouponState, list[HistoryEntry]]]:
    """Each coupon's state and history, read straight from the database in one transaction."""
    org_id = uow.clients.org_id_by_name("acme")
    assert org_id is not None
    found: dict[str, tuple[CouponState, list[HistoryEntry]]] = {}
    for code, coupon_id in ids_by_code.items():
        coupon = uow.coupons.coupon(org_id, coupon_id)
        assert coupon is not None
        found[code] = (coupon.state, uow.history.history(coupon_id))
    return found


def test_a_sigkill_mid_flight_leaves_every_request_applied_whole_or_not_at_all(
    backend: Backend, api: Api, acme_admin: Credentials, tmp_path: Path
) -> None:
    # given a customer holding GROUPS x GROUP_SIZE issued coupons of one series
    series_id = api.series()
    customer_id = api.customer("+1 555 0142")
    coupons = api.issue_many(series_id, customer_id, GROUPS * GROUP_SIZE)
    ids_by_code = {c["couponCode"].upper(): int(c["couponId"]) for c in coupons}
    codes = list(ids_by_code)
    groups = [codes[i : i + GROUP_SIZE] for i in range(0, len(codes), GROUP_SIZE)]

    # and a server process on the same database, past its first (slow, argon2) login
    server = ServerProcess(backend.url, tmp_path / "server.log").start()
    httpx.get(f"{server.base_url}/v2/coupon/1", headers=acme_admin.headers, timeout=30)

    # when revokes and redeems (some contested) are fired concurrently and the server is
    # SIGKILLed once a few responses have come back
    sent: list[tuple[Sent, dict[str, Any]]] = []
    for index, group in enumerate(groups):
        kinds = ("revoke", "redeem", "both")[index % 3]
        if kinds in ("revoke", "both"):
            body = {"couponSeriesId": series_id, "couponCodes": group, "reason": "crash test"}
            sent.append((Sent(uuid.uuid4().hex, "revoke", group), body))
        if kinds in ("redeem", "both"):
            body = {
                "customer": {"id": customer_id},
                "transactionNumber": f"T-{index}",
                "billAmount": 10,
                "redemptionRequestList": [{"code": c} for c in group],
            }
            sent.append((Sent(uuid.uuid4().hex, "redeem", group), body))
    done = threading.Semaphore(0)

    def fire_and_count(item: tuple[Sent, dict[str, Any]]) -> None:
        _fire(server.base_url, acme_admin, *item)
        done.release()

    with ThreadPoolExecutor(max_workers=12) as pool:
        for item in sent:
            pool.submit(fire_and_count, item)
        for _ in range(KILL_AFTER_RESPONSES):
            done.acquire(timeout=60)
        server.kill()
    server = ServerProcess(backend.url, tmp_path / "server.log").start()

    # then the kill really happened mid-flight: some requests were answered, some were not
    requests = [s for s, _ in sent]
    answered = [s for s in requests if s.response is not None]
    assert answered and len(answered) < len(requests)
    try:
        # the restarted server answers from the same data the database holds
        sample = ids_by_code[codes[0]]
        served = httpx.get(
            f"{server.base_url}/v2/coupon/{sample}", headers=acme_admin.headers, timeout=30
        ).json()["entity"]
    finally:
        server.stop()
    states = backend.db.run(lambda uow: _states(uow, ids_by_code), write=False)
    assert served["state"] == states[codes[0]][0].value
    assert [h["requestId"] for h in served["history"]] == [
        h.request_id for h in states[codes[0]][1]
    ]

    # and every coupon's history replays to its state, with at most one of revoke and redeem
    for code, (state, history) in states.items():
        assert replay(CouponState.AVAILABLE, history) == state, code
        actions = [h.action for h in history]
        assert not (Action.REVOKE in actions and Action.REDEEM in actions), code

    # and each request changed all of its codes or none (redeem is all-or-nothing; an
    # uncontested revoke of issued coupons can only fail as a whole), exactly as answered
    for request in requests:
        action = Action.REVOKE if request.kind == "revoke" else Action.REDEEM
        mine = [
            (code, h)
            for code, (_, history) in states.items()
            for h in history
            if h.request_id == request.request_id
        ]
        assert all(h.action is action for _, h in mine)
        touched = {code for code, _ in mine}
        assert len(mine) == len(touched)  # one history entry per coupon changed
        contested = sum(1 for s in requests if s.codes == request.codes) > 1
        if request.kind == "redeem" or not contested:
            assert touched in (set(), set(request.codes)), (request.kind, touched)
        if request.response is not None:
            assert touched == request.changed, (request.kind, request.response)
