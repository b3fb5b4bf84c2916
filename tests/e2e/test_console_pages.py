"""The console's pages say what happened in words (spec §9: a job's "counts by outcome"),
show long lists a page at a time, answer an undo or reinstate sent twice as the first did,
and carry what a person or a screen reader needs with a refusal."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from coupons.services import lookup
from tests.conftest import Backend
from tests.e2e.conftest import PAST, Api
from tests.e2e.test_cli import unique
from tests.e2e.test_console_http import ORIGIN, _csrf, _form_key, _previewed, signed_in
from tests.e2e.test_revoke_jobs import JOBS, accepted, drain, job_of, upload

__all__ = ["signed_in"]  # the fixture, used by name

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def test_a_failed_job_says_why_and_counts_its_lines_by_outcome(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    # given a codes file naming a revocable code, one revoked already, one the series lacks,
    # and two more; the job's first chunk of three runs, then the campaign ends
    codes = [unique("OUT").upper() for _ in range(4)]
    series_id = api.series(codes=codes)
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [codes[1]]}))
    lines = [codes[0], codes[1], unique("NONE").upper(), codes[2], codes[3]]
    job = accepted(upload(api, "\n".join(lines), couponSeriesId=series_id))
    drain(backend.db, chunk_size=3, chunks=1)
    api.ok(api.request("PATCH", f"/v2/coupon/series/{series_id}", json={"validTill": PAST}))

    # when the rest of the job runs, and its page is shown
    drain(backend.db, chunk_size=3)
    shown = signed_in.get(f"/console/jobs/{job['jobId']}")

    # then the API and the page both count the failed lines by outcome (682 alone would
    # blur "already revoked" and "not found"), and the page says why the job stopped
    entity = job_of(api, job["jobId"])
    assert entity["state"] == "FAILED"
    assert entity["failedByOutcome"] == {"already_revoked": 1, "not_found": 1}
    assert entity["failedByCode"] == {"682": 2}
    text = shown.text
    assert "Not revoked, by outcome" in text
    assert "Already revoked (<code>already_revoked</code>): 1" in text
    assert "Not found (<code>not_found</code>): 1" in text
    assert f"The job stopped on an error: <bdi>{entity['error']}</bdi>." in text
    assert "712" in entity["error"]
    assert "Finished</dt>" in text and "Started</dt>" in text


def test_a_job_names_a_refused_code_in_words_not_only_its_number(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    # given a job without a series over a GENERIC series' code (a single-code revoke of it
    # without a customer is refused with 108)
    code = unique("GEN").upper()
    api.series("GENERIC", generic_code=code)
    job = accepted(upload(api, code))
    drain(backend.db)

    # when its page is shown
    shown = signed_in.get(f"/console/jobs/{job['jobId']}")

    # then the refusal reads as the API's message, under the outcome it has in the report
    assert "Refused by its series (<code>refused</code>): 1" in shown.text
    assert "Unsupported coupons series config with client handling type GENERIC (error 108)" in (
        shown.text
    )
    assert "error (error 108)" not in shown.text


def test_an_undo_job_lists_what_it_did_not_reinstate(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    # given a revoke job whose coupon was reinstated by hand before the job was undone
    code = unique("UNDO").upper()
    series_id = api.series(codes=[code])
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id}))
    drain(backend.db)
    api.ok(api.post("/v2/coupon/reinstate", {"couponSeriesId": series_id, "couponCodes": [code]}))
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [code]}))
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    drain(backend.db)

    # when the undo's page is shown
    shown = signed_in.get(f"/console/jobs/{undo['jobId']}").text

    # then its failures are what it did not reinstate, not "not revoked"
    assert "Not reinstated, by outcome" in shown
    assert "(<code>changed_since</code>): 1" in shown
    assert "Not revoked" not in shown


def test_a_reinstate_sent_twice_answers_as_the_first_did(signed_in: TestClient, api: Api) -> None:
    # given a revoked coupon, and its page's Reinstate form
    series_id = api.series(codes=[unique("TWICE").upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique('two')}@example.com"))
    api.ok(api.revoke({"couponCodes": [coupon["couponCode"]]}))
    shown = signed_in.get(f"/console/coupons/{coupon['couponId']}")
    form = {"csrf": _csrf(signed_in), "form_key": _form_key(shown), "reason": ""}

    # when it is sent twice (a double click)
    address = f"/console/coupons/{coupon['couponId']}/reinstate"
    sent = [
        signed_in.post(address, data=form, headers=ORIGIN, follow_redirects=False) for _ in range(2)
    ]

    # then both lead to the coupon reinstated, and it was reinstated once
    assert [s.status_code for s in sent] == [303, 303]
    assert all(s.headers["location"].endswith("?notice=reinstated") for s in sent)
    actions = [h["action"] for h in api.coupon(coupon["couponId"])["history"]]
    assert actions == ["ISSUE", "REVOKE", "REINSTATE"]


def test_an_undo_sent_twice_answers_as_the_first_did(signed_in: TestClient, api: Api) -> None:
    # given a revoke confirmed in the console, and its result page's undo form
    coupon, confirm = _previewed(signed_in, api, "UNDO2", "una")
    revoked = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    undo = {
        "csrf": confirm["csrf"],
        "request_id": revoked.headers["x-request-id"],
        "form_key": _form_key(revoked),
    }

    # when "Undo this revoke" is sent twice
    sent = [signed_in.post("/console/undo", data=undo, headers=ORIGIN) for _ in range(2)]

    # then the second shows what the first did, not "Nothing undone"
    for page in sent:
        assert page.status_code == 200
        assert "<title>Undone" in page.text, page.text
    actions = [h["action"] for h in api.coupon(coupon["couponId"])["history"]]
    assert actions == ["ISSUE", "REVOKE", "REINSTATE"]


def test_each_activity_undo_is_described_by_its_request(signed_in: TestClient, api: Api) -> None:
    # given two revoke calls
    for name in ("ONE", "TWO"):
        api.ok(api.revoke({"couponCodes": [api.issue(api.series(codes=[unique(name).upper()]),
               api.customer(email=f"{unique(name)}@example.com"))["couponCode"]]}))  # fmt: skip

    # when the activity page is shown
    text = signed_in.get("/console/activity").text

    # then each "Undo" button (its name stays "Undo") is described by its row's request cell
    described = re.findall(r'aria-describedby="(request-\d+)">Undo</button>', text)
    assert len(described) >= 2 and len(set(described)) == len(described)
    for cell in described:
        assert f'<td id="{cell}">' in text


def test_an_activity_filter_error_names_the_fields_by_their_labels(
    signed_in: TestClient,
) -> None:
    # when the activity is filtered by a "To" before its "From"
    shown = signed_in.get(
        "/console/activity", params={"since": "2026-02-01", "until": "2026-01-01"}
    )

    # then the message speaks of From and To, the form's labels, not the API's words
    assert shown.status_code == 400
    message = re.search(r'role="alert">([^<]*)<', shown.text)
    assert message is not None
    assert "To" in message.group(1) and "From" in message.group(1)
    assert not re.search(r"\b(since|until)\b", message.group(1), re.IGNORECASE)


def test_a_throttled_sign_in_page_says_when_to_try_again(client: TestClient) -> None:
    # given as many failed sign-ins as the throttle allows
    limit = client.app.state.authenticator.throttle.limit  # type: ignore[attr-defined]
    email = f"{unique('locked')}@example.com"
    form = {"email": email, "password": "wrong", "next": "/console/search"}
    for _ in range(limit):
        client.post("/console/signin", data=form, headers=ORIGIN)

    # when one more is tried
    refused = client.post("/console/signin", data=form, headers=ORIGIN)

    # then it is refused with the seconds to wait, in words and in the header
    assert refused.status_code == 429
    seconds = refused.headers["Retry-After"]
    assert f"Try again in {seconds} seconds." in refused.text


@pytest.fixture
def page_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists of coupons three to a page, so that a few coupons make several pages."""
    monkeypatch.setattr(lookup, "PAGE", 3)


