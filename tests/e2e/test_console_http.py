"""Spec §9 at the HTTP level: the console's guards, without a browser (cheap to run)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient

from coupons.domain import errors
from coupons.services import lookup
from tests.conftest import Backend
from tests.e2e.conftest import PAST, Api, error_code
from tests.e2e.test_cli import create_person, run, unique
from tests.e2e.test_client_gone import hang_up_half_way
from tests.reliability.live import threaded_server

BASE = "http://testserver"
ORIGIN = {"Origin": BASE}

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def sign_in_new_person(backend: Backend, client: TestClient, name: str) -> TestClient:
    """`client`, holding the session cookie of a new support person of acme."""
    return sign_in_as(backend, client, f"{unique(name)}@example.com")


def sign_in_as(backend: Backend, client: TestClient, email: str) -> TestClient:
    """`client`, holding the session cookie of a new support person of acme with `email`."""
    create_person(backend.url, email)
    answer = client.post(
        "/console/signin",
        data={"email": email, "password": "pw-123456", "next": "/console/search"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


@pytest.fixture
def signed_in(backend: Backend, client: TestClient) -> TestClient:
    """A client holding a support person's session cookie."""
    return sign_in_new_person(backend, client, "sam")


def test_a_sign_in_from_another_origin_or_with_none_is_refused(client: TestClient) -> None:
    form = {"email": "a@example.com", "password": "x"}

    foreign = client.post("/console/signin", data=form, headers={"Origin": "http://evil.test"})
    missing = client.post("/console/signin", data=form)

    assert foreign.status_code == missing.status_code == 403
    assert "nothing was changed" in foreign.text


