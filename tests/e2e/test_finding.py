"""Finding things (spec §7) through the HTTP API, on both stores: lists with cursors, code
search, the revocations trail, CSV exports, and org scoping."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from coupons.entrypoints.http import finding_routes
from tests.conftest import Backend, Credentials
from tests.e2e.conftest import Api, error_code


def walk(api: Api, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a list, following nextCursor."""
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        entity = api.ok(api.get(path, params=query))
        rows.extend(entity[key])
        after = entity["nextCursor"]
        if after is None:
            return rows


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# --- series and their coupons ----------------------------------------------------------------


def test_series_are_listed_newest_first_with_counts_per_state(api: Api) -> None:
    # Given three series, one with codes in several states
    first = api.series(codes=["L-1", "L-2", "L-3"])
    second = api.series()
    third = api.series(codes=["L-4"])
    customer = api.customer("555-0300")
    api.issue(first, customer)
    api.ok(api.revoke({"couponSeriesId": first, "couponCodes": ["L-3"]}))

    # When the list is walked two at a time
    page = api.ok(api.get("/v2/coupon/series", params={"limit": 2}))
    rest = api.ok(api.get("/v2/coupon/series", params={"limit": 2, "after": page["nextCursor"]}))

    # Then the newest come first, each with its counts
    assert [s["id"] for s in page["series"]] == [third, second]
    assert [s["id"] for s in rest["series"]] == [first]
    assert rest["nextCursor"] is None
    assert rest["series"][0]["counts"] == {
        "AVAILABLE": 1, "ISSUED": 1, "REDEEMED": 0, "REVOKED": 1
    }  # fmt: skip
    assert page["series"][1]["counts"]["AVAILABLE"] == 0


def test_a_series_coupons_page_in_id_order_and_filter_by_state(api: Api) -> None:
    codes = [f"P-{i:02}" for i in range(7)]
    series_id = api.series(codes=codes)
    customer = api.customer("555-0301")
    issued = [c["couponCode"] for c in api.issue_many(series_id, customer, 3)]
    path = f"/v2/coupon/series/{series_id}/coupons"

    everything = walk(api, path, "coupons", limit=3)
    only_issued = walk(api, path, "coupons", state="issued", limit=2)

    assert [c["couponCode"] for c in everything] == codes
    assert [c["couponId"] for c in everything] == sorted(c["couponId"] for c in everything)
    assert set(everything[0]) == {"couponId", "couponCode", "seriesId", "state", "issuedToUserId"}
    assert sorted(c["couponCode"] for c in only_issued) == sorted(issued)
    assert {c["state"] for c in only_issued} == {"ISSUED"}


def test_paging_while_another_thread_inserts_returns_every_pre_existing_row_once(
    api: Api, client: TestClient, acme_admin: Credentials
) -> None:
    # Given a series of 120 codes
    before = [f"C-{i:03}" for i in range(120)]
    series_id = api.series(codes=before)
    stop = threading.Event()
    inserted: list[str] = []

    def insert_more() -> None:
        writer = Api(TestClient(client.app), acme_admin)
        n = 0
        while not stop.is_set() and n < 60:
            batch = [f"N-{n + i:03}" for i in range(5)]
            writer.ok(writer.post(f"/v2/coupon/series/{series_id}/codes", {"codes": batch}))
            inserted.extend(batch)
            n += 5

    # When it is walked 7 at a time while another thread keeps adding codes
    thread = threading.Thread(target=insert_more)
    thread.start()
    try:
        seen = walk(api, f"/v2/coupon/series/{series_id}/coupons", "coupons", limit=7)
    finally:
        stop.set()
        thread.join()

    # Then every code that existed before comes exactly once; new ones at most once
    codes = [c["couponCode"] for c in seen]
    assert sorted(c for c in codes if c.startswith("C-")) == before
    assert len(codes) == len(set(codes))
    assert set(codes) - set(before) <= set(inserted)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": "bm90IGEgY3Vyc29y"}, "after"),
        ({"state": "LOST"}, "state"),
    ],
)
def test_bad_paging_or_filters_are_9002_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    series_id = api.series(codes=["B-1"])

    response = api.get(f"/v2/coupon/series/{series_id}/coupons", params=params)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith(field)


def test_a_cursor_of_another_list_is_refused(api: Api) -> None:
    series_id = api.series(codes=["X-1", "X-2"])
    page = api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons", params={"limit": 1}))

    response = api.get("/v2/coupon/series", params={"after": page["nextCursor"]})

    assert error_code(response) == 9002


