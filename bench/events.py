"""Events benchmark: codes50 revoke throughput with webhook delivery on, against off.

Off: `coupons serve --no-worker`, nothing delivered. On: `coupons serve` as it starts by
default, its in-process delivery worker pushing every `coupon.revoked` event to one
subscription whose receiver (a threaded HTTP server in this process, on 127.0.0.1) checks each
batch's signature and answers 204. Both modes write the same outbox rows: they are the coupon
history, kept for the audit trail whether anyone subscribes or not.

Rounds alternate off/on (ABBA: off, on, on, off, ...) with a fresh server each, over disjoint
ISSUED codes of the same database. Before an "on" round's clock starts, the worker has caught
up with everything revoked earlier, so a round delivers its own events only. After the last
round the receiver must hold every event revoked in the run (none lost). Prints one line:

    RESULT {"backend", "workload", "scale", "events_off_codes_per_s", "events_on_codes_per_s",
            "ratio", "p50_ms_off", "p50_ms_on", "p99_ms_on", "events_delivered",
            "delivery_p50_ms", "delivery_p99_ms"}

    python -m bench.events --backends sqlite,postgresql --scale 1m --duration 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench import load
from bench.database import chosen_backends, job_counts, ready_database
from bench.http_side import http_connection
from bench.report import save_results
from bench.server import HOST, Server, warm_up
from bench.timing import Side, combine, run_side
from bench.workloads import make_jobs
from coupons.services.webhooks import verify

WORKLOAD = "codes50"
CATCH_UP_SECONDS = 120


class Receiver:
    """A webhook receiver on 127.0.0.1: verifies signatures, keeps event ids and lags."""

    def __init__(self) -> None:
        self.secret = ""
        self.revoked: set[int] = set()
        self.lags_ms: list[float] = []
        self.bad_signatures = 0
        self.batches = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = verify(receiver.secret, self.headers.get("X-Coupons-Signature", ""), body)
                receiver.take(json.loads(body)["events"], signed)
                self.send_response(204 if signed else 401)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, events: list[dict[str, Any]], signed: bool) -> None:
        arrived = time.time()
        with self._lock:
            self.batches += 1
            if not signed:
                self.bad_signatures += 1
                return
            for event in events:
                if event["type"] == "coupon.revoked":
                    self.revoked.add(int(event["id"]))
                    at = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
                    self.lags_ms.append((arrived - at) * 1000)

    def count(self) -> int:
        with self._lock:
            return len(self.revoked)

    def wait_for(self, expected: int, timeout: float) -> float:
        """Seconds until `expected` revoke events have arrived; raises when they do not."""
        began = time.monotonic()
        while self.count() < expected:
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"receiver has {self.count()} of {expected} events")
            time.sleep(0.05)
        return time.monotonic() - began

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _cpu_seconds(server: Server) -> float:
    """User and system CPU of the server's supervisor process so far."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def measure(
    backend: str,
    scale: str,
    *,
    connections: int,
    workers: int,
    duration_s: float,
    rounds: int,
    rng: random.Random,
    pg_admin_url: str,
) -> dict[str, Any]:
    layout = ready_database(backend, scale, duration_s, pg_admin_url)
    per_mode = job_counts(layout, duration_s)[WORKLOAD] + 1
    off_jobs, on_jobs = make_jobs(layout, WORKLOAD, per_mode, rng)
    # A coupon_admin client of the benchmark org, to subscribe (the load's client cannot).
    username = f"bench-events-{time.time_ns()}"
    secret = load._cli(
        "client", "create", "--org", load.ORG, "--username", username,
        "--groups", "default,coupon_admin", url=layout.url,
    )  # fmt: skip
    admin = (username, secret)
    auth = (layout.username, layout.secret)
    sides: dict[str, list[Side]] = {"off": [], "on": []}
    lags: list[float] = []
    # CPU of the serving process that is not a worker: where the delivery worker runs.
    supervisor_cpu = {"off": 0.0, "on": 0.0}
    revoked = 0
    log_path = load.DATA_DIR / f"server-events-{backend}-{scale}.log"
    with Receiver() as receiver:
        webhook_id = None
        try:
            for r in range(rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    extra = ["--no-worker"] if mode == "off" else []
                    with Server(layout.url, workers, log_path, extra) as server:
                        if webhook_id is None:
                            webhook_id = _subscribe(server.base_url, admin, receiver)
                        jobs = (off_jobs if mode == "off" else on_jobs)[r::rounds]
                        warm_up(server, layout, jobs[0], connections)
                        if mode == "on":
                            # Earlier rounds' events first, so this round delivers its own.
                            receiver.wait_for(revoked, CATCH_UP_SECONDS)
                            receiver.lags_ms.clear()
                        cpu_before = _cpu_seconds(server)
                        side = run_side(
                            http_connection, (server.base_url, auth), jobs, connections,
                            duration_s / rounds,
                        )  # fmt: skip
                        sides[mode].append(side)
                        revoked += side.codes
                        supervisor_cpu[mode] += _cpu_seconds(server) - cpu_before
                        note = f"{side.codes / side.elapsed_s:.0f} codes/s"
                        if mode == "on":
                            drain_s = receiver.wait_for(revoked, CATCH_UP_SECONDS)
                            lags += receiver.lags_ms
                            note += f", every event delivered {drain_s:.2f}s after the round"
                        print(f"[events] {backend}/{scale} round {r} {mode}: {note}", flush=True)
            # The last "off" round's events go out once a worker runs again; then unsubscribe.
            with Server(layout.url, workers, log_path) as server:
                receiver.wait_for(revoked, CATCH_UP_SECONDS)
                _unsubscribe(server.base_url, admin, webhook_id)
                webhook_id = None
        finally:
            if webhook_id is not None:
                with Server(layout.url, 1, log_path, ["--no-worker"]) as server:
                    _unsubscribe(server.base_url, admin, webhook_id)
    off, on = combine(sides["off"]), combine(sides["on"])
    if off.errors or on.errors or receiver.bad_signatures:
        raise RuntimeError(f"errors: off {off.errors}, on {on.errors}, bad signatures "
                           f"{receiver.bad_signatures}")  # fmt: skip
    result = {
        "backend": backend,
        "workload": WORKLOAD,
        "scale": scale,
        "events_off_codes_per_s": round(off.codes_per_s, 1),
        "events_on_codes_per_s": round(on.codes_per_s, 1),
        "ratio": round(on.codes_per_s / off.codes_per_s, 3) if off.codes_per_s else 0,
        "p50_ms_off": round(off.percentile(0.5), 2),
        "p50_ms_on": round(on.percentile(0.5), 2),
        "p99_ms_on": round(on.percentile(0.99), 2),
        "events_delivered": receiver.count(),
        "codes_revoked": revoked,
        "delivery_p50_ms": round(_percentile(lags, 0.5), 1),
        "delivery_p99_ms": round(_percentile(lags, 0.99), 1),
        # Share of one core used by the serving process beside its workers, where the worker
        # runs; "off" shows what that process costs with no worker at all.
        "delivery_cpu_share": round(supervisor_cpu["on"] / max(on.elapsed_s, 1e-9), 3),
        "supervisor_cpu_share_off": round(supervisor_cpu["off"] / max(off.elapsed_s, 1e-9), 3),
        "rounds": rounds,
        "duration_s": duration_s,
    }
    return result


def _subscribe(base_url: str, admin: tuple[str, str], receiver: Receiver) -> int:
    response = httpx.post(
        f"{base_url}/v2/webhooks",
        json={"url": receiver.url, "events": ["coupon.revoked"]},
        auth=admin,
        timeout=30,
    )
    response.raise_for_status()
    entity = response.json()["entity"]
    receiver.secret = entity["secret"]
    return int(entity["id"])


def _unsubscribe(base_url: str, admin: tuple[str, str], webhook_id: int | None) -> None:
    """Leave no subscription behind: later benchmarks on this database run a worker too."""
    if webhook_id is not None:
        response = httpx.delete(f"{base_url}/v2/webhooks/{webhook_id}", auth=admin, timeout=30)
        response.raise_for_status()


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scale", default="1m")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per mode")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode")
    parser.add_argument("--pg-admin-url", default=load.DEFAULT_PG_ADMIN)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    results = []
    for backend in chosen_backends(args.backends, args.pg_admin_url):
        result = measure(
            backend,
            args.scale,
            connections=args.connections,
            workers=args.workers,
            duration_s=args.duration,
            rounds=args.rounds,
            rng=rng,
            pg_admin_url=args.pg_admin_url,
        )
        print("RESULT " + json.dumps(result), flush=True)
        results.append(result)
    save_results("events", results)
    return results


if __name__ == "__main__":
    main()