def test_sign_in_never_redirects_off_the_console(backend: Backend, client: TestClient) -> None:
    email = f"{unique('kim')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "viewer",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )
    climbing = ("/console/../v2/coupon/2", "/console/..%2fdocs", "/console/%252e%252e/docs")
    for target in ("https://evil.test/", "//evil.test/x", "/console/\\evil", "/docs", *climbing):
        answer = client.post(
            "/console/signin",
            data={"email": email, "password": "pw-123456", "next": target},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/console/search", target


def test_pages_need_a_session_and_send_strict_security_headers(client: TestClient) -> None:
    answer = client.get("/console/coupons/1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/signin?next=/console/coupons/1")

    sign_in_page = client.get("/console/signin")
    assert sign_in_page.status_code == 200
    policy = sign_in_page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert sign_in_page.headers["x-frame-options"] == "DENY"
    assert sign_in_page.headers["cache-control"] == "no-store"


def test_every_console_response_downloads_included_is_not_stored_or_sniffed(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import drain

    # Given a series and a finished preview job of one of its codes
    code = unique("HDR").upper()
    series_id = api.series(codes=[code])
    preview = _bulk(signed_in, series=str(series_id), codes=code, step="preview")
    job = preview.headers["location"]
    drain(backend.db)

    # When every kind of console response is asked for: pages, redirects, downloads, JSON,
    # static files, refusals and a missing page
    answers = {
        "page": signed_in.get("/console/search"),
        "redirect": signed_in.get("/console/", follow_redirects=False),
        "bare address": signed_in.get("/console", follow_redirects=False),
        "coupons CSV": signed_in.get(f"/console/series/{series_id}/coupons.csv"),
        "job report": signed_in.get(f"{job}/report"),
        "job progress": signed_in.get(f"{job}/progress"),
        "static file": signed_in.get("/console/static/console.js"),
        "missing page": signed_in.get("/console/nowhere"),
        "refused form": signed_in.post(f"{job}/cancel", data={}),
        "NUL in a path": signed_in.get("/console/jobs/%00/report"),
    }

    # Then each is kept by no cache and sniffed by no browser, as the pages always were
    for what, answer in answers.items():
        assert answer.headers.get("cache-control") == "no-store", (what, answer.headers)
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), what
    assert answers["coupons CSV"].text.startswith("couponId,couponCode,")
    assert code in answers["coupons CSV"].text
    assert answers["job report"].text.startswith("code,outcome")
    assert answers["job progress"].json()["state"] == "SUCCEEDED"
    assert answers["refused form"].status_code == 403


def test_a_fault_shows_a_plain_page_with_a_reference_and_no_stack_trace(
    signed_in: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(lookup, "search", broken)

    answer = signed_in.get("/console/search?q=X", headers={"X-Request-Id": "req-fault-1"})

    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "req-fault-1" in answer.text
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("path", "use_case"),
    [("/console/coupons/1", "coupon_detail"), ("/console/search?q=ANY-1", "search")],
)
def test_a_database_outage_is_a_503_page_that_says_so_never_not_found(
    signed_in: TestClient, monkeypatch: pytest.MonkeyPatch, path: str, use_case: str
) -> None:
    def unavailable(*args: object) -> None:
        raise errors.DatabaseUnavailable(2)

    monkeypatch.setattr(lookup, use_case, unavailable)

    answer = signed_in.get(path)

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.headers["content-type"].startswith("text/html")
    assert "unreachable" in answer.text and "error 9023" in answer.text


def test_an_oversized_form_is_refused_before_it_is_read(signed_in: TestClient) -> None:
    answer = signed_in.post(
        "/console/revoke",
        content=b"a=" + b"x" * (1024 * 1024 + 1),
        headers={**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 413
    assert "too much" in answer.text


def test_an_unknown_console_path_is_an_html_page_not_the_apis_json(signed_in: TestClient) -> None:
    answer = signed_in.get("/console/nowhere")

    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "There is no such page." in answer.text


def test_the_api_keeps_its_json_bodies_next_to_the_console(api: Api) -> None:
    # The console reads its own forms; every other path still treats bodies as JSON
    answer = api.request("POST", "/v2/coupon/revoke", content=b"not json")

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == 9001


def test_one_search_box_finds_by_code_coupon_id_mobile_email_and_external_id(
    signed_in: TestClient, api: Api
) -> None:
    # Given a customer holding one coupon
    series_id = api.series(codes=["CODE-AAA-1", "CODE-AAA-2"])
    customer_id = api.customer("+44 7700 900555", email="Lee@Example.com", externalId="EXT-9")
    issued = api.issue(series_id, customer_id)

    def lands_on(text: str) -> str:
        answer = signed_in.get("/console/search", params={"q": text}, follow_redirects=False)
        assert answer.status_code == 303, (text, answer.status_code)
        return str(answer.headers["location"])

    # Then each reading of the box finds its one match
    coupon_page = f"/console/coupons/{issued['couponId']}"
    assert lands_on(issued["couponCode"].lower()) == coupon_page
    assert (
        lands_on(" 0044 7700 900555 ".replace("0044", "44")) == f"/console/customers/{customer_id}"
    )
    assert lands_on("lee@example.COM") == f"/console/customers/{customer_id}"
    assert lands_on("EXT-9") == f"/console/customers/{customer_id}"

    # And a number that is both a coupon id and another coupon's code lists both
    other_series = api.series(codes=[str(issued["couponId"])])
    listed = signed_in.get("/console/search", params={"q": str(issued["couponId"])})
    assert listed.status_code == 200
    assert coupon_page in listed.text
    assert listed.text.count("/console/coupons/") == 2, other_series

    # And nothing found says so
    assert "Nothing matches" in signed_in.get("/console/search", params={"q": "zzz"}).text


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/console/search").text)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize(
    "series", ["1a", "#1", "-1", "1.0", "<b>", "0", "99999999999999999999", "4611686018427387905"]
)
def test_a_bulk_revoke_naming_a_series_that_is_no_id_is_9002_and_starts_no_job(
    signed_in: TestClient, api: Api, series: str
) -> None:
    # Given a code in a series the agent did not mean
    code = unique("BIG").upper()
    api.series(codes=[code])

    def start(with_series: str) -> httpx.Response:
        form = {
            "csrf": _csrf(signed_in),
            "series": with_series,
            "codes": code,
            "reason": "leak",
            "step": "start",
        }
        sent: httpx.Response = signed_in.post(
            "/console/bulk", data=form, headers=ORIGIN, follow_redirects=False
        )
        return sent

    # When they start a bulk revoke with a Series that is not a series id
    answer = start(series)

    # Then the page names the field as the API would, and no job exists
    assert answer.status_code == 400, answer.text
    assert "Series: must be a whole number from 1 to 4611686018427387904 (error 9002)" in (
        html.unescape(answer.text)
    )
    assert 'value="' + html.escape(series) + '"' in answer.text
    assert api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"] == []

    # And an empty Series still means "look the codes up in the organisation"
    assert start(" ").status_code == 303
    [job] = api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"]
    assert job["couponSeriesId"] is None


@pytest.mark.parametrize("bad", ["1a", "-1", "0", "99999999999999999999"])
def test_a_revoke_picking_a_coupon_id_that_is_no_id_is_9002_and_revokes_nothing(
    signed_in: TestClient, api: Api, bad: str
) -> None:
    # Given a coupon the agent picked
    series_id = api.series(codes=[unique("PICK").upper()])
    picked = api.issue(series_id, api.customer(email=f"{unique('pat')}@example.com"))

    # When the revoke page or its confirmed form also names something that is not a coupon id
    shown = signed_in.get("/console/revoke", params={"coupon": [str(picked["couponId"]), bad]})
    answer = signed_in.post(
        "/console/revoke",
        data={
            "csrf": _csrf(signed_in),
            "coupon": [str(picked["couponId"]), bad],
            "reason": "leak",
            "step": "confirm",
        },
        headers=ORIGIN,
    )

    # Then the page says so and the picked coupon is untouched
    for refused in (shown, answer):
        assert refused.status_code == 400, refused.text
        assert "Coupon: must be a whole number" in refused.text and "error 9002" in refused.text
    assert "Confirm revoke" not in shown.text
    assert api.coupon(picked["couponId"])["state"] == "ISSUED"


def test_a_coupon_of_an_expired_series_is_not_offered_for_revoke_and_says_why(
    signed_in: TestClient, api: Api
) -> None:
    # Given a customer holding a coupon of a live series and one of an expired series
    holder = api.customer(email=f"{unique('old')}@example.com")
    live = api.issue(api.series(codes=[unique("LIVE").upper()]), holder)
    old_series = api.series(codes=[unique("OLD").upper()])
    old = api.issue(old_series, holder)
    api.ok(api.request("PATCH", f"/v2/coupon/series/{old_series}", json={"validTill": PAST}))

    # When the agent opens the expired coupon and the customer
    coupon_page = signed_in.get(f"/console/coupons/{old['couponId']}")
    live_page = signed_in.get(f"/console/coupons/{live['couponId']}")
    customer_page = signed_in.get(f"/console/customers/{holder}")

    # Then only the live coupon offers a revoke, and the expired one says why
    assert coupon_page.status_code == live_page.status_code == customer_page.status_code == 200
    assert ">Revoke</button>" not in coupon_page.text
    assert "series expired" in coupon_page.text
    assert ">Revoke</button>" in live_page.text
    assert "series expired" not in live_page.text
    boxes = dict(
        re.findall(r'<input type="checkbox"[^>]*value="(\d+)"([^>]*)>', customer_page.text)
    )
    assert "disabled" in boxes[str(old["couponId"])]
    assert "disabled" not in boxes[str(live["couponId"])]
    assert customer_page.text.count("series expired") == 1


def _shared_code_holder(api: Api, series_type: str, prefix: str) -> tuple[str, int, int]:
    """A new series of one shared code (GENERIC or GENERIC_REDEEMABLE), and a new customer."""
    code = unique(prefix).upper()
    series = api.series(series_type, generic_code=code)
    holder = api.customer(email=f"{unique(prefix.lower())}@example.com")
    return code, series, holder


def test_a_generic_redeemable_coupon_is_not_offered_for_revoke(
    signed_in: TestClient, api: Api
) -> None:
    # Given a GENERIC_REDEEMABLE coupon back in the ISSUED state (redeemed, then reactivated),
    # which the API refuses to revoke (811) whichever way it is asked
    code, series, holder = _shared_code_holder(api, "GENERIC_REDEEMABLE", "GR")
    redeemed = api.ok(api.redeem(holder, code))["redemptions"][0]
    api.ok(
        api.request(
            "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": [redeemed["redemptionId"]]}
        )
    )
    [coupon] = api.ok(api.get(f"/v2/coupon/series/{series}/coupons"))["coupons"]
    assert coupon["state"] == "ISSUED"

    coupon_page = signed_in.get(f"/console/coupons/{coupon['couponId']}")

    assert coupon_page.status_code == 200
    assert ">Revoke</button>" not in coupon_page.text
    assert "GENERIC_REDEEMABLE series&#39; coupons cannot be revoked" in coupon_page.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/console/search", {"GET", "HEAD"}),
        ("GET", "/console/signout", {"POST"}),
        ("DELETE", "/console/revoke", {"GET", "HEAD", "POST"}),
        ("POST", "/console/static/console.css", {"GET", "HEAD"}),
    ],
)
def test_a_console_405_says_which_methods_the_path_takes(
    signed_in: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    answer = signed_in.request(method, path, headers=ORIGIN)

    assert answer.status_code == 405, answer.text
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == allowed


@pytest.mark.parametrize(("path", "status"), [("/nonexist", 404), ("/signout", 405)])
def test_a_missing_page_or_method_shows_the_navigation_to_a_signed_in_person_only(
    signed_in: TestClient, path: str, status: int
) -> None:
    # Given a browser with no session next to the signed-in one
    anonymous = TestClient(signed_in.app, raise_server_exceptions=False)

    # When both open a page that does not exist, or a form's path with GET
    answer = signed_in.get(f"/console{path}")
    stranger = anonymous.get(f"/console{path}")

    # Then both keep the status; only the signed-in person sees navigation and who they are
    assert answer.status_code == stranger.status_code == status
    for name in ("Search", "Bulk revoke", "Activity", "Series"):
        assert f">{name}</a>" in answer.text
        assert f">{name}</a>" not in stranger.text
    assert ">Sign out</button>" in answer.text and "Signed in as" in answer.text
    assert "Sign out" not in stranger.text and "Signed in as" not in stranger.text


def test_picking_one_of_a_customers_two_coupons_of_a_shared_code_revokes_and_reinstates_it_alone(
    signed_in: TestClient, api: Api
) -> None:
    # Given a customer holding a GENERIC series' shared code twice
    _, series, holder = _shared_code_holder(api, "GENERIC", "SHARED")
    first, second = api.issue(series, holder), api.issue(series, holder)

    # When the agent picks the first, previews and confirms the revoke, then reinstates it
    # from its coupon page
    form = {"csrf": _csrf(signed_in), "coupon": str(first["couponId"]), "reason": "one"}
    preview = signed_in.post("/console/revoke", data=form, headers=ORIGIN)
    confirmed = signed_in.post("/console/revoke", data={**form, "step": "confirm"}, headers=ORIGIN)
    after_revoke = [api.coupon(c["couponId"])["state"] for c in (first, second)]
    reinstated = signed_in.post(
        f"/console/coupons/{first['couponId']}/reinstate",
        data={"csrf": form["csrf"], "reason": "back"},
        headers=ORIGIN,
        follow_redirects=False,
    )

    # Then the customer page names their two boxes apart
    page = signed_in.get(f"/console/customers/{holder}").text
    for coupon in (first, second):
        assert f'aria-label="Pick {coupon["couponCode"]} (coupon {coupon["couponId"]})"' in page
    # And only the picked coupon was in the preview, revoked and reinstated
    assert preview.status_code == confirmed.status_code == 200
    assert "<strong>1</strong> will be revoked" in preview.text
    assert after_revoke == ["REVOKED", "ISSUED"]
    assert reinstated.status_code == 303, reinstated.text
    assert [api.coupon(c["couponId"])["state"] for c in (first, second)] == ["ISSUED", "ISSUED"]


@pytest.mark.parametrize(
    "path", ["/console/search?q=a%00b", "/console/jobs/%00", "/console/jobs/%00/report"]
)
def test_a_nul_in_a_console_path_or_query_is_a_400_page_naming_it(
    signed_in: TestClient, path: str
) -> None:
    answer = signed_in.get(path)

    assert answer.status_code == 400, answer.text
    assert "must not contain NUL characters" in answer.text and "error 9002" in answer.text
    assert 'action="/console/signout"' in answer.text  # the page keeps its navigation


def test_a_nul_in_a_console_form_is_a_400_page_and_changes_nothing(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon the agent picked
    series_id = api.series(codes=[unique("NULF").upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique('nul')}@example.com"))
    csrf = _csrf(signed_in)

    # when the revoke is confirmed with a reason holding NUL, and an undo names such an id
    revoke = signed_in.post(
        "/console/revoke",
        data={
            "csrf": csrf,
            "coupon": str(coupon["couponId"]),
            "reason": "r\x00",
            "step": "confirm",
        },
        headers=ORIGIN,
    )
    undo = signed_in.post(
        "/console/undo", data={"csrf": csrf, "request_id": "ab\x00c"}, headers=ORIGIN
    )

    # then both are refused as the API refuses them, and the coupon is untouched
    for answer in (revoke, undo):
        assert answer.status_code == 400, answer.text
        assert "must not contain NUL characters" in answer.text
    assert api.coupon(coupon["couponId"])["state"] == "ISSUED"


@pytest.mark.parametrize(
    "token", ["\u00e9", "\u00e9" * 32, b"\xff"], ids=["accented", "token-length", "not-utf8"]
)
def test_a_form_token_past_ascii_is_refused_as_a_wrong_token_and_changes_nothing(
    signed_in: TestClient, api: Api, token: str | bytes
) -> None:
    # given a coupon the agent picked
    series_id = api.series(codes=[unique("CSRFX").upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique('csrfx')}@example.com"))
    coupon_id = str(coupon["couponId"])

    # when a confirmed revoke and a sign-out carry a token that is no ASCII text
    raw = token if isinstance(token, bytes) else token.encode()
    fields = b"coupon=" + coupon_id.encode() + b"&reason=x&step=confirm&csrf="
    form = {"Content-Type": "application/x-www-form-urlencoded", **ORIGIN}
    revoke = signed_in.post("/console/revoke", content=fields + raw, headers=form)
    sign_out = signed_in.post("/console/signout", content=b"csrf=" + raw, headers=form)

    # then both get the wrong-token page (403, not a fault), and nothing changed
    for answer in (revoke, sign_out):
        assert answer.status_code == 403, answer.text
        assert "nothing was changed" in answer.text
    assert api.coupon(coupon["couponId"])["state"] == "ISSUED"
    assert signed_in.get("/console/search", follow_redirects=False).status_code == 200


def test_activity_offers_undo_for_a_job_only_while_the_undo_would_be_taken(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted, drain

    # given a finished revoke job of a whole series
    series_id = api.series(codes=[unique("ACT").upper(), unique("ACT").upper()])
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "campaign off"}))
    undo_form = f'action="/console/jobs/{job["jobId"]}/undo"'
    queued = signed_in.get("/console/activity").text
    drain(backend.db)
    finished = signed_in.get("/console/activity").text

    # when it is undone (the undo job still queued)
    accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))
    undone = signed_in.get("/console/activity").text

    # then its row offered Undo only while finished and not undone yet
    assert undo_form not in queued  # a queued job revoked nothing yet: no row
    assert undo_form in finished
    assert undo_form not in undone