def test_a_cursor_of_the_same_list_with_other_filters_is_refused(api: Api, agent: Api) -> None:
    # given two series, a revoke by each of two actors, and a first page of each list
    first = api.series(codes=["FFF-1", "FFF-2", "FFF-3", "FFF-4"])
    second = api.series(codes=["GGG-1", "GGG-2", "GGG-3"])
    api.ok(api.revoke({"couponSeriesId": first, "couponCodes": ["FFF-1"]}))
    agent.ok(agent.revoke({"couponSeriesId": second, "couponCodes": ["GGG-1"]}))
    api.ok(api.revoke({"couponSeriesId": first, "couponCodes": ["FFF-2"]}))

    def cursor(path: str, **params: Any) -> str:
        found = api.ok(api.get(path, params={"limit": 1, **params}))["nextCursor"]
        assert found is not None
        return str(found)

    coupons = f"/v2/coupon/series/{first}/coupons"
    search = "/v2/coupon/search"
    trail = "/v2/coupon/revocations"
    reused = [
        # another series, another state filter, none
        (f"/v2/coupon/series/{second}/coupons", cursor(coupons), {}),
        (coupons, cursor(coupons, state="AVAILABLE"), {"state": "REVOKED"}),
        (coupons, cursor(coupons, state="AVAILABLE"), {}),
        # another search, or a prefix search's cursor on an exact one
        (search, cursor(search, codePrefix="FFF"), {"codePrefix": "GGG"}),
        (search, cursor(search, codePrefix="FFF"), {"code": "FFF-2"}),
        # the trail of another actor, or of everyone
        (trail, cursor(trail, actor=api.creds.username), {"actor": "acme-agent"}),
        (trail, cursor(trail, actor=api.creds.username), {}),
    ]

    # when each cursor is passed to the same list read with other filters, then it is 9002
    for path, after, params in reused:
        response = api.get(path, params={**params, "after": after})
        assert (response.status_code, error_code(response)) == (400, 9002), (path, params)
        assert response.json()["errors"][0]["message"].startswith("after")
    # and with its own filters (spelled differently) it reads on
    again = api.get(
        coupons, params={"state": "available", "after": cursor(coupons, state="AVAILABLE")}
    )
    assert [c["couponCode"] for c in api.ok(again)["coupons"]] == ["FFF-4"]


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00"]
)
@pytest.mark.parametrize("path", ["/v2/coupon/revocations", "/v2/coupon/revocations.csv"])
def test_a_trail_cursor_holding_a_moment_past_the_calendars_ends_is_9002(
    api: Api, moment: str, path: str
) -> None:
    raw = json.dumps(["revocations", moment, 1]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    response = api.get(path, params={"after": cursor})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith("after")


def test_a_search_cursor_holding_a_lone_surrogate_is_9002(api: Api) -> None:
    cursor = base64.urlsafe_b64encode(b'["search", "\\ud800", 1]').decode().rstrip("=")

    response = api.get("/v2/coupon/search", params={"codePrefix": "dup", "after": cursor})

    assert (response.status_code, error_code(response)) == (400, 9002)


def test_another_orgs_series_and_its_coupons_are_absent(api: Api, other: Api) -> None:
    theirs = other.series(codes=["THEIRS-1"])

    response = api.get(f"/v2/coupon/series/{theirs}/coupons")
    listed = api.ok(api.get("/v2/coupon/series"))

    assert (response.status_code, error_code(response)) == (404, 707)
    assert theirs not in [s["id"] for s in listed["series"]]


# --- search ----------------------------------------------------------------------------------


def test_search_finds_a_code_in_every_series_of_the_org_and_never_in_another_org(
    api: Api, other: Api
) -> None:
    # Given the same code in two of our series, and in another org
    ours = [api.series(codes=["Spring-2026", "Spring-2027"]), api.series(codes=["SPRING-2026"])]
    other.series(codes=["spring-2026"])

    # When we search by code in another case
    found = api.ok(api.get("/v2/coupon/search", params={"code": "  sPrInG-2026 "}))

    # Then both of ours come back, as stored, and nothing of the other org
    assert sorted(c["seriesId"] for c in found["coupons"]) == sorted(ours)
    assert sorted(c["couponCode"] for c in found["coupons"]) == ["SPRING-2026", "Spring-2026"]
    assert found["nextCursor"] is None


def test_prefix_search_pages_in_code_order(api: Api, other: Api) -> None:
    api.series(codes=["abc-3", "ABC-1", "abd-1", "ab"])
    api.series(codes=["Abc-2"])
    other.series(codes=["abc-0"])

    found = walk(api, "/v2/coupon/search", "coupons", codePrefix="ABC", limit=2)

    assert [c["couponCode"] for c in found] == ["ABC-1", "Abc-2", "abc-3"]


@pytest.mark.parametrize(
    "params",
    [{"codePrefix": "ab"}, {"codePrefix": "  a "}, {}, {"code": "x", "codePrefix": "abc"}],
)
def test_a_prefix_under_3_characters_or_no_single_criterion_is_9002(
    api: Api, params: dict[str, str]
) -> None:
    response = api.get("/v2/coupon/search", params=params)

    assert (response.status_code, error_code(response)) == (400, 9002)


# --- the revocations trail -------------------------------------------------------------------


def test_a_revoke_reusing_an_earlier_revokes_request_id_gets_its_own_row_and_id(
    api: Api, agent: Api
) -> None:
    # given a revoke sent with a request id of the client's choosing
    series_id = api.series(codes=["RID-1", "RID-2", "RID-3"])
    first = api.revoke_with(
        {"couponSeriesId": series_id, "couponCodes": ["RID-1"], "reason": "first"},
        {"X-Request-Id": "shared-id-1"},
    )
    assert first.headers["x-request-id"] == "shared-id-1"

    # when another client sends a revoke with the same id (and an idempotency key), and the
    # first client sends one that revokes nothing
    key = {"X-Request-Id": "shared-id-1", "Idempotency-Key": "rid-second"}
    body = {"couponSeriesId": series_id, "couponCodes": ["RID-2"], "reason": "second"}
    second = agent.revoke_with(body, key)
    replay = agent.revoke_with(body, key)
    nothing = api.revoke_with(
        {"couponSeriesId": series_id, "couponCodes": ["RID-1"]}, {"X-Request-Id": "shared-id-1"}
    )

    # then the second is done and answered under a fresh id, which its replay repeats
    assert agent.ok(second)["revokedCoupons"][0]["couponCode"] == "RID-2"
    fresh = second.headers["x-request-id"]
    assert fresh != "shared-id-1" and replay.headers["x-request-id"] == fresh
    assert api.ok(nothing)["failedCount"] == 1
    # and the trail has one row per call, each with its own actor, reason and count
    rows = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    assert sorted((r["requestId"], r["actor"], r["reason"], r["revokedCount"]) for r in rows) == [
        (fresh, agent.creds.username, "second", 1),
        ("shared-id-1", api.creds.username, "first", 1),
    ]
    # and undoing by the fresh id reinstates the second call's coupon only
    undone = api.ok(api.post("/v2/coupon/reinstate", {"revokeRequestId": fresh}))
    assert [c["couponCode"] for c in undone["reinstatedCoupons"]] == ["RID-2"]
    coupons = api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons"))["coupons"]
    assert {c["couponCode"]: c["state"] for c in coupons} == {
        "RID-1": "REVOKED",
        "RID-2": "AVAILABLE",
        "RID-3": "AVAILABLE",
    }


def test_a_clients_request_id_in_the_job_ids_namespace_is_replaced(api: Api) -> None:
    series_id = api.series(codes=["JNS-1"])

    response = api.revoke_with(
        {"couponSeriesId": series_id, "couponCodes": ["JNS-1"]},
        {"X-Request-Id": "job_0123456789abcdef01234567"},
    )

    made = response.headers["x-request-id"]
    assert api.ok(response)["revokedCoupons"] and not made.startswith("job_")
    [row] = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    assert row["requestId"] == made and row["jobId"] is None


def test_a_revoke_appears_in_the_trail_and_its_reinstated_count_follows_an_undo(
    api: Api, agent: Api
) -> None:
    # Given a revoke of three codes by the agent, under a known request id
    series_id = api.series(codes=["T-1", "T-2", "T-3", "T-4"])
    body = {"couponSeriesId": series_id, "couponCodes": ["T-1", "T-2", "T-3"], "reason": "leak"}
    agent.ok(agent.post("/v2/coupon/revoke", body, headers={"X-Request-Id": "rev-trail-1"}))

    # Then the trail shows one row for it
    (row,) = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    assert row["requestId"] == "rev-trail-1"
    assert (row["actor"], row["reason"]) == ("acme-agent", "leak")
    assert (row["revokedCount"], row["reinstatedCount"]) == (3, 0)
    assert row["at"].endswith("Z")

    # When one code is reinstated by code, then the rest by the revoke's request id
    api.ok(api.post("/v2/coupon/reinstate", {"couponSeriesId": series_id, "couponCodes": ["T-1"]}))
    one = api.ok(api.get("/v2/coupon/revocations"))["revocations"][0]
    api.ok(api.post("/v2/coupon/reinstate", {"revokeRequestId": "rev-trail-1"}))
    all_back = api.ok(api.get("/v2/coupon/revocations"))["revocations"][0]

    # Then its reinstated count follows
    assert one["reinstatedCount"] == 1
    assert all_back["reinstatedCount"] == 3


def test_only_revokes_that_revoked_something_and_were_not_dry_runs_are_in_the_trail(
    api: Api, other: Api
) -> None:
    series_id = api.series(codes=["D-1"])
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["D-1"]}, dryRun="true"))
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["NOPE"]}))
    theirs = other.series(codes=["O-1"])
    other.ok(other.revoke({"couponSeriesId": theirs, "couponCodes": ["O-1"]}))

    assert api.ok(api.get("/v2/coupon/revocations"))["revocations"] == []
    assert len(other.ok(other.get("/v2/coupon/revocations"))["revocations"]) == 1