def _pages(client: TestClient, address: str) -> list[str]:
    """Each page of a list, following its "Next coupons" link to the end."""
    pages = []
    while address:
        shown = client.get(address)
        assert shown.status_code == 200, shown.text
        pages.append(shown.text)
        found = re.search(r'<a href="([^"]+)">Next coupons</a>', shown.text)
        address = html.unescape(found.group(1)) if found else ""
    return pages


@pytest.mark.usefixtures("page_of_three")
def test_a_customers_coupons_come_a_page_at_a_time_and_select_all_takes_one_page(
    signed_in: TestClient, api: Api
) -> None:
    # given a customer holding five coupons (a page holds three here)
    customer_id = api.customer(email=f"{unique('many')}@example.com")
    series_id = api.series(codes=[unique("MANY").upper() for _ in range(5)])
    coupons = [api.issue(series_id, customer_id)["couponId"] for _ in range(5)]

    # when their pages are followed, and "Select all unredeemed" is used on the first
    pages = _pages(signed_in, f"/console/customers/{customer_id}")
    select_all = re.search(r'href="([^"]+)">Select all unredeemed', pages[0])
    assert select_all is not None
    ticked = signed_in.get(html.unescape(select_all.group(1))).text

    # then each coupon is on exactly one page, and select all ticks that page's three only
    shown = [[int(i) for i in re.findall(r'name="coupon" value="(\d+)"', p)] for p in pages]
    assert shown == [coupons[:3], coupons[3:]]
    assert len(re.findall(r"checked>", ticked)) == 3


