"""A failover (spec §10, docs/deployment.md): the primary crashes, its streaming replica is
promoted and PgBouncer is pointed at it, while a `coupons serve` process keeps running and
clients keep revoking.

The replica is synchronous (each commit waits until it has it), so nothing acknowledged is
lost. While the primary is gone every answer is a 200 or a 9023 / 503 with `Retry-After`,
within a bound, and `GET /health` answers 503; once PgBouncer reaches the new primary the
same process serves writes again within seconds, a revoke retried with its `Idempotency-Key`
applies once, and everything committed before the failover is there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Credentials
from tests.e2e.conftest import Api
from tests.multihost.cluster import Cluster, pgbouncer_in_front
from tests.multihost.conftest import TOKEN_SECRET, ServiceDatabase
from tests.multihost.test_database_outage import health, wait_until
from tests.reliability.live import ServerProcess, wait_healthy

COUPONS = 150
THREADS = 3
PAUSE_S = 0.05  # between two revokes of one thread: light load
# PgBouncer's query_wait_timeout: how long a transaction waits for a server connection
# while the primary is gone before PgBouncer fails it (the docs suggest 5-10 s; shorter here,
# so the outage the test waits through is short too).
QUERY_WAIT_S = 2
# The longest any answer may take: the service tries a request twice, each try waiting up to
# PgBouncer's query_wait_timeout, with room for a loaded machine.
ANSWER_BOUND_S = 2 * QUERY_WAIT_S + 6.0
# From the crash to the promotion: a failover manager takes a few seconds to decide.
FAILOVER_DELAY_S = 2.0
# From PgBouncer pointed at the new primary to /health 200, and to writes acknowledged again.
RECOVERY_SECONDS = 5.0
WRITES_AFTER_RECOVERY = 10


@dataclass(frozen=True)
class Answer:
    """One request: when it was sent, how long its answer took, and what is wrong with it."""

    sent: float  # time.monotonic()
    took: float
    status: int  # 0: no HTTP answer (a timeout past ANSWER_BOUND_S, a refused connection)
    problem: str | None = None

    @property
    def answered(self) -> float:
        return self.sent + self.took


def problem_with(response: httpx.Response) -> str | None:
    """None for a 200 or a 503 with 9023 and `Retry-After`; otherwise what is wrong."""
    if response.status_code == 200:
        return None
    if response.status_code != 503:
        return f"HTTP {response.status_code} {response.text[:300]}"
    body = response.json()
    if [e.get("code") for e in body.get("errors", [])] != [9023] or body.get("success"):
        return f"503 envelope {body}"
    if not response.headers.get("retry-after", "").isdigit():
        return f"503 Retry-After {response.headers.get('retry-after')!r}"
    return None


def timed(send: Callable[[], httpx.Response]) -> tuple[Answer, httpx.Response | None]:
    started = time.monotonic()
    try:
        response = send()
    except httpx.HTTPError as error:
        return Answer(started, time.monotonic() - started, 0, f"no answer: {error!r}"), None
    took = time.monotonic() - started
    return Answer(started, took, response.status_code, problem_with(response)), response


@dataclass(frozen=True)
class Acknowledged:
    """A revoke's 200: when it came, after how many 503s, and what it reports revoked."""

    answered: float
    retries: int
    revoked: list[str]