def test_the_trail_is_newest_first_and_filters_by_actor_and_time(api: Api, agent: Api) -> None:
    series_id = api.series(codes=[f"F-{i}" for i in range(5)])
    for i, who in enumerate([api, agent, api, agent, agent]):
        who.ok(who.revoke({"couponSeriesId": series_id, "couponCodes": [f"F-{i}"]}))

    everything = walk(api, "/v2/coupon/revocations", "revocations", limit=2)
    agents = walk(api, "/v2/coupon/revocations", "revocations", actor="acme-agent", limit=2)
    future = api.ok(api.get("/v2/coupon/revocations", params={"since": "2999-01-01"}))
    today = everything[0]["at"][:10]
    until_today = api.ok(api.get("/v2/coupon/revocations", params={"until": today}))

    ats = [(r["at"], r["requestId"]) for r in everything]
    assert len(everything) == 5 and ats == sorted(ats, reverse=True)
    assert [r["actor"] for r in agents] == ["acme-agent"] * 3
    assert future["revocations"] == []
    assert len(until_today["revocations"]) == 5  # a bare date includes that whole day


def test_walking_the_trail_while_others_revoke_returns_every_earlier_row_once(
    api: Api, client: TestClient, acme_agent: Credentials
) -> None:
    # Given twelve revokes already in the trail
    series_id = api.series(codes=[f"W-{i:02}" for i in range(30)])
    for i in range(12):
        api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [f"W-{i:02}"]}))
    earlier = {r["requestId"] for r in api.ok(api.get("/v2/coupon/revocations"))["revocations"]}
    stop = threading.Event()

    def revoke_more() -> None:
        agent = Api(TestClient(client.app), acme_agent)
        for i in range(12, 30):
            if stop.is_set():
                return
            body = {"couponSeriesId": series_id, "couponCodes": [f"W-{i:02}"]}
            agent.ok(agent.revoke(body))

    # When it is walked two at a time while another client keeps revoking
    thread = threading.Thread(target=revoke_more)
    thread.start()
    try:
        seen = [r["requestId"] for r in walk(api, "/v2/coupon/revocations", "revocations", limit=2)]
    finally:
        stop.set()
        thread.join()

    # Then every earlier row comes exactly once
    assert len(seen) == len(set(seen))
    assert earlier <= set(seen)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
        # spellings Python reads but not as they mean: a bare date read as its midnight (so
        # `until` left out the day it names), `+01:00` read as a time, any separator taken
        ({"until": "20260131"}, "until"),
        ({"until": "2026W053"}, "until"),
        ({"until": "2026-01-31+01:00"}, "until"),
        ({"since": "2026-01-01x10:00"}, "since"),
        ({"since": "2026-01-01T10"}, "since"),
    ],
)
def test_bad_trail_filters_are_9002(api: Api, params: dict[str, str], field: str) -> None:
    response = api.get("/v2/coupon/revocations", params=params)
    export = api.get("/v2/coupon/revocations.csv", params=params)

    assert error_code(response) == 9002
    assert response.json()["errors"][0]["message"].startswith(field)
    assert error_code(export) == 9002


