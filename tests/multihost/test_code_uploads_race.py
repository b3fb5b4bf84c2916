"""Uploads of overlapping code lists to one series at once (spec §4 `POST
/v2/coupon/series/{id}/codes`, §1 no 500): each code lands once, every request answers, and
none waits on another in a cycle. In the order each client sent them, the inserts deadlocked
on PostgreSQL's unique key, and a code committed meanwhile broke the insert (500s)."""

from __future__ import annotations

import random
import threading

import httpx

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from tests.conftest import Backend, creds
from tests.e2e.conftest import Api
from tests.multihost.conftest import TOKEN_SECRET
from tests.reliability.live import threaded_server

UPLOADS = 30
ROUNDS = 8
CODES = [f"RACE-{n:03d}" for n in range(400)]


def test_overlapping_code_uploads_at_once_add_each_code_once_and_all_answer(
    postgresql_backend: Backend,
) -> None:
    # given rounds of thirty uploads of overlapping shuffled windows of the same codes, each
    # round to a new series
    postgresql_backend.reset()
    app = create_app(
        Settings(
            database_url=postgresql_backend.url, token_secret=TOKEN_SECRET, db_pool_size=UPLOADS
        ),
        db=postgresql_backend.db,
    )
    admin = creds("acme", "admin")
    rng = random.Random(7)
    with threaded_server(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        api = Api(http, admin)
        for _ in range(ROUNDS):
            _race(api, base_url, admin.username, admin.password, rng)


def _race(api: Api, base_url: str, username: str, password: str, rng: random.Random) -> None:
    windows = []
    for _ in range(UPLOADS):
        start = rng.randrange(0, 250)
        window = CODES[start : start + rng.randrange(100, 150)]
        rng.shuffle(window)
        windows.append(window)
    series_id = api.series()
    start_together = threading.Barrier(UPLOADS)
    answers: dict[int, httpx.Response] = {}

    def upload(index: int, codes: list[str]) -> None:
        with httpx.Client(base_url=base_url, timeout=60, auth=(username, password)) as own:
            start_together.wait()
            path = f"/v2/coupon/series/{series_id}/codes"
            answers[index] = own.post(path, json={"codes": codes})

    # when they are all sent at once
    threads = [threading.Thread(target=upload, args=(i, w)) for i, w in enumerate(windows)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    counts = api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]

    # then every upload answered 200, each code was added by exactly one of them, and the
    # others report it as a duplicate
    assert sorted(answers) == list(range(UPLOADS))
    refused = [a.text for a in answers.values() if a.status_code != 200]
    assert refused == []
    entities = [answers[i].json()["entity"] for i in range(UPLOADS)]
    distinct = {code for window in windows for code in window}
    assert sum(e["added"] for e in entities) == len(distinct) == counts["AVAILABLE"]
    for entity, window in zip(entities, windows, strict=True):
        assert entity["added"] + len(entity["duplicates"]) == len(window)