def test_activity_offers_no_undo_for_a_job_whose_coupons_were_all_reinstated(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted, drain

    # given a finished revoke job of a whole series
    codes = [unique("ACTR").upper(), unique("ACTR").upper()]
    series_id = api.series(codes=codes)
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "campaign off"}))
    drain(backend.db)
    undo_form = f'action="/console/jobs/{job["jobId"]}/undo"'
    before = signed_in.get("/console/activity").text

    # when one coupon is reinstated by hand, and then the other
    reinstate = "/v2/coupon/reinstate"
    api.post(reinstate, {"couponSeriesId": series_id, "couponCodes": codes[:1]})
    partly = signed_in.get("/console/activity").text
    assert undo_form in signed_in.get(f"/console/jobs/{job['jobId']}").text
    api.post(reinstate, {"couponSeriesId": series_id, "couponCodes": codes[1:]})
    wholly = signed_in.get("/console/activity").text

    # then Undo is offered while one of them is still revoked by the job, and not after,
    # on the activity page and on the job's own page alike
    assert undo_form in before and undo_form in partly
    assert undo_form not in wholly
    assert undo_form not in signed_in.get(f"/console/jobs/{job['jobId']}").text


def _form_key(page: httpx.Response) -> str:
    found = re.search(r'name="form_key" value="([0-9a-f]{32})"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _previewed(
    signed_in: TestClient, api: Api, code: str, holder: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """A series with one issued coupon, previewed for revoke in the console: the coupon, and
    the confirm form as the preview page hands it out (its key included)."""
    series_id = api.series(codes=[unique(code).upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique(holder)}@example.com"))
    form = {"csrf": _csrf(signed_in), "coupon": str(coupon["couponId"]), "reason": "leak"}
    preview = signed_in.post("/console/revoke", data=form, headers=ORIGIN)
    return coupon, {**form, "step": "confirm", "form_key": _form_key(preview)}


def test_a_confirmed_revoke_sent_again_answers_the_first_result_and_revokes_nothing_more(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon revoked from the console, then undone
    coupon, confirm = _previewed(signed_in, api, "AGAIN", "ann")
    first = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    request_id = first.headers["x-request-id"]
    undone = signed_in.post(
        "/console/undo", data={"csrf": confirm["csrf"], "request_id": request_id}, headers=ORIGIN
    )
    assert first.status_code == undone.status_code == 200

    # when the confirmed form is sent again (Back, then send), and once more with another reason
    again = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    changed = signed_in.post(
        "/console/revoke", data={**confirm, "reason": "another"}, headers=ORIGIN
    )

    # then the resend shows the first result under the first request id and changes nothing,
    # says it is a resend, shows the coupon as it is now, and offers no undo of what was undone
    assert again.status_code == 200 and "Revoked <strong>1</strong> of 1" in again.text
    assert again.headers["x-request-id"] == request_id
    assert "already sent with this form" in again.text
    assert "ISSUED" in again.text and "nothing to undo" in again.text
    assert "Undo this revoke" not in again.text
    assert "already sent" not in first.text and "Undo this revoke" in first.text
    # and the changed form is a revoke of its own
    assert changed.status_code == 200 and changed.headers["x-request-id"] != request_id
    actions = [h["action"] for h in api.coupon(coupon["couponId"])["history"]]
    assert actions == ["ISSUE", "REVOKE", "REINSTATE", "REVOKE"]
    assert [h["reason"] for h in api.coupon(coupon["couponId"])["history"]][-1] == "another"


def test_a_bulk_start_sent_twice_starts_one_job(signed_in: TestClient, api: Api) -> None:
    # given the bulk page's form, filled in
    code = unique("TWICE").upper()
    series_id = api.series(codes=[code])
    page = signed_in.get("/console/bulk")
    form = {
        "csrf": _csrf(signed_in),
        "form_key": _form_key(page),
        "series": str(series_id),
        "codes": code,
        "reason": "leak",
        "step": "start",
    }

    # when it is sent twice, then once with other codes
    sent = [
        signed_in.post("/console/bulk", data=data, headers=ORIGIN, follow_redirects=False)
        for data in (form, form, {**form, "codes": code + "\nOTHER-1"})
    ]

    # then the first two lead to one job, and the changed form to a job of its own
    assert [s.status_code for s in sent] == [303, 303, 303]
    first, again, other = (s.headers["location"] for s in sent)
    assert first == again and other != first
    assert len(api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"]) == 2


def _bulk(client: TestClient, files: Any = None, **fields: str) -> httpx.Response:
    """The bulk page's form, sent with `fields` (a codes file in `files`)."""
    form = {"csrf": _csrf(client), "series": "", "reason": "leak", "step": "start", **fields}
    sent: httpx.Response = client.post(
        "/console/bulk", data=form, files=files, headers=ORIGIN, follow_redirects=False
    )
    return sent


def test_codes_pasted_past_a_mebibyte_start_a_job_like_a_file_of_them(
    signed_in: TestClient, api: Api
) -> None:
    # given 100,000 pasted codes (1.3 MB, past the form parser's default field size)
    pasted = "\n".join(f"PASTE{n:07d}" for n in range(100_000))
    no_file = {"codes_file": ("", b"", "application/octet-stream")}  # as a browser sends it

    # when the bulk form previews them
    sent = _bulk(signed_in, files=no_file, codes=pasted, step="preview")

    # then a preview job of all of them exists, as for an uploaded file
    assert sent.status_code == 303, sent.text[:500]
    [job] = api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"]
    assert job["total"] == 100_000 and job["dryRun"] is True


def test_a_long_paste_comes_back_whole_with_an_error(signed_in: TestClient) -> None:
    # given 20,000 pasted codes (more than the page once kept) and a series that is no id
    pasted = "\n".join(f"BACK{n:07d}" for n in range(20_000))

    # when the bulk form is sent, then the error page gives every code back, the last too
    sent = _bulk(signed_in, codes=pasted, series="x1", step="preview")
    assert sent.status_code == 400
    assert "BACK0019999" in sent.text and "BACK0000000" in sent.text


def test_a_form_body_the_parser_cannot_read_is_a_readable_400(signed_in: TestClient) -> None:
    headers = {**ORIGIN, "Content-Type": "multipart/form-data; boundary=xyz"}
    body = b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n"

    sent = signed_in.post("/console/bulk", content=body, headers=headers)

    assert sent.status_code == 400
    assert "This form could not be read" in sent.text and "nothing was changed" in sent.text


@pytest.mark.parametrize("step", ["", "zzz", "START"])
def test_a_bulk_form_without_one_of_its_two_buttons_starts_nothing(
    signed_in: TestClient, api: Api, step: str
) -> None:
    code = unique("STEP").upper()
    api.series(codes=[code])

    sent = _bulk(signed_in, codes=code, step=step)

    _refused_starting_nothing(sent, api, "Press Preview or Start revoke job.")


def _refused_starting_nothing(sent: httpx.Response, api: Api, says: str) -> None:
    """The bulk form came back with `says`, and the org has no job."""
    assert sent.status_code == 400
    assert says in sent.text
    assert api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"] == []


def test_pasted_codes_and_a_codes_file_together_are_refused_not_half_taken(
    signed_in: TestClient, api: Api
) -> None:
    pasted, filed = unique("PASTE").upper(), unique("FILED").upper()
    api.series(codes=[pasted, filed])

    sent = _bulk(
        signed_in,
        files={"codes_file": ("codes.txt", f"{filed}\n".encode(), "text/plain")},
        codes=pasted,
    )

    _refused_starting_nothing(sent, api, "not both")


def test_a_bad_pasted_code_is_reported_in_the_codes_field_not_a_file(
    signed_in: TestClient, api: Api
) -> None:
    sent = _bulk(signed_in, codes="OK-1\n" + "X" * 150)

    assert sent.status_code == 400
    said = html.unescape(sent.text)
    assert "Codes, line 2: code longer than 100 characters (error 9027)" in said
    assert "Codes file, line" not in said


def test_the_bulk_form_suggests_the_orgs_revocable_series_and_the_console_has_an_icon(
    signed_in: TestClient, api: Api
) -> None:
    live = api.series()
    ended = api.series(valid_till="2000-01-01")

    page = signed_in.get("/console/bulk").text

    assert f'<option value="{live}">' in page
    assert f'<option value="{ended}">' not in page
    icon = signed_in.get("/console/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon" href="/console/static/favicon.svg"' in page


def test_undo_by_an_unknown_jobs_id_is_refused_as_no_such_revoke(
    signed_in: TestClient, api: Api
) -> None:
    refused = signed_in.post(
        "/console/undo",
        data={"csrf": _csrf(signed_in), "request_id": "job_0123456789abcdef01234567"},
        headers=ORIGIN,
    )
    by_api = api.post("/v2/coupon/reinstate", {"revokeRequestId": "job_0123456789abcdef01234567"})

    assert refused.status_code == 400 and "no revoke with this request id" in refused.text
    assert error_code(by_api) == 9002
    assert "no revoke with this request id" in by_api.json()["errors"][0]["message"]


def test_a_console_revoke_sent_with_an_earlier_revokes_request_id_gets_its_own(
    signed_in: TestClient, api: Api
) -> None:
    # given an API revoke under a request id of the client's choosing
    series_id = api.series(codes=[unique("OWN").upper(), unique("OWN").upper()])
    coupons = api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons"))["coupons"]
    taken = unique("taken-id")
    api.ok(
        api.revoke_with(
            {"couponSeriesId": series_id, "couponCodes": [coupons[0]["couponCode"]]},
            {"X-Request-Id": taken},
        )
    )

    # when a person confirms a revoke in the console with the same X-Request-Id
    form = {"csrf": _csrf(signed_in), "coupon": str(coupons[1]["couponId"]), "reason": "own"}
    done = signed_in.post(
        "/console/revoke",
        data={**form, "step": "confirm"},
        headers={**ORIGIN, "X-Request-Id": taken},
    )

    # then it is done and recorded under a fresh id of its own, which the page shows
    fresh = done.headers["x-request-id"]
    assert done.status_code == 200 and fresh != taken and fresh in done.text
    rows = api.ok(api.get("/v2/coupon/revocations"))["revocations"]
    assert sorted(r["requestId"] for r in rows if r["requestId"] in (taken, fresh)) == sorted(
        [taken, fresh]
    )


def test_a_finished_preview_starts_the_same_revoke_for_real_once_without_the_codes_again(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, drain

    # given a bulk preview of two codes of a series and one unknown, run to its end
    codes = [unique("PRE").upper(), unique("PRE").upper()]
    series_id = api.series(codes=codes)
    previewed = _bulk(
        signed_in,
        series=str(series_id),
        codes="\n".join([*codes, "NOPE-404"]),
        reason="leak 7",
        step="preview",
    )
    preview_page = previewed.headers["location"]
    preview_id = preview_page.rsplit("/", 1)[1]
    start_form = f'action="/console/jobs/{preview_id}/start"'
    form = {"csrf": _csrf(signed_in)}
    running = signed_in.get(preview_page).text
    # (and, queued, it cannot be started by hand either: it has shown nothing yet)
    early = signed_in.post(f"/console/jobs/{preview_id}/start", data=form, headers=ORIGIN)
    drain(backend.db)
    page = signed_in.get(preview_page)
    assert api.ok(api.get(f"{JOBS}/{preview_id}"))["revokedCount"] == 2  # would revoke two
    # then its page offers to start it only once it has finished
    assert start_form not in running
    assert early.status_code == 409 and "preview is QUEUED" in early.text
    assert "only a finished preview can be started" in early.text
    assert start_form in page.text and "Start revoke job" in page.text

    # when it is started twice (a double click), and again from the page drawn afresh (Back)
    def start() -> httpx.Response:
        sent: httpx.Response = signed_in.post(
            f"/console/jobs/{preview_id}/start", data=form, headers=ORIGIN, follow_redirects=False
        )
        return sent

    sent = [start(), start()]
    signed_in.get(preview_page)
    sent.append(start())

    # then all lead to one new job with the preview's series, reason and lines
    assert [s.status_code for s in sent] == [303, 303, 303]
    assert len({s.headers["location"] for s in sent}) == 1
    assert sent[0].headers["location"] != preview_page
    job_id = sent[0].headers["location"].rsplit("/", 1)[1]
    job = api.ok(api.get(f"{JOBS}/{job_id}"))
    assert (job["dryRun"], job["couponSeriesId"], job["reason"], job["total"]) == (
        False,
        series_id,
        "leak 7",
        3,
    )
    assert job["createdBy"].startswith("sam") and job["createdBy"].endswith("@example.com")
    # and it revokes for real, the report naming each line as the preview's did
    drain(backend.db)
    done = api.ok(api.get(f"{JOBS}/{job_id}"))
    assert (done["state"], done["revokedCount"], done["failedCount"]) == ("SUCCEEDED", 2, 1)
    report = api.get(f"{JOBS}/{job_id}/report").text.splitlines()
    assert [row.split(",")[:2] for row in report[1:]] == [
        [codes[0], "revoked"],
        [codes[1], "revoked"],
        ["NOPE-404", "not_found"],
    ]
    # and the preview is left as it was, and cannot start a job from a real job
    assert api.ok(api.get(f"{JOBS}/{preview_id}"))["dryRun"] is True
    refused = signed_in.post(f"/console/jobs/{job_id}/start", data=form, headers=ORIGIN)
    assert refused.status_code == 409
    assert "nly a preview (a dry-run revoke job) can be started (error 9026)" in refused.text
    assert f'<a href="/console/jobs/{job_id}">Back to the job</a>' in refused.text
    assert len(api.ok(api.get(JOBS))["jobs"]) == 2


def test_a_confirm_that_revokes_nothing_is_not_headed_revoked(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon previewed for revoke, then redeemed before the confirm
    series_id = api.series(codes=[unique("LATE").upper()])
    customer = api.customer(email=f"{unique('late')}@example.com")
    coupon = api.issue(series_id, customer)
    form = {"csrf": _csrf(signed_in), "coupon": str(coupon["couponId"]), "reason": "leak"}
    preview = signed_in.post("/console/revoke", data=form, headers=ORIGIN)
    api.ok(api.redeem(customer, coupon["couponCode"]))

    # when the person confirms
    confirm = {**form, "step": "confirm", "form_key": _form_key(preview)}
    answer = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)

    # then the page says nothing was revoked, and why
    assert answer.status_code == 200
    assert "<h1>Nothing revoked</h1>" in answer.text and "<h1>Revoked</h1>" not in answer.text
    assert "Revoked <strong>0</strong> of 1" in answer.text and "error 405" in answer.text
    assert api.coupon(coupon["couponId"])["state"] == "REDEEMED"


def test_a_picked_id_with_no_coupon_is_named_on_the_revoke_page_not_dropped(
    signed_in: TestClient, api: Api
) -> None:
    coupon = api.issue(api.series(codes=[unique("PICK").upper()]), api.customer("555-0404"))

    alone = signed_in.get("/console/revoke", params={"coupon": "99999999"})
    mixed = signed_in.get(
        "/console/revoke", params=[("coupon", str(coupon["couponId"])), ("coupon", "99999999")]
    )

    # then a stale or mistyped id is named as not found, alone and beside a real pick
    assert alone.status_code == 200
    assert "Coupon not found (error 682): id 99999999" in alone.text
    assert "No coupon picked" not in alone.text
    assert "1 coupon picked" in mixed.text
    assert "Coupon not found (error 682), left out: id 99999999" in mixed.text


def test_more_picks_than_a_revoke_takes_are_refused_with_their_true_count_not_cut_short(
    signed_in: TestClient, api: Api
) -> None:
    # given an address picking 602 ids (the page listed the first 501 as "501 coupons
    # picked" and left the rest out without a word)
    coupon = api.issue(api.series(codes=[unique("MANY").upper()]), api.customer("555-0602"))
    ids = [str(coupon["couponId"]), *(str(90_000_000 + n) for n in range(601))]

    # when the revoke page is shown, and when its form is confirmed anyway
    shown = signed_in.get("/console/revoke", params={"coupon": ids})
    answer = signed_in.post(
        "/console/revoke",
        data={"csrf": _csrf(signed_in), "coupon": ids, "reason": "leak", "step": "confirm"},
        headers=ORIGIN,
    )

    # then both say how many were picked and what to do instead, and nothing is revoked
    for refused in (shown, answer):
        assert refused.status_code == 400, refused.text
        assert "602 picked; pick at most 500, or use a bulk revoke job" in refused.text
        assert "coupons picked" not in refused.text
    assert api.coupon(coupon["couponId"])["state"] == "ISSUED"


def test_stored_text_with_a_bidi_override_is_isolated_and_cannot_mirror_the_page(
    signed_in: TestClient, api: Api
) -> None:
    # given a series whose description ends in an unclosed right-to-left override (it
    # mirrored the page's own "(id 5, DISC_CODE)" after it), and a coupon of it
    rlo = "\u202e"
    code = unique("BIDI").upper()
    created = api.post(
        "/v2/coupon/series",
        json={
            "description": f"Spring sale {rlo}",
            "clientHandlingType": "DISC_CODE",
            "validTill": "2030-12-31",
            "discountType": "PERC",
            "discountValue": 5,
        },
    )
    series_id = api.ok(created)["id"]
    api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", json={"codes": [code]}))
    coupon_id = api.ok(api.get("/v2/coupon/search", params={"code": code}))["coupons"][0]

    # when the coupon, its series and a search for the override are shown
    coupon = signed_in.get(f"/console/coupons/{coupon_id['couponId']}").text
    series = signed_in.get(f"/console/series/{series_id}").text
    nothing = signed_in.get("/console/search", params={"q": f"none{rlo}"}).text

    # then each value sits in its own isolate, so its direction ends where it does
    assert f"<bdi>Spring sale {rlo}</bdi> (id {series_id}, DISC_CODE)" in coupon
    assert f"<h1><bdi>Spring sale {rlo}</bdi> <span" in series
    assert f"Nothing matches “<bdi>none{rlo}</bdi>”." in nothing


def test_select_all_unredeemed_ticks_every_coupon_a_revoke_may_take(
    signed_in: TestClient, api: Api
) -> None:
    # given a customer holding two live coupons and one redeemed
    series_id = api.series(codes=[unique("ALL").upper() for _ in range(3)])
    customer = api.customer(email=f"{unique('all')}@example.com")
    held = [api.issue(series_id, customer) for _ in range(3)]
    api.ok(api.redeem(customer, held[0]["couponCode"]))

    page = signed_in.get(f"/console/customers/{customer}")
    picked = signed_in.get(f"/console/customers/{customer}", params={"pick": "all"})

    # then the page offers it, and following it ticks the two live ones only
    assert f'href="/console/customers/{customer}?pick=all">Select all unredeemed</a>' in page.text
    assert " checked>" not in page.text
    ticked = set(
        re.findall(r'value="(\d+)" id="pick-\d+" aria-label="[^"]*" checked>', picked.text)
    )
    assert ticked == {str(c["couponId"]) for c in held[1:]}
    assert f"<title>Customer #{customer}" in picked.text or f"#{customer} ·" in picked.text


def test_the_trail_finds_a_persons_revokes_by_their_email_in_any_case(
    backend: Backend, client: TestClient, api: Api
) -> None:
    # given a person (stored as their email case-folded) who revoked a coupon in the console
    signed_in = sign_in_new_person(backend, client, "Case")
    series_id = api.series(codes=[unique("CASE").upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique('case')}@example.com"))
    confirmed = signed_in.post(
        "/console/revoke",
        data={
            "csrf": _csrf(signed_in),
            "coupon": str(coupon["couponId"]),
            "reason": "leak",
            "step": "confirm",
        },
        headers=ORIGIN,
    )
    assert confirmed.status_code == 200, confirmed.text
    actor = api.coupon(coupon["couponId"])["history"][-1]["actor"]

    # when the trail is asked for that email as the person wrote it, in capitals
    shouted = api.ok(api.get("/v2/coupon/revocations", params={"actor": actor.upper()}))
    page = signed_in.get("/console/activity", params={"actor": actor.upper()})

    # then the person's revoke is found, by the API and on the activity page
    assert [r["actor"] for r in shouted["revocations"]] == [actor]
    assert shouted["revocations"][0]["reason"] == "leak"
    assert "No revocations match" not in page.text
    assert "leak" in page.text


def test_a_confirmed_revoke_sent_again_while_still_revoked_still_offers_its_undo(
    signed_in: TestClient, api: Api
) -> None:
    _, confirm = _previewed(signed_in, api, "TWICE", "tess")

    signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    again = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)

    assert "already sent with this form" in again.text
    assert "REVOKED" in again.text and "Undo this revoke" in again.text


def test_a_job_undone_from_the_console_records_why_in_each_coupons_history(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted, drain

    # given a finished revoke job of a whole series
    code = unique("UNDOJ").upper()
    series_id = api.series(codes=[code])
    coupon = api.issue(series_id, api.customer(email=f"{unique('uma')}@example.com"))
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "campaign off"}))
    drain(backend.db)

    # when a person presses "Undo job", and the undo runs
    pressed = signed_in.post(
        f"/console/jobs/{job['jobId']}/undo",
        data={"csrf": _csrf(signed_in)},
        headers=ORIGIN,
        follow_redirects=False,
    )
    drain(backend.db)

    # then the coupon is back, and its history says which job was undone, as an undo of a
    # single revoke does
    assert pressed.status_code == 303, pressed.text
    last = api.coupon(coupon["couponId"])["history"][-1]
    assert (last["action"], last["reason"]) == ("REINSTATE", f"undo of job {job['jobId']}")


def test_the_trail_keeps_two_clients_whose_names_differ_in_case_apart(
    backend: Backend, client: TestClient, api: Api
) -> None:
    from tests.conftest import Credentials
    from tests.e2e.test_cli import run

    # given clients CaseBot-x and casebot-x (names are exact) that each revoked a coupon
    name = unique("casebot")
    series_id = api.series(codes=[unique("CB").upper(), unique("CB").upper()])
    codes = [
        c["couponCode"]
        for c in api.ok(api.get(f"/v2/coupon/series/{series_id}/coupons"))["coupons"]
    ]
    for username, code in zip((name.capitalize(), name), codes, strict=True):
        assert run(
            "client", "create", "--org", "acme", "--username", username, "--password",
            "a-long-secret-1", "--db", backend.url,
        )[0] == 0  # fmt: skip
        bot = Api(client, Credentials(username, "a-long-secret-1", "acme"))
        bot.ok(bot.revoke({"couponSeriesId": series_id, "couponCodes": [code]}))

    # when the trail is asked for each
    mixed = api.ok(api.get("/v2/coupon/revocations", params={"actor": name.capitalize()}))
    lower = api.ok(api.get("/v2/coupon/revocations", params={"actor": name}))

    # then each finds its own row only
    assert [r["actor"] for r in mixed["revocations"]] == [name.capitalize()]
    assert [r["actor"] for r in lower["revocations"]] == [name]


def test_a_resent_revoke_offers_no_undo_once_another_revoke_holds_the_coupon(
    signed_in: TestClient, api: Api
) -> None:
    # given a console revoke, undone, then the coupon revoked again by an API client
    coupon, confirm = _previewed(signed_in, api, "AGAIN2", "rita")
    series_id = coupon["seriesId"]
    first = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    signed_in.post(
        "/console/undo",
        data={"csrf": confirm["csrf"], "request_id": first.headers["x-request-id"]},
        headers=ORIGIN,
    )
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [coupon["couponCode"]]}))

    # when the confirmed form is sent again
    again = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)

    # then it shows the coupon REVOKED now, but offers no undo: that revoke is not its own
    assert "already sent with this form" in again.text and "REVOKED" in again.text
    assert "Undo this revoke" not in again.text and "nothing to undo" in again.text