@pytest.mark.parametrize(
    ("params", "finds"),
    [
        # Past the calendar's ends once a bare date's whole day or a UTC offset is counted:
        # an open bound on that side, or one no row meets
        ({"until": "9999-12-31"}, True),
        ({"since": "0001-01-01T00:00:00+14:00"}, True),
        ({"until": "9999-12-31T23:59:59-14:00"}, True),
        ({"since": "9999-12-31T23:59:59-14:00"}, False),
        ({"until": "0001-01-01T00:00:00+14:00"}, False),
    ],
)
def test_trail_bounds_past_the_calendars_ends_are_open_or_meet_nothing(
    api: Api, params: dict[str, str], finds: bool
) -> None:
    # given a revoke in the trail
    code = "CAL-1"
    api.ok(api.post("/v2/coupon/revoke", {"couponSeriesId": api.series(codes=[code]),
                                          "couponCodes": [code]}))  # fmt: skip

    # when the trail is read with a bound past the calendar's end
    response = api.get("/v2/coupon/revocations", params=params)
    export = api.get("/v2/coupon/revocations.csv", params=params)

    # then the row is found exactly when the bound leaves its time inside
    found = api.ok(response)["revocations"]
    assert len(found) == (1 if finds else 0)
    assert export.status_code == 200 and len(export.text.splitlines()) == 1 + len(found)