@dataclass
class Revokes:
    """Threads that revoke coupons one at a time, each under its own `Idempotency-Key`, and
    send a 503'd revoke again with the same key until it is acknowledged (as
    `coupons.client` does). Every answer is recorded for the test to judge; one that is
    neither 200 nor 9023 / 503, or none within the bound, ends that coupon's attempts."""

    base_url: str
    creds: Credentials
    series_id: int
    codes: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)  # no new coupons
    give_up: threading.Event = field(default_factory=threading.Event)  # no more retries
    threads: list[threading.Thread] = field(default_factory=list)

    def revoke(self, client: httpx.Client, code: str) -> None:
        headers = {**self.creds.headers, "Idempotency-Key": f"failover-{code}"}
        body = {"couponSeriesId": self.series_id, "couponCodes": [code], "reason": "failover"}
        with self.lock:
            self.tried.add(code)
        retries = 0
        while not self.give_up.is_set():
            answer, response = timed(
                lambda: client.post("/v2/coupon/revoke", json=body, headers=headers)
            )
            with self.lock:
                self.answers.append(answer)
            if answer.problem is not None or response is None:
                return
            if response.status_code == 503:
                retries += 1
                time.sleep(0.1)
                continue
            entity = response.json()["entity"]
            with self.lock:
                self.acknowledged[code] = Acknowledged(
                    answer.answered,
                    retries,
                    [c["couponCode"].upper() for c in entity["revokedCoupons"]],
                )
            return

    def run_thread(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=ANSWER_BOUND_S) as client:
            for code in self.codes[index::THREADS]:
                if self.stop.is_set():
                    return
                self.revoke(client, code)
                time.sleep(PAUSE_S)

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=self.run_thread, args=(i,), daemon=True) for i in range(THREADS)
        ]
        for thread in self.threads:
            thread.start()

    def finish(self, *, give_up: bool) -> None:
        """Start no more coupons; let each thread see its current one acknowledged (or give
        up on it), and wait for them."""
        self.stop.set()
        if give_up:
            self.give_up.set()
        for thread in self.threads:
            thread.join(ANSWER_BOUND_S + 5)

    def acknowledged_since(self, since: float) -> int:
        with self.lock:
            return sum(1 for a in self.acknowledged.values() if a.answered > since)

    def answered_503_since(self, since: float) -> int:
        with self.lock:
            return sum(1 for a in self.answers if a.status == 503 and a.sent > since)

    def problems(self) -> list[str]:
        with self.lock:
            return [a.problem for a in self.answers if a.problem is not None]


@dataclass
class HealthWatch:
    """`GET /health` asked over and over from a thread, every answer recorded."""

    base_url: str
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=ANSWER_BOUND_S) as client:
            while not self.stop.is_set():
                answer, _ = timed(lambda: client.get("/health"))
                self.answers.append(answer)
                time.sleep(0.1)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(ANSWER_BOUND_S + 5)

    def saw(self, status: int, since: float) -> bool:
        return any(a.status == status and a.sent > since for a in list(self.answers))


@contextlib.contextmanager
def route(
    via: str, primary: Cluster, standby: Cluster, database: str
) -> Iterator[tuple[str, Callable[[], None]]]:
    """The URL the service is given, and what the failover manager does once the standby is
    promoted: point PgBouncer at it, or nothing (the service's URL names both hosts in
    libpq's form, and a new connection keeps the one that takes writes)."""
    if via == "pgbouncer":
        with pgbouncer_in_front(primary, query_wait_timeout=QUERY_WAIT_S) as bouncer:
            yield bouncer.url(database), lambda: bouncer.point_at(standby)
        return
    hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
    yield f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write", lambda: None