def test_a_cancelled_preview_says_it_cannot_be_started(signed_in: TestClient, api: Api) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted

    # given a preview (a dry-run job) cancelled before it ran
    series_id = api.series(codes=[unique("CPV").upper()])
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "x", "dryRun": True}))
    api.ok(api.post(f"{JOBS}/{job['jobId']}/cancel"))

    # when its page is opened, then it does not promise a start that would be refused
    page = signed_in.get(f"/console/jobs/{job['jobId']}").text
    assert "cannot be started" in page and "revokes the same codes for real" not in page


def test_a_500_character_reason_over_several_lines_is_taken_as_the_api_takes_it(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon previewed for revoke, and a reason of 500 characters on ten lines, which
    # a browser sends with each line break as CR LF (510 characters on the wire)
    coupon, confirm = _previewed(signed_in, api, "LINES", "ann")
    typed = ("a" * 49 + "\n") * 10
    sent = typed.replace("\n", "\r\n")

    # when the revoke is confirmed with it
    done = signed_in.post("/console/revoke", data={**confirm, "reason": sent}, headers=ORIGIN)

    # then it is not "too long": the coupon is revoked with the reason as typed (trimmed)
    assert done.status_code == 200 and "too long" not in done.text, done.text
    history = api.coupon(coupon["couponId"])["history"]
    assert [h["action"] for h in history] == ["ISSUE", "REVOKE"]
    assert history[-1]["reason"] == typed.strip()


def test_a_form_the_browser_drops_half_sent_is_no_fault(
    app: Any, signed_in: TestClient, api: Api
) -> None:
    # (a double click on a button sends the form again and drops the first request)
    cookie = signed_in.cookies.get("coupons_session")
    body = b"csrf=x&series=1&reason=leak&codes=" + b"A" * 200_000
    with structlog.testing.capture_logs() as logs, threaded_server(app) as base_url:
        # when a signed-in browser sends the head and half the form, then hangs up
        hang_up_half_way(
            base_url,
            "/console/bulk",
            {
                "Origin": base_url,
                "Cookie": f"coupons_session={cookie}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            body,
        )

    # then nothing was logged as a fault, only that the client went away
    assert not [e for e in logs if e["log_level"] == "error"], logs
    assert any(e["event"] == "client went away before its request was read" for e in logs)
    # and the request's own line (what the metrics count too) says no 500
    lines = [e for e in logs if e["event"] == "request" and e["route"] == "/console/bulk"]
    assert [e["status"] for e in lines] == [400], logs
    assert api.ok(api.get("/v2/coupon/revoke/jobs"))["jobs"] == []


def _previewed_then_disabled(
    backend: Backend, client: TestClient, api: Api, code: str
) -> tuple[dict[str, Any], dict[str, str], httpx.Response]:
    """A person who previewed a revoke and was then disabled: the coupon, the confirm form,
    and the preview page."""
    email = f"{unique('gone')}@example.com"
    sign_in_as(backend, client, email)
    coupon, confirm = _previewed(client, api, code, "ann")
    preview = client.post("/console/revoke", data=confirm | {"step": "preview"}, headers=ORIGIN)
    assert run("user", "disable", email, "--db", backend.url)[0] == 0
    return coupon, confirm, preview


def test_a_confirm_after_the_session_ended_says_so_and_changes_nothing(
    backend: Backend, client: TestClient, api: Api
) -> None:
    # given a person who previewed a revoke, and was then disabled
    coupon, confirm, _ = _previewed_then_disabled(backend, client, api, "ENDED")

    # when the confirm is sent from the preview page
    sent_from = {**ORIGIN, "Referer": f"{BASE}/console/coupons/{coupon['couponId']}"}
    answer = client.post("/console/revoke", data=confirm, headers=sent_from, follow_redirects=False)
    shown = client.get(answer.headers["location"])

    # then the sign-in page says the session ended and nothing was changed, and leads back
    # to the page the form was sent from; the coupon is still issued
    assert answer.status_code == 303
    assert "Your session has ended" in shown.text and "nothing was changed" in shown.text
    assert f'value="/console/coupons/{coupon["couponId"]}"' in shown.text
    assert api.coupon(coupon["couponId"])["state"] == "ISSUED"


def test_a_confirm_after_the_session_ended_leads_back_to_the_same_picks(
    backend: Backend, client: TestClient, api: Api
) -> None:
    # given a person's preview page (itself the answer to a form), and the person disabled
    coupon, confirm, preview = _previewed_then_disabled(backend, client, api, "PICKS")
    action = html.unescape(re.findall(r'<form method="post" action="([^"]+)"', preview.text)[-1])

    # when the confirm is sent from the preview page, which the browser shows at the
    # address its form was sent to
    sent_from = {**ORIGIN, "Referer": f"{BASE}{action}"}
    answer = client.post(action, data=confirm, headers=sent_from, follow_redirects=False)
    shown = client.get(answer.headers["location"])

    # then signing in again leads to a revoke page with the same coupon picked
    assert action == f"/console/revoke?coupon={coupon['couponId']}"
    assert f'value="{action}"' in shown.text and "Your session has ended" in shown.text
    assert api.coupon(coupon["couponId"])["state"] == "ISSUED"


@pytest.mark.parametrize(("referer", "notice"), [("/console/search?q=x", True), (None, False)])
def test_a_link_followed_after_the_session_ended_says_so(
    client: TestClient, referer: str | None, notice: bool
) -> None:
    # (the browser drops an expired cookie; sign-out in another tab deletes it)
    # given a browser holding no session cookie
    headers = {"Referer": f"{BASE}{referer}"} if referer else {}

    # when it follows a link on a console page, or opens the console afresh
    answer = client.get("/console/activity", headers=headers, follow_redirects=False)

    # then the sign-in page says the session ended only when a console page led there
    assert answer.status_code == 303
    assert ("notice=session-ended" in answer.headers["location"]) is notice
    assert answer.headers["location"].startswith("/console/signin?next=/console/activity")


def test_a_preview_of_coupons_revoked_meanwhile_says_so_and_offers_no_confirm(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon revoked through the API after the person picked it
    coupon, confirm = _previewed(signed_in, api, "STALE", "ann")
    api.ok(api.post("/v2/coupon/revoke", json={"couponCodes": [coupon["couponCode"]]}))

    # when the person previews again
    preview = signed_in.post("/console/revoke", data=confirm | {"step": "preview"}, headers=ORIGIN)

    # then the preview says the coupon is already revoked and there is nothing to confirm
    assert preview.status_code == 200
    assert "error 682: already revoked" in preview.text
    assert "nothing to confirm" in preview.text and 'value="confirm"' not in preview.text


def test_an_undo_that_reinstated_nothing_is_not_called_done(
    signed_in: TestClient, api: Api
) -> None:
    # given a console revoke whose coupon was reinstated through the API since
    coupon, confirm = _previewed(signed_in, api, "UNDONE", "ann")
    first = signed_in.post("/console/revoke", data=confirm, headers=ORIGIN)
    api.ok(api.post("/v2/coupon/reinstate", json={"couponCodes": [coupon["couponCode"]]}))

    # when the person presses "Undo this revoke"
    undo = {"csrf": confirm["csrf"], "request_id": first.headers["x-request-id"]}
    shown = signed_in.post("/console/undo", data=undo, headers=ORIGIN)

    # then the page says nothing was undone, and why
    assert "<h1>Nothing undone</h1>" in shown.text and "error 9017" in shown.text


def test_a_reinstate_from_a_stale_tab_says_why_and_leads_back_to_the_coupon(
    signed_in: TestClient, api: Api
) -> None:
    # given a coupon revoked, then reinstated in another tab
    coupon, confirm = _previewed(signed_in, api, "TABS", "ann")
    assert signed_in.post("/console/revoke", data=confirm, headers=ORIGIN).status_code == 200
    path = f"/console/coupons/{coupon['couponId']}/reinstate"
    form = {"csrf": confirm["csrf"], "reason": "mistake"}
    assert signed_in.post(path, data=form, headers=ORIGIN).status_code == 200

    # when the first tab's "Reinstate" is pressed too
    stale = signed_in.post(path, data=form, headers=ORIGIN)

    # then the page says why, and links back to the coupon as it is now
    assert stale.status_code == 409 and "error 9017" in stale.text
    assert f'<a href="/console/coupons/{coupon["couponId"]}">Back to the coupon</a>' in stale.text


def test_a_job_page_names_a_file_and_a_series_only_for_a_job_that_has_them(
    backend: Backend, signed_in: TestClient, api: Api
) -> None:
    from tests.e2e.test_revoke_jobs import JOBS, accepted, drain

    # given a whole-series job, finished, and its undo
    series_id = api.series(codes=[unique("WHOLE").upper()])
    job = accepted(api.post(JOBS, {"couponSeriesId": series_id, "reason": "campaign off"}))
    drain(backend.db)
    undo = accepted(api.post(f"{JOBS}/{job['jobId']}/undo"))

    # when their pages are shown
    whole = signed_in.get(f"/console/jobs/{job['jobId']}").text
    undoing = signed_in.get(f"/console/jobs/{undo['jobId']}").text

    # then neither speaks of a file's duplicates, and the undo names no series it never took
    assert "Duplicates in the file" not in whole and "Duplicates in the file" not in undoing
    assert f"<dt>Series</dt><dd>{series_id}</dd>" in whole
    assert "<dt>Series</dt>" not in undoing and f'href="/console/jobs/{job["jobId"]}"' in undoing


@pytest.mark.parametrize(
    "digit", ["\u00b2", "\u0663"], ids=["superscript two", "arabic-indic three"]
)
def test_a_digit_that_is_not_ascii_names_nothing_and_is_no_fault(
    signed_in: TestClient, api: Api, digit: str
) -> None:
    # `isdigit` took both: int() refused the first (a 500), and read the second as 3
    # given coupon 3, which the Arabic-Indic digit three was read as
    api.series(codes=["D-1", "D-2", "D-3"])
    assert api.coupon(3)["couponCode"] == "D-3"

    # when a person searches for it, or opens a page by it
    searched = signed_in.get("/console/search", params={"q": digit})
    opened = {
        path: signed_in.get(f"/console/{path}/{quote(digit)}")
        for path in ("coupons", "customers", "series")
    }
    exported = signed_in.get(f"/console/series/{quote(digit)}/coupons.csv")

    # then nothing is found, as for any id that names nothing, and nothing is a fault
    assert searched.status_code == 200 and "Something went wrong" not in searched.text
    assert {path: r.status_code for path, r in opened.items()} == dict.fromkeys(opened, 404)
    assert exported.status_code == 404


def test_a_revoked_coupon_of_an_expired_series_offers_no_reinstate_and_says_why(
    signed_in: TestClient, api: Api
) -> None:
    # given a revoked coupon whose series has expired since (a reinstate by the coupon is 712)
    series_id = api.series(codes=[unique("GONE").upper()])
    coupon = api.issue(series_id, api.customer(email=f"{unique('old')}@example.com"))
    api.ok(api.post("/v2/coupon/revoke", json={"couponCodes": [coupon["couponCode"]]}))
    api.ok(api.request("PATCH", f"/v2/coupon/series/{series_id}", json={"validTill": PAST}))

    # when its page is shown
    shown = signed_in.get(f"/console/coupons/{coupon['couponId']}")

    # then it offers no button the server would refuse, says why, and names the way that
    # still puts it back (the undo of the revoke that took it)
    assert ">Reinstate</button>" not in shown.text
    assert "Not reinstatable by itself: series expired." in shown.text
    assert 'its "Undo" on the <a href="/console/activity">Activity</a> page' in shown.text


def test_ids_of_thousands_of_digits_name_nothing_and_are_no_fault(signed_in: TestClient) -> None:
    # int() refuses past 4,300 digits: the router's int converter raised, and so did a
    # picked id padded with zeros (its length was checked without them)
    csrf = _csrf(signed_in)
    reinstate = signed_in.post(
        f"/console/coupons/{'9' * 5000}/reinstate", data={"csrf": csrf}, headers=ORIGIN
    )
    picked = signed_in.get("/console/revoke", params={"coupon": "0" * 5000 + "1"})

    assert (reinstate.status_code, "error 682" in reinstate.text) == (404, True)
    # leading zeros are allowed, as in the API's ids: this picks coupon 1, which is not there
    assert (picked.status_code, "error 682): id 1." in picked.text) == (200, True)


@pytest.mark.parametrize("url", ["http://[", "http://[::1", "http://a]b/", "http://[foo]/"])
def test_an_origin_or_referer_that_does_not_parse_is_foreign_not_a_fault(
    client: TestClient, url: str
) -> None:
    # (urlsplit raises on a bracketed host that is no IPv6 address)
    signin = client.post("/console/signin", data={"email": "a@b.c", "password": "x"},
                         headers={"Origin": url})  # fmt: skip
    followed = client.get("/console/search", headers={"Referer": url}, follow_redirects=False)

    assert signin.status_code == 403 and "not sent from this console" in signin.text
    assert followed.status_code == 303
    assert followed.headers["location"] == "/console/signin?next=/console/search"


def test_another_site_cannot_sign_a_person_out(client: TestClient) -> None:
    # (SameSite keeps the session cookie off another site's post: no session, so no CSRF check)
    answer = client.post(
        "/console/signout", headers={"Origin": "http://evil.example"}, follow_redirects=False
    )

    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