def test_trail_bounds_finer_than_a_microsecond_keep_since_inclusive_and_until_exclusive(
    api: Api,
) -> None:
    # given a revoke in the trail, at a time kept to the microsecond
    code = "NANO-1"
    api.ok(api.post("/v2/coupon/revoke", {"couponSeriesId": api.series(codes=[code]),
                                          "couponCodes": [code]}))  # fmt: skip
    [row] = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    later = row["at"].replace("Z", "1Z")  # 100 ns after the row

    # when reading from and until a time 100 ns after it
    since = api.ok(api.get("/v2/coupon/revocations", params={"since": later}))["revocations"]
    until = api.ok(api.get("/v2/coupon/revocations", params={"until": later}))["revocations"]

    # then the row is before both: not from it on, but before it
    assert since == [] and until == [row]


# --- access ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v2/coupon/series",
        "/v2/coupon/search?code=x",
        "/v2/coupon/revocations",
        "/v2/coupon/revocations.csv",
    ],
)
def test_reads_need_credentials_and_read_only_clients_may_read(
    viewer: Api, client: TestClient, path: str
) -> None:
    assert viewer.get(path).status_code == 200
    anonymous = client.get(path)
    assert (anonymous.status_code, error_code(anonymous)) == (401, 9010)


# --- CSV exports -----------------------------------------------------------------------------

# Codes are trimmed when added: tab and CR come in through a reason (further down).
FORMULAS = ["=1+1", "+SUM(A1)", "-2", "@cmd", 'plain,"quoted"']


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("text/csv", True),
        ("text/csv, */*", True),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.5, application/json", False),
        ("application/json, text/csv", False),
        ("text/csv;q=0", False),
        ("*/*", False),
    ],
)
def test_accept_quality_values_choose_between_the_export_and_the_envelope(
    api: Api, accept: str, csv_wanted: bool
) -> None:
    series_id = api.series(codes=["Q-1"])

    response = api.get(f"/v2/coupon/series/{series_id}/coupons", headers={"Accept": accept})

    assert response.status_code == 200
    if csv_wanted:
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert parse_csv(response.text)[1][1] == "Q-1"
    else:
        assert response.json()["entity"]["coupons"][0]["couponCode"] == "Q-1"


def test_a_series_exports_as_csv_with_formula_cells_neutralised(api: Api) -> None:
    series_id = api.series(codes=FORMULAS)

    by_path = api.get(f"/v2/coupon/series/{series_id}/coupons.csv")
    by_accept = api.get(f"/v2/coupon/series/{series_id}/coupons", headers={"Accept": "text/csv"})

    assert by_path.status_code == 200
    assert by_path.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_path.content == by_accept.content
    rows = parse_csv(by_path.text)
    assert rows[0] == ["couponId", "couponCode", "seriesId", "state", "issuedToUserId"]
    assert [r[1] for r in rows[1:]] == [
        "'=1+1", "'+SUM(A1)", "'-2", "'@cmd", "plain,\"quoted\""
    ]  # fmt: skip
    assert {r[3] for r in rows[1:]} == {"AVAILABLE"}


@pytest.mark.parametrize(
    "query", [{"after": "abc"}, {"limit": "1"}, {"since": "2030-01-01"}, {"actor": "x"}], ids=str
)
def test_a_coupon_history_export_refuses_the_paging_and_filters_it_does_not_take(
    api: Api, query: dict[str, str]
) -> None:
    # the other exports take these; silently ignored here, a client would take the whole
    # history for what it asked
    coupon = api.issue(api.series(codes=["HQ-1"]), api.customer("555-0303"))

    answer = api.get(f"/v2/coupon/{coupon['couponId']}.csv", params=query)

    assert (answer.status_code, error_code(answer)) == (400, 9002)
    assert answer.json()["errors"][0]["message"].startswith(f"{next(iter(query))}:")
    assert api.get(f"/v2/coupon/{coupon['couponId']}.csv").status_code == 200


