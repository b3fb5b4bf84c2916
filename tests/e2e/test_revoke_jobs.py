"""Revoke jobs through HTTP (spec §8), on both stores: upload, run, report, cancel, undo."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text

from coupons.adapters.sql_uow import Database
from coupons.adapters.tables import coupon_series
from coupons.adapters.tables import coupons as coupons_table
from coupons.entrypoints.http import jobs_routes
from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions
from coupons.services import job_runner
from coupons.services.common import utcnow
from coupons.services.ports import UnitOfWork
from tests.conftest import Backend, on_own_loop
from tests.e2e.conftest import Api, error_code

JOBS = "/v2/coupon/revoke/jobs"


# --- helpers ---------------------------------------------------------------------------------


def upload(api: Api, body: bytes | str, media: str = "text/plain", **params: Any) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return api.request(
        "POST",
        JOBS,
        content=data,
        params=params,
        headers={"Content-Type": media, **params.pop("headers", {})},
    )


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    job: dict[str, Any] = body["entity"]
    assert response.headers["Location"] == f"{JOBS}/{job['jobId']}"
    return job


def drain(db: Database, chunk_size: int = 500, chunks: int | None = None) -> None:
    """Run every runnable job to its end (or `chunks` chunks of the first), in this thread."""
    worker = JobWorker(db, JobWorkerOptions(chunk_size=chunk_size))
    lease = worker.options.lease

    def claim(uow: UnitOfWork) -> str | None:
        return job_runner.claim(uow, worker.owner, utcnow(), lease)

    while job_id := db.run(claim):
        if chunks is None:
            worker.run_job(job_id)
            continue

        def chunk(uow: UnitOfWork, job_id: str = job_id) -> bool:
            return job_runner.run_chunk(uow, job_id, worker.owner, utcnow(), lease, chunk_size)

        for _ in range(chunks):
            db.run(chunk)
        db.run(lambda uow, job_id=job_id: _release(uow, job_id, worker.owner))  # type: ignore[misc]
        return


def _release(uow: UnitOfWork, job_id: str, owner: str) -> None:
    uow.jobs.release(job_id, owner)
    uow.commit()


def job_of(api: Api, job_id: str) -> dict[str, Any]:
    entity: dict[str, Any] = api.ok(api.get(f"{JOBS}/{job_id}"))
    return entity


def report(api: Api, job_id: str) -> list[list[str]]:
    response = api.get(f"{JOBS}/{job_id}/report")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


def count_rows(backend: Backend, table: str) -> int:
    with backend.db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def mixed(api: Api) -> dict[str, Any]:
    """A series with one coupon in each case a job meets."""
    series = api.series(codes=["OK1", "OK2", "RED1", "REV1", "AV1"])
    customer = api.customer(mobile="+15550001")
    issued = {c["couponCode"]: c for c in api.issue_many(series, customer, 4)}
    assert set(issued) == {"OK1", "OK2", "RED1", "REV1"}
    api.ok(api.redeem(customer, "RED1"))
    api.ok(api.revoke({"couponSeriesId": series, "couponCodes": ["REV1"]}))
    return {"series": series, "customer": customer, "coupons": issued}


# --- a codes file ----------------------------------------------------------------------------


def test_a_codes_file_job_revokes_and_reports_each_line_in_input_order(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # given a file with every kind of line: revocable, redeemed, revoked, unknown, a repeat
    lines = "ok1\n\n  RED1 \nrev1\nnope\nOK1\nav1\nok2\n"
    # when it is uploaded
    job = accepted(upload(api, lines, couponSeriesId=mixed["series"], reason="leak 42"))
    # then the job is queued, with one line per non-blank input line
    assert job["state"] == "QUEUED" and job["total"] == 7 and job["kind"] == "REVOKE"
    assert job["createdBy"] == "acme-admin" and job["reason"] == "leak 42"
    # when a worker runs it in chunks of three
    drain(backend.db, chunk_size=3)
    # then it succeeded with exact counts
    done = job_of(api, job["jobId"])
    assert done["state"] == "SUCCEEDED" and done["processed"] == 7
    assert (done["revokedCount"], done["failedCount"], done["duplicateCount"]) == (3, 3, 1)
    assert done["failedByCode"] == {"405": 1, "682": 2}
    assert done["startedAt"] and done["finishedAt"]
    # and the report has one row per line, in file order, codes in the default UPPER case
    ok1 = mixed["coupons"]["OK1"]
    customer = str(mixed["customer"])
    rows = report(api, job["jobId"])
    assert rows[0] == ["code", "outcome", "errorCode", "couponId", "issuedToUserId"]
    assert [r[:3] for r in rows[1:]] == [
        ["OK1", "revoked", ""],
        ["RED1", "redeemed", "405"],
        ["REV1", "already_revoked", "682"],
        ["NOPE", "not_found", "682"],
        ["OK1", "duplicate_in_file", ""],
        ["AV1", "revoked", ""],
        ["OK2", "revoked", ""],
    ]
    assert rows[1][3:] == [str(ok1["couponId"]), customer]
    assert rows[6][4] == ""  # never issued
    # and each revoked coupon's history names the job, its creator and the reason
    history = api.coupon(ok1["couponId"])["history"]
    assert history[-1]["action"] == "REVOKE"
    assert (history[-1]["requestId"], history[-1]["actor"], history[-1]["reason"]) == (
        job["jobId"],
        "acme-admin",
        "leak 42",
    )


def test_a_report_writes_codes_in_the_asked_case_as_a_revoke_call_does(
    api: Api, backend: Backend
) -> None:
    # given a series whose codes were created in mixed case
    series = api.series(codes=["abAB-1", "Cd-2"])
    lines = "ABAB-1\n  cd-2 \nNope-3\n"
    for case, expected in (
        ("AS_IT_IS", ["abAB-1", "Cd-2", "Nope-3"]),
        ("LOWER", ["abab-1", "cd-2", "nope-3"]),
        ("UPPER", ["ABAB-1", "CD-2", "NOPE-3"]),
    ):
        # when a dry-run job of those codes runs, asked for that case
        job = accepted(
            upload(api, lines, couponSeriesId=series, dryRun="true", couponCodeCase=case)
        )
        drain(backend.db)
        # then its report writes a found code as the coupon stores it, in that case, and an
        # unknown one as it was sent (trimmed), as the revoke call answers
        assert [row[0] for row in report(api, job["jobId"])[1:]] == expected
        call = api.ok(
            api.revoke(
                {"couponSeriesId": series, "couponCodes": lines.split()},
                couponCodeCase=case,
                dryRun="true",
            )
        )
        written = [c["couponCode"] for c in call["revokedCoupons"]] + [
            code for group in call["failedToRevoke"] for code in group["couponCodes"]
        ]
        assert written == expected


def test_a_csv_file_uses_its_code_column(api: Api, backend: Backend, mixed: dict[str, Any]) -> None:
    body = "name,Code\r\nann,ok1\r\nbob,\r\ncy,=cmd()\r\n"
    job = accepted(upload(api, body, "text/csv", couponSeriesId=mixed["series"]))
    assert job["total"] == 2
    drain(backend.db)
    rows = report(api, job["jobId"])
    # A cell that a spreadsheet would run as a formula is written with a quote in front.
    assert [r[:2] for r in rows[1:]] == [["OK1", "revoked"], ["'=CMD()", "not_found"]]


def test_a_dry_run_job_reports_would_revoke_and_changes_nothing(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    job = accepted(upload(api, "OK1\nRED1\n", couponSeriesId=mixed["series"], dryRun="true"))
    assert job["dryRun"] is True
    drain(backend.db)
    assert [r[1] for r in report(api, job["jobId"])[1:]] == ["would_revoke", "redeemed"]
    assert job_of(api, job["jobId"])["revokedCount"] == 1
    assert api.coupon(mixed["coupons"]["OK1"]["couponId"])["state"] == "ISSUED"
    assert error_code(api.post(f"{JOBS}/{job['jobId']}/undo")) == 9026


def test_without_a_series_each_code_is_looked_up_in_the_org_as_a_single_code_revoke(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    api.series("GENERIC", generic_code="SHARED")
    job = accepted(upload(api, "ok1\nshared\nnothing\n"))
    drain(backend.db)
    assert [r[:3] for r in report(api, job["jobId"])[1:]] == [
        ["OK1", "revoked", ""],
        ["SHARED", "refused", "108"],
        ["NOTHING", "not_found", "404"],
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_code_in_two_series_is_one_line_naming_both_coupons(
    api: Api, backend: Backend, dry_run: bool
) -> None:
    # Given a code in two series (codes are unique per series only), one copy issued
    first, second = api.series(codes=["TWICE"]), api.series(codes=["TWICE"])
    holder = api.customer(mobile="+15550077")
    issued = api.issue(first, holder)
    [pooled] = api.ok(api.get(f"/v2/coupon/series/{second}/coupons"))["coupons"]
    call = api.ok(api.revoke({"couponCodes": ["twice"]}, dryRun="true"))

    # When a job without a series revokes it, as a single-code revoke would
    job = accepted(upload(api, "twice\n", **({"dryRun": "true"} if dry_run else {})))
    drain(backend.db)

    # Then its one line names both coupons and their holders, in id order, as the call does
    assert sorted(c["couponId"] for c in call["revokedCoupons"]) == [
        issued["couponId"],
        pooled["couponId"],
    ]
    outcome = "would_revoke" if dry_run else "revoked"
    assert report(api, job["jobId"])[1:] == [
        ["TWICE", outcome, "", f"{issued['couponId']} {pooled['couponId']}", f"{holder} none"]
    ]
    done = job_of(api, job["jobId"])
    assert (done["total"], done["revokedCount"], done["failedCount"]) == (1, 1, 0)
    states = {api.coupon(c)["state"] for c in (issued["couponId"], pooled["couponId"])}
    assert states == ({"ISSUED", "AVAILABLE"} if dry_run else {"REVOKED"})


def test_an_upload_that_stops_arriving_is_dropped_with_9027_and_stages_nothing(
    app: Any, api: Api, backend: Backend, mixed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a server that drops an upload after 0.3 s without a byte
    monkeypatch.setattr(jobs_routes, "UPLOAD_IDLE_SECONDS", 0.3)

    async def stalls_after_two_lines() -> AsyncIterator[bytes]:
        yield b"OK1\nOK2\n"
        await asyncio.sleep(3600)  # the client never sends the rest

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.post(
                JOBS,
                params={"couponSeriesId": mixed["series"]},
                content=stalls_after_two_lines(),
                headers={**api.creds.headers, "Content-Type": "text/plain"},
            )

    # when a file's first two lines arrive and then nothing more
    response = on_own_loop(send)

    # then the upload is refused naming the line it stopped at, and nothing is left of it
    assert response.status_code == 400, response.text
    assert error_code(response) == 9027
    assert "line 3: nothing arrived for 0.3 s" in response.json()["errors"][0]["message"]
    assert count_rows(backend, "revoke_jobs") == 0
    assert count_rows(backend, "revoke_job_lines") == 0


@pytest.mark.parametrize(
    ("body", "media", "message"),
    [
        (b"OK1\nOK\xff2\n", "text/plain", "line 2: not UTF-8"),
        (b"coupon\nOK1\n", "text/csv", "line 1: no 'code' column"),
        (b"OK1\n\n" + b"X" * 101 + b"\n", "text/plain", "line 3: code longer than 100"),
        # 51 characters, 102 once case-folded: the line's key outgrew its column (a 500)
        (
            "OK1\n\u00df\n".encode() + "\u00df".encode() * 51 + b"\n",
            "text/plain",
            "line 3: code longer than 100 characters once case-folded",
        ),
        (b"\n  \n", "text/plain", "holds no codes"),
        # the first bad line, not a later one that the decoding of a block meets first
        (b"A\n" + b"Z" * 101 + b"\nB\n\xff\n", "text/plain", "line 2: code longer than 100"),
        (b"id,name\n1,x\n\xff\n", "text/csv", "line 1: no 'code' column"),
    ],
)
def test_a_malformed_file_is_9027_naming_the_line_and_creates_nothing(
    api: Api, backend: Backend, mixed: dict[str, Any], body: bytes, media: str, message: str
) -> None:
    response = upload(api, body, media, couponSeriesId=mixed["series"])
    assert response.status_code == 400
    assert error_code(response) == 9027
    assert message in response.json()["errors"][0]["message"]
    assert count_rows(backend, "revoke_jobs") == 0
    assert count_rows(backend, "revoke_job_lines") == 0
    assert api.ok(api.get(JOBS))["jobs"] == []


def test_the_series_is_checked_before_the_upload_is_read(api: Api, mixed: dict[str, Any]) -> None:
    assert error_code(upload(api, "OK1\n", couponSeriesId=999_999)) == 707
    generic = api.series("GENERIC", generic_code="G1")
    assert error_code(upload(api, "G1\n", couponSeriesId=generic)) == 108


def test_a_declared_body_over_64_mib_is_9013(api: Api) -> None:
    response = api.request(
        "POST",
        JOBS,
        content=b"x",
        headers={"Content-Type": "text/plain", "Content-Length": str(64 * 1024 * 1024 + 1)},
    )
    assert response.status_code == 413 and error_code(response) == 9013


def test_the_same_upload_under_the_same_key_replays_the_first_job(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    key = {"Idempotency-Key": "upload-1"}
    created = upload(api, "OK1\n", couponSeriesId=mixed["series"], headers=key)
    first = accepted(created)
    again = upload(api, "OK1\n", couponSeriesId=mixed["series"], headers=dict(key))
    assert accepted(again)["jobId"] == first["jobId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # the replay answers as the request that created the job, as every replayed call does
    assert again.headers["X-Request-Id"] == created.headers["X-Request-Id"]
    other = upload(api, "OK2\n", couponSeriesId=mixed["series"], headers=dict(key))
    assert error_code(other) == 9006
    # the same bytes as another type are another file ("code\nOK1" is two codes as text,
    # one as CSV): 9006, not the first job
    typed = {"Idempotency-Key": "upload-typed"}
    accepted(upload(api, "code\nOK1\n", couponSeriesId=mixed["series"], headers=dict(typed)))
    retyped = upload(api, "code\nOK1\n", "text/csv", couponSeriesId=mixed["series"], headers=typed)
    assert error_code(retyped) == 9006
    assert count_rows(backend, "revoke_jobs") == 2
    assert count_rows(backend, "revoke_job_lines") == 3


def test_a_selector_under_the_same_key_is_compared_as_data_not_as_bytes(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # a client that rebuilt its body before retrying (other key order, other spacing) got
    # 9006, and could not tell whether its job had been made
    series = mixed["series"]
    key = {"Idempotency-Key": "selector-1", "Content-Type": "application/json"}
    first = accepted(
        api.request(
            "POST", JOBS, content=f'{{"couponSeriesId": {series}, "reason": "w"}}', headers=key
        )
    )

    again = api.request(
        "POST", JOBS, content=f'{{"reason":"w","couponSeriesId":{series}}}', headers=key
    )

    assert accepted(again)["jobId"] == first["jobId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.request(
        "POST", JOBS, content=f'{{"reason":"x","couponSeriesId":{series}}}', headers=key
    )
    assert error_code(other) == 9006
    assert count_rows(backend, "revoke_jobs") == 1


def test_an_upload_whose_reason_differs_only_in_case_is_another_request(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # given an upload made under a key with one reason
    key = {"Idempotency-Key": "upload-case"}
    first = upload(
        api, "OK1\n", couponSeriesId=mixed["series"], reason="Leak A", dryRun="false", headers=key
    )
    accepted(first)

    # when the same file comes under the same key with the reason spelled otherwise, and with
    # the case-blind parameters spelled otherwise
    other = upload(
        api, "OK1\n", couponSeriesId=mixed["series"], reason="leak a", dryRun="false", headers=key
    )
    same = upload(
        api, "OK1\n", couponSeriesId=mixed["series"], reason="Leak A", dryRun="False", headers=key
    )

    # then the reason makes it another request (9006), and the spelling of false does not
    assert error_code(other) == 9006
    assert same.headers.get("Idempotent-Replayed") == "true"
    assert count_rows(backend, "revoke_jobs") == 1


# --- a whole series --------------------------------------------------------------------------


def test_a_series_selector_revokes_every_unredeemed_coupon(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    job = accepted(api.post(JOBS, {"couponSeriesId": mixed["series"], "reason": "campaign off"}))
    # OK1, OK2, AV1 are unredeemed and unrevoked; RED1 and REV1 are not taken
    assert job["total"] == 3
    drain(backend.db)
    done = job_of(api, job["jobId"])
    assert (done["state"], done["revokedCount"], done["failedCount"]) == ("SUCCEEDED", 3, 0)
    counts = api.ok(api.get(f"/v2/coupon/series/{mixed['series']}"))["counts"]
    assert counts == {"AVAILABLE": 0, "ISSUED": 0, "REDEEMED": 1, "REVOKED": 4}


def test_a_series_job_with_nothing_left_to_revoke_still_says_when_it_started(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    first = accepted(api.post(JOBS, {"couponSeriesId": mixed["series"]}))
    drain(backend.db)

    again = accepted(api.post(JOBS, {"couponSeriesId": mixed["series"]}))
    drain(backend.db)

    done = job_of(api, again["jobId"])
    assert (done["state"], done["total"]) == ("SUCCEEDED", 0)
    assert done["startedAt"] is not None and done["startedAt"] <= done["finishedAt"]
    assert job_of(api, first["jobId"])["startedAt"] is not None


def test_a_selector_for_an_unknown_series_or_a_bad_body_is_refused(api: Api) -> None:
    assert error_code(api.post(JOBS, {"couponSeriesId": 999_999})) == 707
    assert error_code(api.post(JOBS, {"reason": "x"})) == 9002
    assert error_code(api.post(JOBS, {"couponSeriesId": "seven"})) == 9002
    for flag in ("yes", "true", 1, "on", None):  # JSON's true and false only: no guessing
        not_flag = api.post(JOBS, {"couponSeriesId": 1, "dryRun": flag})
        assert error_code(not_flag) == 9002, flag
        assert not_flag.json()["errors"][0]["message"].startswith("dryRun: "), not_flag.text
    for body in (b"{", b"", b"[1]", b'{"couponSeriesId": 1, "reason": NaN}', b'{"a": Infinity}'):
        bad = api.request("POST", JOBS, content=body, headers={"Content-Type": "application/json"})
        assert error_code(bad) == 9001, body
    assert [j["jobId"] for j in api.ok(api.get(JOBS))["jobs"]] == []


@pytest.mark.parametrize(
    ("media", "says"),
    [
        ("application/x-www-form-urlencoded", "Content-Type is application/x-www-form-urlencoded"),
        (None, "Content-Type is missing"),
    ],
)
def test_a_codes_file_sent_without_its_type_is_told_to_send_one(
    api: Api, mixed: dict[str, Any], media: str | None, says: str
) -> None:
    # curl --data-binary @codes.txt sends a form type; a bare client may send none
    headers = {"Content-Type": media} if media else {}
    response = api.request(
        "POST",
        JOBS,
        content=b"OK1\nOK2\n",
        params={"couponSeriesId": mixed["series"]},
        headers=headers,
    )
    assert (response.status_code, error_code(response)) == (400, 9002)
    message = response.json()["errors"][0]["message"]
    assert "Content-Type text/plain or text/csv" in message and says in message
    # and a file sent as a form (curl -F) without a query is told the same, not "bad JSON"
    form = api.request("POST", JOBS, files={"file": ("codes.txt", b"OK1\n", "text/plain")})
    assert (form.status_code, error_code(form)) == (400, 9002)
    assert "not as a form" in form.json()["errors"][0]["message"]
    assert api.ok(api.get(JOBS))["jobs"] == []


@pytest.mark.parametrize("query", [{"couponSeriesId": "1"}, {"reason": "from the query"}])
def test_a_selector_with_its_series_or_reason_in_the_query_is_refused(
    api: Api, mixed: dict[str, Any], query: dict[str, str]
) -> None:
    response = api.post(JOBS, {"couponSeriesId": mixed["series"]}, params=query)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith(next(iter(query)))
    assert api.ok(api.get(JOBS))["jobs"] == []


def test_a_selector_naming_codes_is_refused_rather_than_taking_the_whole_series(
    api: Api, mixed: dict[str, Any]
) -> None:
    response = api.post(JOBS, {"couponSeriesId": mixed["series"], "couponCodes": ["OK1"]})

    assert (response.status_code, error_code(response)) == (400, 9002)
    message = response.json()["errors"][0]["message"]
    assert message.startswith("couponCodes") and "text/csv" in message
    assert api.ok(api.get(JOBS))["jobs"] == []
    assert api.coupon(mixed["coupons"]["OK2"]["couponId"])["state"] == "ISSUED"


# --- reading, cancel, undo -------------------------------------------------------------------


def test_jobs_are_listed_newest_first_and_filtered_by_state(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    first = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    drain(backend.db)
    second = accepted(upload(api, "OK2\n", couponSeriesId=mixed["series"]))
    listed = api.ok(api.get(JOBS))["jobs"]
    assert [j["jobId"] for j in listed] == [second["jobId"], first["jobId"]]
    queued = api.ok(api.get(JOBS, params={"state": "queued"}))["jobs"]
    assert [j["jobId"] for j in queued] == [second["jobId"]]
    assert error_code(api.get(JOBS, params={"state": "DONE"})) == 9002


def test_the_jobs_list_pages_with_a_cursor_bound_to_its_state_filter(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # given five jobs, the first two finished
    made = [accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"], dryRun="true"))]
    made.append(accepted(upload(api, "OK2\n", couponSeriesId=mixed["series"], dryRun="true")))
    drain(backend.db)
    made += [
        accepted(upload(api, f"OK{i}\n", couponSeriesId=mixed["series"], dryRun="true"))
        for i in range(3, 6)
    ]
    newest_first = [j["jobId"] for j in reversed(made)]

    # when the list is walked two at a time, whole and by state (an empty state is none)
    def walk(**params: Any) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            query = {**params, "limit": 2, **({"after": after} if after else {})}
            entity = api.ok(api.get(JOBS, params=query))
            seen += [j["jobId"] for j in entity["jobs"]]
            after = entity["nextCursor"]
            if after is None:
                return seen

    # then every job comes once, newest first
    assert walk() == walk(state="") == newest_first
    assert walk(state="QUEUED") == newest_first[:3]
    # and a cursor is refused by the list with another filter, and a garbled one everywhere
    cursor = api.ok(api.get(JOBS, params={"limit": 1}))["nextCursor"]
    for params in ({"state": "QUEUED", "after": cursor}, {"after": "garbage"}):
        response = api.get(JOBS, params=params)
        assert (response.status_code, error_code(response)) == (400, 9002)
        assert response.json()["errors"][0]["message"].startswith("after")


def test_another_orgs_job_behaves_as_absent(
    api: Api, client: Any, globex_admin: Any, mixed: dict[str, Any]
) -> None:
    job = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    other = Api(client, globex_admin)
    for path in ("", "/report"):
        assert error_code(other.get(f"{JOBS}/{job['jobId']}{path}")) == 9025
    for action in ("cancel", "undo"):
        assert error_code(other.post(f"{JOBS}/{job['jobId']}/{action}")) == 9025
    assert error_code(api.get(f"{JOBS}/job_nosuch")) == 9025
    assert other.ok(other.get(JOBS))["jobs"] == []


def test_cancel_part_way_keeps_what_was_revoked_and_reports_only_that(
    api: Api, backend: Backend
) -> None:
    codes = [f"C{i:03}" for i in range(10)]
    series = api.series(codes=codes)
    job = accepted(upload(api, "\n".join(codes), couponSeriesId=series))
    # given a job that has run two chunks of three
    drain(backend.db, chunk_size=3, chunks=2)
    running = job_of(api, job["jobId"])
    assert (running["state"], running["processed"]) == ("RUNNING", 6)
    assert len(report(api, job["jobId"])) == 1 + 6  # the report is there while it runs
    # when it is cancelled, then it stops at the next chunk boundary
    assert api.ok(api.post(f"{JOBS}/{job['jobId']}/cancel"))["state"] == "CANCELLING"
    drain(backend.db, chunk_size=3)
    cancelled = job_of(api, job["jobId"])
    assert (cancelled["state"], cancelled["processed"], cancelled["revokedCount"]) == (
        "CANCELLED",
        6,
        6,
    )
    assert [r[1] for r in report(api, job["jobId"])[1:]] == ["revoked"] * 6
    counts = api.ok(api.get(f"/v2/coupon/series/{series}"))["counts"]
    assert (counts["REVOKED"], counts["AVAILABLE"]) == (6, 4)
    # and a finished job cannot be cancelled
    assert error_code(api.post(f"{JOBS}/{job['jobId']}/cancel")) == 9026


def test_a_queued_job_cancelled_before_any_worker_took_it_is_cancelled_at_once(
    api: Api, mixed: dict[str, Any]
) -> None:
    job = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    assert api.ok(api.post(f"{JOBS}/{job['jobId']}/cancel"))["state"] == "CANCELLED"
    assert api.coupon(mixed["coupons"]["OK1"]["couponId"])["state"] == "ISSUED"
    # and with nothing revoked there is nothing to undo: no empty undo job is made
    assert error_code(api.post(f"{JOBS}/{job['jobId']}/undo")) == 9026
    assert [j["jobId"] for j in api.ok(api.get(JOBS))["jobs"]] == [job["jobId"]]
    assert job_of(api, job["jobId"])["undoneByJobId"] is None


def test_an_undo_cancelled_before_it_ran_leaves_the_job_undoable(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    job = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    drain(backend.db)
    first = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))

    assert api.ok(api.post(f"{JOBS}/{first['jobId']}/cancel"))["state"] == "CANCELLED"

    assert job_of(api, job["jobId"])["undoneByJobId"] is None
    second = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)
    assert job_of(api, job["jobId"])["undoneByJobId"] == second["jobId"]
    assert api.coupon(mixed["coupons"]["OK1"]["couponId"])["state"] == "ISSUED"


def test_a_dry_run_undo_previews_and_the_job_can_then_be_undone(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    series = mixed["series"]
    job = accepted(upload(api, "OK1\nOK2\n", couponSeriesId=series))
    drain(backend.db)

    preview = accepted(api.post(f"{JOBS}/{job['jobId']}/undo", params={"dryRun": "true"}))
    drain(backend.db)

    assert (preview["kind"], preview["dryRun"], preview["undoOfJobId"]) == (
        "REINSTATE",
        True,
        job["jobId"],
    )
    assert [r[:2] for r in report(api, preview["jobId"])[1:]] == [
        ["OK1", "would_reinstate"],
        ["OK2", "would_reinstate"],
    ]
    coupons = mixed["coupons"]
    assert [api.coupon(coupons[c]["couponId"])["state"] for c in ("OK1", "OK2")] == [
        "REVOKED",
        "REVOKED",
    ]
    assert job_of(api, job["jobId"])["undoneByJobId"] is None
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)
    assert job_of(api, job["jobId"])["undoneByJobId"] == undo["jobId"]
    assert [api.coupon(coupons[c]["couponId"])["state"] for c in ("OK1", "OK2")] == [
        "ISSUED",
        "ISSUED",
    ]


def test_undo_reinstates_what_the_job_revoked_and_reports_what_changed_since(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    series = mixed["series"]
    job = accepted(upload(api, "OK1\nOK2\nAV1\nRED1\n", couponSeriesId=series))
    # undo is refused until the job has finished
    assert error_code(api.post(f"{JOBS}/{job['jobId']}/undo")) == 9026
    drain(backend.db)
    # given OK2 was reinstated and revoked again by someone else meanwhile
    api.ok(api.post("/v2/coupon/reinstate", {"couponSeriesId": series, "couponCodes": ["OK2"]}))
    api.ok(api.revoke({"couponSeriesId": series, "couponCodes": ["OK2"]}))
    # when the job is undone
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    assert (undo["kind"], undo["total"], undo["undoOfJobId"]) == ("REINSTATE", 3, job["jobId"])
    assert job_of(api, job["jobId"])["undoneByJobId"] == undo["jobId"]
    drain(backend.db)
    # then OK1 and AV1 are back as they were, OK2 is reported and stays revoked
    done = job_of(api, undo["jobId"])
    assert (done["state"], done["reinstatedCount"], done["failedCount"]) == ("SUCCEEDED", 2, 1)
    assert [r[:3] for r in report(api, undo["jobId"])[1:]] == [
        ["OK1", "reinstated", ""],
        ["OK2", "changed_since", "9018"],
        ["AV1", "reinstated", ""],
    ]
    states = {code: api.coupon(c["couponId"])["state"] for code, c in mixed["coupons"].items()}
    assert states == {"OK1": "ISSUED", "OK2": "REVOKED", "RED1": "REDEEMED", "REV1": "REVOKED"}
    history = api.coupon(mixed["coupons"]["OK1"]["couponId"])["history"]
    assert (history[-1]["action"], history[-1]["requestId"]) == ("REINSTATE", undo["jobId"])
    # and a job is undone once
    assert error_code(api.post(f"{JOBS}/{job['jobId']}/undo")) == 9026


def test_a_job_is_one_row_of_the_revocations_trail_across_its_chunks_and_its_undo(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    series = mixed["series"]
    dry = accepted(upload(api, "OK1\n", couponSeriesId=series, dryRun="true"))
    job = accepted(upload(api, "OK1\nOK2\nAV1\nRED1\n", couponSeriesId=series, reason="leak"))
    # when the job runs one line per chunk (and the dry run changes nothing)
    drain(backend.db, chunk_size=1)
    trail = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    # then its four chunks are one row under its id, beside the fixture's own revoke
    rows = {row["requestId"]: row for row in trail}
    assert dry["jobId"] not in rows and len(rows) == 2
    row = rows[job["jobId"]]
    assert (row["jobId"], row["reason"], row["revokedCount"], row["reinstatedCount"]) == (
        job["jobId"],
        "leak",
        3,
        0,
    )
    assert row["actor"] == job["createdBy"]
    # and undoing the job counts against that row
    accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)
    after = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    undone = [(r["jobId"], r["reinstatedCount"]) for r in after if r["requestId"] == job["jobId"]]
    assert undone == [(job["jobId"], 3)]


def test_a_read_only_client_can_read_jobs_but_not_start_them(
    api: Api, viewer: Api, mixed: dict[str, Any]
) -> None:
    job = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    assert viewer.ok(viewer.get(f"{JOBS}/{job['jobId']}"))["jobId"] == job["jobId"]
    assert error_code(upload(viewer, "OK1\n", couponSeriesId=mixed["series"])) == 9011
    assert error_code(viewer.post(f"{JOBS}/{job['jobId']}/cancel")) == 9011


def test_job_revokes_are_coupon_events_and_its_end_is_one_org_event(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    start = api.ok(api.get("/v2/events", params={"limit": 1000}))["nextAfter"]
    job = accepted(upload(api, "OK1\nOK2\nRED1\n", couponSeriesId=mixed["series"], reason="r"))
    drain(backend.db, chunk_size=1)
    events = api.ok(api.get("/v2/events", params={"after": start}))["events"]
    revoked = [e for e in events if e["type"] == "coupon.revoked"]
    assert sorted(e["couponCode"] for e in revoked) == ["OK1", "OK2"]
    assert {e["requestId"] for e in revoked} == {job["jobId"]}
    assert events[-1] == {
        "id": events[-1]["id"],
        "type": "revoke_job.finished",
        "orgId": events[-1]["orgId"],
        "jobId": job["jobId"],
        "kind": "REVOKE",
        "state": "SUCCEEDED",
        "seriesId": mixed["series"],
        "actor": "acme-admin",
        "requestId": job["jobId"],
        "reason": "r",
        "at": events[-1]["at"],
    }
    assert len(events) == 3
    # and its undo, a job too, ends with the same event saying it was a reinstate
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)
    after_undo = api.ok(api.get("/v2/events", params={"after": events[-1]["id"]}))["events"]
    assert [e["type"] for e in after_undo] == ["coupon.reinstated"] * 2 + ["revoke_job.finished"]
    assert (after_undo[-1]["jobId"], after_undo[-1]["kind"]) == (undo["jobId"], "REINSTATE")
    # subscribers can ask for the job event alone
    hook = api.ok(
        api.post(
            "/v2/webhooks", {"url": "https://example.com/h", "events": ["revoke_job.finished"]}
        )
    )
    assert hook["events"] == ["revoke_job.finished"]


def test_a_dry_run_job_writes_no_event_whether_it_finishes_or_is_cancelled(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # given the event log's end
    start = api.ok(api.get("/v2/events", params={"limit": 1000}))["nextAfter"]
    # when a dry-run job runs to its end, and another is cancelled before it starts
    ran = accepted(upload(api, "OK1\nOK2\n", couponSeriesId=mixed["series"], dryRun="true"))
    stopped = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"], dryRun="true"))
    api.ok(api.post(f"{JOBS}/{stopped['jobId']}/cancel"))
    drain(backend.db)
    assert api.ok(api.get(f"{JOBS}/{ran['jobId']}"))["state"] == "SUCCEEDED"
    # then neither wrote an event: a subscriber never sees a preview as a revoke job
    assert api.ok(api.get("/v2/events", params={"after": start}))["events"] == []
    # while a real job of the same codes does
    real = accepted(upload(api, "OK1\n", couponSeriesId=mixed["series"]))
    drain(backend.db)
    events = api.ok(api.get("/v2/events", params={"after": start}))["events"]
    assert [(e["type"], e.get("jobId")) for e in events] == [
        ("coupon.revoked", None),
        ("revoke_job.finished", real["jobId"]),
    ]


def seed_coupons(backend: Backend, series_id: int, states: list[str]) -> list[str]:
    """Insert coupons straight into the table (fast): code `BIG%06d`, one per state given."""
    with backend.db.engine.connect() as conn:
        org_id = conn.execute(
            select(coupon_series.c.org_id).where(coupon_series.c.id == series_id)
        ).scalar_one()
    now = utcnow()
    codes = [f"BIG{i:06d}" for i in range(len(states))]
    rows = [
        {
            "org_id": org_id,
            "series_id": series_id,
            "code": code,
            "code_norm": code.lower(),
            "is_generic": False,
            "state": state,
            "revoked_from": "AVAILABLE" if state == "REVOKED" else None,
            "created_at": now,
            "updated_at": now,
        }
        for code, state in zip(codes, states, strict=True)
    ]
    with backend.db.engine.begin() as conn:
        conn.execute(insert(coupons_table), rows)
        if backend.name == "postgresql":
            # As autovacuum soon would: without statistics the planner thinks the table tiny
            # and reads a whole series per code lookup.
            conn.execute(text("ANALYZE coupons"))
    return codes


def test_a_fifty_thousand_line_job_ends_with_exact_counts_and_an_exact_report(
    api: Api, backend: Backend
) -> None:
    # given 49,500 coupons: 500 redeemed, 500 revoked before, the rest available
    states = ["REDEEMED"] * 500 + ["REVOKED"] * 500 + ["AVAILABLE"] * 48_500
    series = api.series()
    codes = seed_coupons(backend, series, states)
    # and a file of them all, in mixed case, with 250 unknown codes and 250 repeats mixed in
    lines: list[str] = []
    expected: list[tuple[str, str]] = []
    state_of = dict(zip(codes, states, strict=True))
    outcome_of = {"REDEEMED": "redeemed", "REVOKED": "already_revoked", "AVAILABLE": "revoked"}
    for i, code in enumerate(codes):
        lines.append(code.lower() if i % 2 else code)
        expected.append((code, outcome_of[state_of[code]]))
        if i % 198 == 0 and i // 198 < 250:
            lines.append(f"UNKNOWN{i}")
            expected.append((f"UNKNOWN{i}", "not_found"))
            lines.append(codes[i // 2])
            expected.append((codes[i // 2], "duplicate_in_file"))
    assert len(lines) == 50_000
    job = accepted(upload(api, "\n".join(lines), couponSeriesId=series, reason="big"))
    # when a worker runs it in chunks of 500 (a hundred of them)
    drain(backend.db)
    # then the counts are exact
    done = job_of(api, job["jobId"])
    assert (done["state"], done["total"], done["processed"]) == ("SUCCEEDED", 50_000, 50_000)
    assert (done["revokedCount"], done["failedCount"], done["duplicateCount"]) == (
        48_500,
        1_250,
        250,
    )
    assert done["failedByCode"] == {"405": 500, "682": 750}
    # and so is the report, line for line
    rows = report(api, job["jobId"])[1:]
    assert [(r[0], r[1]) for r in rows] == expected
    counts = api.ok(api.get(f"/v2/coupon/series/{series}"))["counts"]
    assert counts == {"AVAILABLE": 0, "ISSUED": 0, "REDEEMED": 500, "REVOKED": 49_000}
    assert count_rows(backend, "coupon_history") == 48_500 + 1


def test_a_redeem_during_a_job_goes_through_and_the_job_reports_it_redeemed(
    api: Api, backend: Backend
) -> None:
    # given a 20,000-line job whose last coupon is issued to a customer
    series = api.series()
    codes = seed_coupons(backend, series, ["AVAILABLE"] * 20_000)
    customer = api.customer(mobile="+15550077")
    with backend.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE coupons SET state = 'ISSUED', customer_id = :c WHERE code = :code"),
            {"c": customer, "code": codes[-1]},
        )
    job = accepted(upload(api, "\n".join(codes), couponSeriesId=series))
    # when a worker runs it in chunks of 200 while the customer redeems that last coupon
    worker = threading.Thread(target=drain, args=(backend.db, 200))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while job_of(api, job["jobId"])["processed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        redeemed = api.redeem(customer, codes[-1])
        seen = job_of(api, job["jobId"])
    finally:
        worker.join(timeout=300)
    # then the redeem went through while the job was still running (it waited for at most
    # the chunk in flight, not the job) and the job tells the truth about that coupon
    assert redeemed.status_code == 200, redeemed.text
    assert seen["processed"] < seen["total"]
    done = job_of(api, job["jobId"])
    assert (done["state"], done["revokedCount"], done["failedByCode"]) == (
        "SUCCEEDED",
        19_999,
        {"405": 1},
    )
    assert report(api, job["jobId"])[-1][:3] == [codes[-1], "redeemed", "405"]


def test_a_finished_jobs_trail_row_is_undone_by_reinstate_with_its_request_id(
    api: Api, backend: Backend, mixed: dict[str, Any]
) -> None:
    # given a job's row in the trail (spec §7: its requestId is what reinstate undoes)
    job = accepted(upload(api, "OK1\nOK2\nRED1\n", couponSeriesId=mixed["series"], reason="r"))
    early = api.post("/v2/coupon/reinstate", {"revokeRequestId": job["jobId"]})
    drain(backend.db)
    row = api.ok(api.get("/v2/coupon/revocations"))["revocations"][0]
    assert (row["requestId"], row["jobId"], row["revokedCount"]) == (job["jobId"], job["jobId"], 2)

    # when that requestId is reinstated, and again
    undone = api.ok(api.post("/v2/coupon/reinstate", {"revokeRequestId": row["requestId"]}))
    again = api.ok(api.post("/v2/coupon/reinstate", {"revokeRequestId": row["requestId"]}))

    # then (and not while the job was queued: 9026) its two coupons are back, once
    assert (early.status_code, error_code(early)) == (409, 9026)
    assert sorted(c["couponCode"] for c in undone["reinstatedCoupons"]) == ["OK1", "OK2"]
    assert again["reinstatedCoupons"] == [] and again["failedCount"] == 2
    for code in ("OK1", "OK2"):
        assert api.coupon(mixed["coupons"][code]["couponId"])["state"] == "ISSUED"
    assert api.ok(api.get("/v2/coupon/revocations"))["revocations"][0]["reinstatedCount"] == 2
    # and the job's own undo then finds nothing left to reinstate by it
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)
    assert api.ok(api.get(f"{JOBS}/{undo['jobId']}"))["revokedCount"] == 0


def test_a_job_too_large_for_one_request_is_pointed_to_its_undo(
    api: Api, backend: Backend, mixed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from coupons.services import revoke as revoke_service

    monkeypatch.setattr(revoke_service, "MAX_REINSTATE_BY_REQUEST", 1)
    job = accepted(upload(api, "OK1\nOK2\n", couponSeriesId=mixed["series"]))
    drain(backend.db)

    refused = api.post("/v2/coupon/reinstate", {"revokeRequestId": job["jobId"]})

    assert (refused.status_code, error_code(refused)) == (400, 9002)
    assert "revoke/jobs/{jobId}/undo" in refused.json()["errors"][0]["message"]
    assert api.coupon(mixed["coupons"]["OK1"]["couponId"])["state"] == "REVOKED"


def test_staging_a_whole_series_has_its_own_statement_timeout_on_postgresql(
    api: Api, backend: Backend
) -> None:
    # the role's statement_timeout (10 s, as docs/deployment.md sets it) refused a job over
    # a series big enough to take longer to stage, on every try
    if backend.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    from sqlalchemy import event

    seen: list[str] = []

    def during(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO revoke_job_lines") and "SELECT" in statement:
            seen.append(conn.exec_driver_sql("SHOW statement_timeout").scalar())

    series_id = api.series(codes=["ALL-1", "ALL-2"])
    event.listen(backend.db.engine, "after_cursor_execute", during)
    try:
        accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "campaign off"}))
    finally:
        event.remove(backend.db.engine, "after_cursor_execute", during)
    with backend.db.engine.connect() as conn:
        after = conn.exec_driver_sql("SHOW statement_timeout").scalar()

    assert seen == ["10min"]
    assert after != "10min"