@pytest.mark.usefixtures("page_of_three")
def test_a_code_held_by_many_is_found_a_page_at_a_time(signed_in: TestClient, api: Api) -> None:
    # given a GENERIC code held by five customers
    code = unique("SHARED").upper()
    series_id = api.series("GENERIC", generic_code=code)
    for n in range(5):
        api.issue(series_id, api.customer(email=f"{unique(f'h{n}')}@example.com"))

    # when it is searched for, and every page followed
    pages = _pages(signed_in, f"/console/search?q={code}")

    # then the five coupons come three, then two, each once
    rows = [re.findall(r'<a href="/console/coupons/(\d+)">', p) for p in pages]
    assert [len(r) for r in rows] == [3, 2]
    assert len({i for r in rows for i in r}) == 5


def test_a_list_cursor_that_is_not_one_is_a_readable_refusal(signed_in: TestClient) -> None:
    # when a search or a customer's page is asked for with a cursor it never gave
    searched = signed_in.get("/console/search", params={"q": "ABC", "after": "forged"})

    # then the page says so, as the API's 9002, not a fault
    assert searched.status_code == 400
    assert "(error 9002)" in searched.text


def test_undo_job_sent_twice_leads_to_the_one_undo(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    # given a finished revoke job, and its page's "Undo job" form
    series_id = api.series(codes=[unique("UJ").upper()])
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id}))
    drain(backend.db)
    shown = signed_in.get(f"/console/jobs/{job['jobId']}")
    form = {"csrf": _csrf(signed_in), "form_key": _form_key(shown)}

    # when it is sent twice (a double click)
    sent = [
        signed_in.post(
            f"/console/jobs/{job['jobId']}/undo", data=form, headers=ORIGIN, follow_redirects=False
        )
        for _ in range(2)
    ]

    # then both lead to the same undo job, and there is one
    assert [s.status_code for s in sent] == [303, 303]
    assert sent[0].headers["location"] == sent[1].headers["location"]
    kinds = [j["kind"] for j in api.ok(api.get(JOBS))["jobs"]]
    assert kinds.count("REINSTATE") == 1


def test_a_bulk_revoke_of_a_generic_series_says_how_its_code_is_revoked(
    signed_in: TestClient, api: Api
) -> None:
    # given a GENERIC series
    code = unique("GENB").upper()
    series_id = api.series("GENERIC", generic_code=code)

    # when its code is bulk revoked from the console
    shown = signed_in.post(
        "/console/bulk",
        data={
            "csrf": _csrf(signed_in),
            "series": str(series_id),
            "codes": code,
            "reason": "leak",
            "step": "preview",
        },
        headers=ORIGIN,
    )

    # then the refusal says what works instead, beside the API's words
    assert shown.status_code == 400
    assert "(error 108)" in shown.text
    assert "revoked holder by holder: search for the customer and revoke their coupon" in (
        shown.text
    )