def test_customer_coupons_revocations_and_history_export_as_csv(api: Api) -> None:
    # Given a customer whose coupon was revoked with a formula as the reason
    series_id = api.series(codes=["H-1", "H-2"])
    customer = api.customer("555-0302")
    issued = api.issue(series_id, customer)
    api.ok(
        api.post(
            "/v2/coupon/revoke",
            {
                "couponSeriesId": series_id,
                "couponCodes": [issued["couponCode"]],
                "reason": "\t=HYPERLINK(1)",
            },
            headers={"X-Request-Id": "csv-req-1"},
        )
    )

    customer_rows = parse_csv(api.get(f"/v2/customers/{customer}/coupons.csv").text)
    accept = api.get(f"/v2/customers/{customer}/coupons", headers={"Accept": "text/csv"})
    trail = parse_csv(api.get("/v2/coupon/revocations", headers={"Accept": "text/csv"}).text)
    history = parse_csv(api.get(f"/v2/coupon/{issued['couponId']}.csv").text)

    assert customer_rows[1][:4] == [str(issued["couponId"]), "H-1", str(series_id), "REVOKED"]
    assert parse_csv(accept.text) == customer_rows
    assert trail[0] == [
        "requestId",
        "at",
        "actor",
        "reason",
        "revokedCount",
        "reinstatedCount",
        "jobId",
    ]
    assert (
        trail[1][0] == "csv-req-1"
        and trail[1][3] == "'\t=HYPERLINK(1)"
        and trail[1][4:] == ["1", "0", ""]
    )
    assert [h[1] for h in history[1:]] == ["ISSUE", "REVOKE"]
    assert history[2][7] == "'\t=HYPERLINK(1)"


def test_an_export_that_cannot_start_answers_with_the_json_envelope(api: Api, other: Api) -> None:
    theirs = other.series(codes=["Z-1"])

    unknown = api.get(f"/v2/coupon/series/{theirs}/coupons.csv")
    bad_state = api.get(f"/v2/coupon/series/{theirs}/coupons.csv", params={"state": "NOPE"})
    no_coupon = api.get("/v2/coupon/99999999.csv")

    assert (unknown.status_code, error_code(unknown)) == (404, 707)
    assert error_code(bad_state) == 9002
    assert no_coupon.status_code == 404
    assert unknown.headers["content-type"].startswith("application/json")


def test_an_export_starts_after_a_list_pages_cursor_on_either_form(api: Api) -> None:
    series_id = api.series(codes=["C-1", "C-2", "C-3", "C-4", "C-5"])
    path = f"/v2/coupon/series/{series_id}/coupons"
    cursor = api.ok(api.get(path, params={"limit": 2}))["nextCursor"]

    by_accept = api.get(path, params={"after": cursor}, headers={"Accept": "text/csv"})
    by_path = api.get(f"{path}.csv", params={"after": cursor})
    bad = api.get(path, params={"after": "bad"}, headers={"Accept": "text/csv"})

    assert [r[1] for r in parse_csv(by_accept.text)[1:]] == ["C-3", "C-4", "C-5"]
    assert by_path.content == by_accept.content
    assert error_code(bad) == 9002
    assert bad.json()["errors"][0]["message"].startswith("after")


def test_an_export_spans_many_pages(api: Api, backend: Backend) -> None:
    codes = [f"E-{i:05}" for i in range(2_500)]
    series_id = api.series(codes=codes)

    rows = parse_csv(api.get(f"/v2/coupon/series/{series_id}/coupons.csv").text)

    assert [r[1] for r in rows[1:]] == codes


def test_the_openapi_document_shows_every_finding_read_with_an_example(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]

    for path in (
        "/v2/coupon/series",
        "/v2/coupon/series/{id}/coupons",
        "/v2/coupon/search",
        "/v2/coupon/revocations",
    ):
        operation = paths[path]["get"]
        assert operation["responses"]["200"]["content"]["application/json"]["example"]
        assert operation["security"], path
    for path in (
        "/v2/coupon/series/{id}/coupons.csv",
        "/v2/customers/{id}/coupons.csv",
        "/v2/coupon/revocations.csv",
        "/v2/coupon/{couponId}.csv",
    ):
        assert paths[path]["get"]["responses"]["200"]["content"]["text/csv"]["example"]