@pytest.mark.parametrize("via", ["pgbouncer", "several-hosts"])
def test_a_failover_to_a_promoted_replica_gives_503s_then_writes_go_to_the_new_primary(
    via: str,
    cluster: Cluster,
    service_database: ServiceDatabase,
    standby: Cluster,
    tmp_path: Path,
) -> None:
    # given a primary with a synchronous streaming replica, and a `coupons serve` process
    # reaching the primary through PgBouncer, or through a URL that names both hosts
    primary = cluster
    with route(via, primary, standby, service_database.name) as (url, repoint):
        server = ServerProcess(url, tmp_path / "server.log")
        env = {"COUPONS_TOKEN_SECRET": TOKEN_SECRET, "COUPONS_LOG_LEVEL": "WARNING"}
        server.start(env, wait=False)
        watch = HealthWatch(server.base_url)
        load: Revokes | None = None
        failed = True
        try:
            wait_healthy(server.base_url, timeout=60)
            with httpx.Client(base_url=server.base_url, timeout=ANSWER_BOUND_S) as http:
                api = Api(http, service_database.admin)
                series_id = api.series()
                customer_id = api.customer("+1 555 0110")
                issued = api.issue_many(series_id, customer_id, COUPONS + 1)
                ids = {c["couponCode"].upper(): int(c["couponId"]) for c in issued}
                spare, *codes = ids

                # when three clients revoke coupons, each under its own Idempotency-Key
                load = Revokes(server.base_url, service_database.admin, series_id, codes)
                load.start()
                watch.start()
                wait_until(lambda: load.acknowledged_since(0) >= 20, 30, "revokes before")

                # and the primary crashes
                primary.stop("immediate")
                crashed_at = time.monotonic()
                key = {"Idempotency-Key": "failover-spare"}
                body = {"couponSeriesId": series_id, "couponCodes": [spare], "reason": "failover"}
                during, during_response = timed(lambda: api.revoke_with(body, key))
                wait_until(lambda: watch.saw(503, crashed_at), ANSWER_BOUND_S, "/health 503")
                # (or anything else, judged below)
                wait_until(
                    lambda: load.answered_503_since(crashed_at) > 0 or bool(load.problems()),
                    ANSWER_BOUND_S,
                    "revokes answered while the primary is gone",
                )
                # and seconds later the replica is promoted, while PgBouncer still sends
                # every server connection to the old primary's address
                time.sleep(max(0.0, crashed_at + FAILOVER_DELAY_S - time.monotonic()))
                promoting_at = time.monotonic()
                standby.promote()

                # and the failover manager points PgBouncer at the new primary (through
                # several hosts, the service's next connection finds it by itself)
                repointed_at = time.monotonic()
                repoint()
                health_back_in = wait_until(
                    lambda: health(server.base_url).status_code == 200, RECOVERY_SECONDS, "health"
                )
                writes_back_in = wait_until(
                    lambda: load.acknowledged_since(repointed_at) >= WRITES_AFTER_RECOVERY,
                    RECOVERY_SECONDS,
                    "revokes acknowledged on the new primary",
                )

                # and the revoke that got a 503 is sent again with its key, twice
                retried = api.revoke_with(body, key)
                again = api.revoke_with(body, key)
                load.finish(give_up=False)
                # (read back through the service, which only the new primary can answer now)
                seen = {code: api.coupon(ids[code]) for code in ids}
            alive = server.process is not None and server.process.poll() is None
            failed = False
        finally:
            watch.finish()
            if load is not None:
                load.finish(give_up=failed)
            server.stop()

    # then no answer was a 500 or anything but a 200 or a 9023 / 503 with Retry-After, and
    # each came within the bound (none hung)
    answers = load.answers + watch.answers
    assert load.problems() == []
    assert [a.problem for a in watch.answers if a.problem] == []
    assert max(a.took for a in answers) < ANSWER_BOUND_S
    # and the failover really hit requests: revokes got 503s and were retried with their key
    assert any(a.retries > 0 for a in load.acknowledged.values())
    # and /health answered 503 while no primary was there, every time, and 200 again after
    gone = [a for a in watch.answers if crashed_at < a.sent and a.answered < promoting_at]
    assert gone, "no /health answer while the primary was gone"
    assert {a.status for a in gone} == {503}
    assert watch.answers[-1].status == 200
    # and the revoke sent while it was gone got a 9023 / 503 with Retry-After, in the bound
    assert during_response is not None and during.problem is None, during
    assert during.status == 503, during_response.text
    # and the same process served /health and writes again within seconds, no restart
    assert alive
    assert health_back_in < RECOVERY_SECONDS, health_back_in
    assert writes_back_in < RECOVERY_SECONDS, writes_back_in
    # and the 503'd revoke, retried with its key, applied once; once more, it replays
    assert retried.status_code == 200, retried.text
    assert [c["couponCode"].upper() for c in retried.json()["entity"]["revokedCoupons"]] == [spare]
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["entity"] == retried.json()["entity"]
    # and every revoke acknowledged reports its own coupon, and every coupon a client
    # started on was acknowledged in the end (its retries with the key went on until then)
    assert all(a.revoked == [code] for code, a in load.acknowledged.items())
    assert load.tried == set(load.acknowledged)
    before = {code for code, a in load.acknowledged.items() if a.answered < crashed_at}
    assert len(before) >= 20

    # and on the new primary, through the API: every coupon revoked, those acknowledged
    # before the crash among them, was revoked exactly once, and no other coupon at all
    revoked = {spare, *load.acknowledged}
    assert before <= revoked
    for code, coupon in seen.items():
        history = [h["action"] for h in coupon["history"]]
        if code in revoked:
            assert (coupon["state"], history) == ("REVOKED", ["ISSUE", "REVOKE"]), code
        else:
            assert (coupon["state"], history) == ("ISSUED", ["ISSUE"]), code
    # and so it is in the new primary's tables, read directly
    assert standby.query("SELECT pg_is_in_recovery()") == [(False,)]
    rows = standby.query(
        "SELECT c.code, c.state, count(*) FILTER (WHERE h.action = 'REVOKE'), count(*) "
        "FROM coupons c JOIN coupon_history h ON h.coupon_id = c.id GROUP BY c.code, c.state",
        service_database.name,
    )
    stored = {
        str(code).upper(): (state, revokes, entries) for code, state, revokes, entries in rows
    }
    assert stored == {
        code: ("REVOKED", 1, 2) if code in revoked else ("ISSUED", 0, 1) for code in ids
    }
