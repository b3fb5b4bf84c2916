"""A client-side load driver that behaves like a careful production client.

Each thread owns some coupons and walks each through a fixed script (revoke, reinstate, ...,
redeem), one request per step, each step under its own `Idempotency-Key`. A 503 or a
connection error is retried with the same key, on the next server in the list, until the step
is acknowledged (HTTP 200), so every step ends with exactly one known answer. Everything seen
is recorded for the test to judge: statuses, whether each 503 had code 9023 and
`Retry-After`, and which changes each acknowledged answer reports.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import Credentials

SCRIPT = ("revoke", "reinstate", "revoke", "reinstate", "redeem")
PATHS = {
    "revoke": "/v2/coupon/revoke",
    "reinstate": "/v2/coupon/reinstate",
    "redeem": "/v2/coupon/redeem",
}


@dataclass
class Seen:
    """What the load saw, shared by its threads (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    bad_503s: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # code -> the actions acknowledged for it, in the order the client made them
    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    replays: int = 0

    def status(self, code: int) -> None:
        with self.lock:
            self.statuses[code] += 1


@dataclass
class Load:
    """Drives `SCRIPT` over `codes` from `threads` threads against `servers` (base URLs)."""

    servers: Sequence[str]
    creds: Credentials
    series_id: int
    customer_id: int
    codes: Sequence[str]
    threads: int = 4
    step_deadline: float = 60.0
    seen: Seen = field(default_factory=Seen)
    stop: threading.Event = field(default_factory=threading.Event)
    steps_done: int = 0  # steps answered so far, over all threads

    def body(self, action: str, code: str) -> dict[str, Any]:
        if action == "redeem":
            return {
                "customer": {"id": self.customer_id},
                "transactionNumber": f"T-{code}",
                "billAmount": 10,
                "redemptionRequestList": [{"code": code}],
            }
        return {"couponSeriesId": self.series_id, "couponCodes": [code], "reason": "load"}

    def changed(self, action: str, entity: dict[str, Any]) -> set[str]:
        key = {"revoke": "revokedCoupons", "reinstate": "reinstatedCoupons"}.get(action)
        if key is None:
            return {r["code"].upper() for r in entity.get("redemptions", [])}
        return {c["couponCode"].upper() for c in entity.get(key, [])}

    def step(self, client: httpx.Client, start: int, action: str, code: str) -> None:
        """One step, retried with its key until acknowledged."""
        key = uuid.uuid4().hex
        headers = {**self.creds.headers, "Idempotency-Key": key}
        deadline = time.monotonic() + self.step_deadline
        for attempt in itertools.count():
            if time.monotonic() > deadline:
                with self.seen.lock:
                    self.seen.unexpected.append(f"{action} {code}: no answer in time")
                return
            server = self.servers[(start + attempt) % len(self.servers)]
            try:
                response = client.post(
                    f"{server}{PATHS[action]}", json=self.body(action, code), headers=headers
                )
            except httpx.HTTPError:
                with self.seen.lock:
                    self.seen.connection_errors += 1
                time.sleep(0.05)
                continue
            self.seen.status(response.status_code)
            if response.status_code == 503:
                self._check_503(response)
                time.sleep(0.1)
                continue
            if response.status_code != 200:
                with self.seen.lock:
                    self.seen.unexpected.append(
                        f"{action} {code}: HTTP {response.status_code} {response.text[:200]}"
                    )
                return
            changed = self.changed(action, response.json()["entity"])
            with self.seen.lock:
                if response.headers.get("idempotent-replayed") == "true":
                    self.seen.replays += 1
                if changed == {code}:
                    self.seen.acknowledged.setdefault(code, []).append(action)
                else:
                    self.seen.unexpected.append(f"{action} {code}: changed {sorted(changed)}")
            return

    def _check_503(self, response: httpx.Response) -> None:
        body = response.json()
        codes = [e.get("code") for e in body.get("errors", [])]
        if codes != [9023] or body.get("success") is not False:
            self.seen.bad_503s.append(f"envelope {body}")
        if not response.headers.get("retry-after", "").isdigit():
            self.seen.bad_503s.append(f"Retry-After {response.headers.get('retry-after')!r}")

    def run_thread(self, index: int) -> None:
        mine = self.codes[index :: self.threads]
        with httpx.Client(timeout=30) as client:
            for code in mine:
                for action in SCRIPT:
                    if self.stop.is_set():
                        return
                    self.step(client, index, action, code)
                    with self.seen.lock:
                        self.steps_done += 1

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.run_thread, args=(i,), daemon=True)
            for i in range(self.threads)
        ]
        for thread in threads:
            thread.start()
        return threads

    def wait_for_steps(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.steps_done < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.steps_done} of {count} steps done in time")
            time.sleep(0.02)