def test_examples_keep_the_fields_a_live_answer_carries_even_when_null(api: Api) -> None:
    # The framework drops nulls from the document: an example without `nextCursor` or `jobId`
    # described an answer that never comes
    paths = api.client.get("/openapi.json").json()["paths"]

    def example(path: str) -> dict[str, Any]:
        found: dict[str, Any] = paths[path]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["example"]["entity"]
        return found

    trail = example("/v2/coupon/revocations")
    series = example("/v2/coupon/series")
    live_trail = api.ok(api.get("/v2/coupon/revocations"))
    assert set(trail) == set(live_trail) == {"revocations", "nextCursor"}
    assert "jobId" in trail["revocations"][0]
    assert "nextCursor" in series and "genericCode" in series["series"][0]


@pytest.mark.parametrize("params", [{"code": "a\x00b"}, {"codePrefix": "abc\x00"}])
def test_text_with_nul_is_refused_as_9002_not_a_fault(api: Api, params: dict[str, str]) -> None:
    response = api.get("/v2/coupon/search", params=params)
    trail = api.get("/v2/coupon/revocations", params={"actor": "x\x00"})

    assert error_code(response) == 9002
    assert error_code(trail) == 9002


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/coupons", {"limit": "2"}, "limit"),
        ("/coupons", {"after": "xyz"}, "after"),
        ("/coupons.csv", {"after": "xyz"}, "after"),
    ],
)
def test_a_customers_coupons_are_one_list_and_refuse_paging_parameters(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    customer = api.customer(email="one-list@example.com")

    response = api.get(f"/v2/customers/{customer}{path}", params=params)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith(field)


def test_one_coupon_refuses_paging_parameters_as_any_parameter_it_does_not_take(
    api: Api,
) -> None:
    # one coupon has no pages: `limit` there is a parameter the call does not take
    series_id = api.series(codes=["ONE-COUPON-1"])
    [coupon] = api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons"))["coupons"]

    response = api.get(f"/v2/coupon/{coupon['couponId']}", params={"limit": "5"})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert api.ok(api.get(f"/v2/coupon/{coupon['couponId']}"))["couponId"] == coupon["couponId"]


def test_a_cursor_of_another_orgs_list_is_refused_not_read_as_a_skip(api: Api, other: Api) -> None:
    # given a revoke in each org, and a first page of each list in one org
    mine = api.series(codes=["ORGA-1", "ORGA-2", "ORGA-3"])
    api.ok(api.revoke({"couponSeriesId": mine, "couponCodes": ["ORGA-1"]}))
    api.ok(api.revoke({"couponSeriesId": mine, "couponCodes": ["ORGA-2"]}))
    theirs = other.series(codes=["ORGA-1", "ORGA-9"])
    other.ok(other.revoke({"couponSeriesId": theirs, "couponCodes": ["ORGA-1"]}))
    api.series()
    pages = {
        "/v2/coupon/series": {},
        "/v2/coupon/revocations": {},
        "/v2/coupon/search": {"codePrefix": "orga"},
        "/v2/coupon/revoke/jobs": {},
    }
    for _ in range(2):
        preview = api.post("/v2/coupon/revoke/jobs", {"couponSeriesId": mine, "dryRun": True})
        assert preview.status_code == 202, preview.text

    for path, params in pages.items():
        cursor = api.ok(api.get(path, params={**params, "limit": 1}))["nextCursor"]
        assert cursor is not None, path
        # when the other org passes it to the same list, then it is 9002, not an empty page
        response = other.get(path, params={**params, "after": cursor})
        assert (response.status_code, error_code(response)) == (400, 9002), path
        assert response.json()["errors"][0]["message"].startswith("after")
        # and the org that was handed it reads on
        api.ok(api.get(path, params={**params, "after": cursor}))


# --- every coupon's history over a time range --------------------------------------------------


def test_the_history_range_lists_every_coupons_changes_oldest_first_in_pages(
    api: Api, other: Api, backend: Backend
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted, drain

    # given changes to coupons of two series, a job's end (an org event), and another org's
    series_a = api.series(codes=["H-A1", "H-A2"])
    series_b = api.series(codes=["H-B1"])
    customer = api.customer("5550190")
    api.issue(series_a, customer)
    api.ok(api.revoke({"couponSeriesId": series_a, "couponCodes": ["H-A1"], "reason": "=leak"}))
    accepted(api.post(JOBS, {"couponSeriesId": series_b, "reason": "off"}))
    drain(backend.db)
    theirs = other.series(codes=["H-O1"])
    other.ok(other.revoke({"couponSeriesId": theirs, "couponCodes": ["H-O1"]}))

    # when the range of today is walked two entries a page, and exported
    today = api.ok(api.get("/v2/events"))["events"][-1]["at"][:10]
    entries = walk(api, "/v2/coupon/history", "history", since=today, until=today, limit=2)
    exported = api.get("/v2/coupon/history.csv", params={"since": today})
    by_accept = api.get(
        "/v2/coupon/history", params={"since": today}, headers={"Accept": "text/csv"}
    )

    # then it holds the org's coupon changes only, oldest first, each once
    assert [(e["couponCode"], e["action"], e["toState"]) for e in entries] == [
        ("H-A1", "ISSUE", "ISSUED"),
        ("H-A1", "REVOKE", "REVOKED"),
        ("H-B1", "REVOKE", "REVOKED"),
    ]
    assert [e["id"] for e in entries] == sorted({e["id"] for e in entries})
    assert entries[1]["reason"] == "=leak" and entries[1]["seriesId"] == series_a
    assert entries[0]["customerId"] == customer and entries[0]["actor"] == "acme-admin"
    # and the export holds the same rows, formula-like cells written as text
    rows = parse_csv(exported.text)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert rows[0] == [
        "id", "couponId", "couponCode", "seriesId", "customerId", "action", "fromState",
        "toState", "at", "actor", "requestId", "reason",
    ]  # fmt: skip
    assert rows[1][4] == str(customer)
    assert [int(r[0]) for r in rows[1:]] == [e["id"] for e in entries]
    assert rows[2][-1] == "'=leak"
    assert by_accept.text == exported.text


def test_a_history_range_in_the_past_is_empty_and_a_reversed_one_is_9002(api: Api) -> None:
    series_id = api.series(codes=["H-P1"])
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["H-P1"]}))

    past = api.ok(api.get("/v2/coupon/history", params={"until": "2001-01-01"}))
    reversed_range = api.get(
        "/v2/coupon/history", params={"since": "2030-01-02", "until": "2030-01-01"}
    )
    series_page = api.ok(api.get("/v2/coupon/series", params={"limit": 1}))
    moved = api.get("/v2/coupon/history", params={"after": series_page["nextCursor"] or "x"})

    assert past == {"history": [], "nextCursor": None}
    assert (reversed_range.status_code, error_code(reversed_range)) == (400, 9002)
    assert "until" in reversed_range.json()["errors"][0]["message"]
    assert (moved.status_code, error_code(moved)) == (400, 9002)


