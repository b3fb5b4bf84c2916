"""Spec §9 at the HTTP level: the console's guards, without a browser (cheap to run)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from coupons.domain import errors
from coupons.services import lookup
from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.e2e.test_cli import run, unique

BASE = "http://testserver"
ORIGIN = {"Origin": BASE}

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture
def signed_in(backend: Backend, client: TestClient) -> TestClient:
    """A client holding a support person's session cookie."""
    email = f"{unique('sam')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "support",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )
    answer = client.post(
        "/console/signin",
        data={"email": email, "password": "pw-123456", "next": "/console/search"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


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
    for target in ("https://evil.test/", "//evil.test/x", "/console/\\evil", "/docs"):
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


def test_the_api_keeps_its_json_bodies_next_to_the_console(client: TestClient) -> None:
    # The console reads its own forms; every other path still treats bodies as JSON
    answer = client.post("/v2/coupon/revoke", content=b"not json")

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