def test_a_head_on_an_export_answers_its_headers_without_reading_its_rows(
    api: Api, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a series whose export takes five pages of two rows
    monkeypatch.setattr(finding_routes, "EXPORT_PAGE", 2)
    series_id = api.series(codes=[f"HEADX-{i}" for i in range(10)])
    path = f"/v2/coupon/series/{series_id}/coupons.csv"
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM coupons" in statement:
            reads.append(statement)

    for engine in backend.db.engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        got = api.get(path)
        reads_for_get = len(reads)
        reads.clear()
        # when the same export is asked for with HEAD
        head = api.request("HEAD", path)
    finally:
        for engine in backend.db.engines:
            event.remove(engine, "before_cursor_execute", count)

    # then it has the GET's status and type, no body, and read at most the first page
    assert got.status_code == head.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.content == b""
    assert reads_for_get >= 5
    assert len(reads) <= 1


def test_an_answer_chosen_by_accept_says_it_varies_by_accept(api: Api) -> None:
    series_id = api.series(codes=["VARY-1"])
    path = f"/v2/coupon/series/{series_id}/coupons"

    as_json = api.get(path)
    as_csv = api.get(path, headers={"Accept": "text/csv"})

    assert as_json.headers["content-type"].startswith("application/json")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_json.headers["vary"] == as_csv.headers["vary"] == "Accept"
    # and an answer that does not depend on it does not say so
    assert "vary" not in api.get(f"/v2/coupon/series/{series_id}").headers


def test_an_empty_after_is_the_first_page_as_an_empty_filter_is_no_filter(api: Api) -> None:
    series_id = api.series(codes=["E-1", "E-2"])

    for path in (f"/v2/coupon/series/{series_id}/coupons", "/v2/coupon/revocations"):
        empty = api.get(path, params={"after": ""})
        first = api.get(path)

        assert empty.status_code == 200, empty.text
        assert empty.json() == first.json()
