"""What a request says is what it means: a query parameter a route does not take, a name given
twice, a number that has no one text are refused, never guessed at. Ignored, a misspelt
`dryRun` revoked for real and a misspelt filter listed everything."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Api, error_code


def message(response: object) -> str:
    text: str = response.json()["errors"][0]["message"]  # type: ignore[attr-defined]
    return text


def test_a_misspelt_dry_run_is_refused_and_revokes_nothing(api: Api) -> None:
    series_id = api.series(codes=["QP-1"])
    coupon = api.issue(series_id, api.customer("555-0701"))

    response = api.revoke({"couponSeriesId": series_id, "couponCodes": ["QP-1"]}, dryrun="true")

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert message(response) == "dryrun: not a parameter of this call; did you mean dryRun?"
    state = api.ok(api.get(f"/v2/coupon/{coupon['couponId']}"))["state"]
    assert state == "ISSUED"


@pytest.mark.parametrize(
    ("path", "params", "takes"),
    [
        ("/v2/customers/{customer}/coupons", {"state": "REVOKED"}, "it takes status"),
        (
            "/v2/coupon/series/{series}/coupons",
            {"status": "ISSUED"},
            "it takes after, limit, state",
        ),
        ("/v2/coupon/{coupon}", {"limit": "5"}, "it takes no query parameters"),
        ("/v2/coupon/revoke/jobs", {"status": "RUNNING"}, "it takes after, limit, state"),
        ("/v2/events", {"since": "0"}, "it takes after, limit"),
    ],
    ids=lambda value: str(value),
)
def test_a_parameter_a_read_does_not_take_is_refused_naming_what_it_takes(
    api: Api, path: str, params: dict[str, str], takes: str
) -> None:
    series_id = api.series(codes=["QP-2"])
    customer_id = api.customer("555-0702")
    coupon = api.issue(series_id, customer_id)
    url = path.format(customer=customer_id, series=series_id, coupon=coupon["couponId"])

    response = api.get(url, params=params)

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    name = next(iter(params))
    assert message(response) == f"{name}: not a parameter of this call ({takes})"
    # the same read without it answers
    api.ok(api.get(url))


def test_a_parameter_with_no_name_is_refused_in_words(api: Api) -> None:
    response = api.get("/v2/coupon/revoke/jobs?=x")

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert message(response).startswith("(a parameter with no name): not a parameter")


def test_a_stranger_is_asked_for_credentials_before_anything_about_parameters(
    client: TestClient,
) -> None:
    response = client.post("/v2/coupon/revoke?dryrun=true", json={"couponCodes": ["X"]})

    assert (response.status_code, error_code(response)) == (401, 9010)


def test_every_parameter_the_routes_take_is_still_taken(api: Api) -> None:
    series_id = api.series(codes=["QP-3", "QP-4"])
    customer_id = api.customer("555-0703")
    api.issue(series_id, customer_id)

    body = {"couponSeriesId": series_id, "couponCodes": ["qp-3"]}
    dry = api.revoke(body, dryRun="true", couponCodeCase="LOWER")
    assert api.ok(dry)["revokedCoupons"][0]["couponCode"] == "qp-3"
    api.ok(api.get(f"/v2/customers/{customer_id}/coupons", params={"status": "ACTIVE"}))
    page = api.get(f"/v2/coupon/series/{series_id}/coupons", params={"state": "ISSUED", "limit": 1})
    assert len(api.ok(page)["coupons"]) == 1


def test_a_name_given_twice_in_a_body_is_named(api: Api) -> None:
    response = api.request(
        "POST",
        "/v2/coupon/revoke",
        content=b'{"couponCodes": ["A"], "couponCodes": ["B"]}',
        headers={"Content-Type": "application/json"},
    )

    assert (response.status_code, error_code(response)) == (400, 9001)
    assert message(response).endswith("'couponCodes' is given more than once")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e2", "1.5", "1e-400"])
def test_a_number_with_a_fraction_or_exponent_is_no_code(api: Api, number: str) -> None:
    # 1e400 was read as infinity and revoked the code "INF"; 1e2 the code "100.0"
    series_id = api.series(codes=["INF", "-INF", "100", "100.0", "1.5", "0.0"])
    customer_id = api.customer("555-0704")
    for _ in range(6):
        api.issue(series_id, customer_id)
    body = f'{{"couponSeriesId": {series_id}, "couponCodes": ["100", {number}]}}'.encode()

    response = api.request(
        "POST", "/v2/coupon/revoke", content=body, headers={"Content-Type": "application/json"}
    )

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    # named by its place, as the list's other items are ("couponCodes[1]: ...")
    assert message(response).startswith("couponCodes[1]: a number with a fraction or an exponent")
    coupons = api.ok(api.get(f"/v2/customers/{customer_id}/coupons"))["coupons"]
    assert {c["state"] for c in coupons} == {"ISSUED"}


def test_a_whole_number_still_stands_for_its_digits(api: Api) -> None:
    series_id = api.series(codes=["3138309782"])
    api.issue(series_id, api.customer("555-0705"))
    body = f'{{"couponSeriesId": {series_id}, "couponCodes": [3138309782], "reason": 7}}'

    response = api.request(
        "POST", "/v2/coupon/revoke", content=body, headers={"Content-Type": "application/json"}
    )

    assert api.ok(response)["revokedCoupons"][0]["couponCode"] == "3138309782"


def test_a_mobile_with_an_exponent_is_no_mobile(api: Api) -> None:
    response = api.post("/v2/customers", {"mobile": 9.1e9})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert message(response).startswith("mobile: a number with a fraction")


def test_a_series_job_selector_names_a_field_given_twice_and_a_number_for_text(
    api: Api,
) -> None:
    series_id = api.series(codes=["QP-JOB-1"])
    twice = f'{{"couponSeriesId": {series_id}, "couponSeriesId": {series_id}}}'.encode()

    response = api.request(
        "POST",
        "/v2/coupon/revoke/jobs",
        content=twice,
        headers={"Content-Type": "application/json"},
    )

    assert (response.status_code, error_code(response)) == (400, 9001)
    assert message(response).endswith("'couponSeriesId' is given more than once")
    fraction = api.post("/v2/coupon/revoke/jobs", {"couponSeriesId": series_id, "reason": 1.5})
    assert (fraction.status_code, error_code(fraction)) == (400, 9002)
    assert message(fraction).startswith("reason: a number with a fraction")


def test_a_customer_id_of_thousands_of_digits_is_out_of_range_in_plain_words(api: Api) -> None:
    # int() refuses past 4,300 digits; its words reached the caller
    body = {"couponCodes": [], "customer": {"id": "9" * 5000}}

    response = api.revoke(body)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert message(response) == f"customer.id: Input should be less than or equal to {2**62}"


@pytest.mark.parametrize("raw", ["%ff%fe", "caf%e9", "%c3"])
def test_a_query_text_that_is_not_utf8_is_refused_and_creates_no_job(api: Api, raw: str) -> None:
    # Decoded with U+FFFD in place of the bytes, it was stored as a job's audit reason
    series_id = api.series(codes=["QP-5"])
    jobs = "/v2/coupon/revoke/jobs"
    headers = {"Content-Type": "text/plain"}

    response = api.request(
        "POST",
        f"{jobs}?couponSeriesId={series_id}&reason={raw}",
        content=b"QP-5\n",
        headers=headers,
    )

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    assert message(response) == "reason: is not valid UTF-8 text once percent-decoded"
    assert api.ok(api.get(jobs))["jobs"] == []
    # the same reason in UTF-8 is taken as written
    made = api.request(
        "POST",
        f"{jobs}?couponSeriesId={series_id}&reason=caf%C3%A9+%2B1",
        content=b"QP-5\n",
        headers=headers,
    )
    assert made.status_code == 202, made.text
    assert made.json()["entity"]["reason"] == "café +1"


def test_a_parameter_name_that_is_not_utf8_is_refused(api: Api) -> None:
    response = api.get("/v2/coupon/revoke/jobs?st%ffate=x")

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert message(response) == "st\ufffdate: is not valid UTF-8 text once percent-decoded"


@pytest.mark.parametrize(
    ("path", "method", "body", "named", "meant"),
    [
        # ending a campaign early with "validtill" answered 200 and the campaign ran on
        (
            "/v2/coupon/series/{series}",
            "PATCH",
            {"validtill": "2020-01-01"},
            "validtill",
            "validTill",
        ),
        ("/v2/coupon/series/{series}", "PATCH", {"description": "x", "valid_till ": 1}, None, None),
        ("/v2/customers", "POST", {"Mobile": "555-0799"}, "Mobile", "mobile"),
        (
            "/v2/coupon/revoke",
            "POST",
            {"couponcodes": ["QP-6"], "couponSeriesId": 0},
            "couponcodes",
            "couponCodes",
        ),
        (
            "/v2/coupon/revoke/jobs",
            "POST",
            {"couponseriesid": 1},
            "couponseriesid",
            "couponSeriesId",
        ),
        # read as "every event type" when it asked for one
        (
            "/v2/webhooks",
            "POST",
            {"url": "https://example.test/x", "Events": ["coupon.revoked"]},
            "Events",
            "events",
        ),
    ],
    ids=["patch", "patch-other-unknown", "customer", "revoke", "selector", "webhook"],
)
def test_a_body_field_named_in_another_case_is_refused_naming_the_field_it_stands_for(
    api: Api, path: str, method: str, body: dict[str, object], named: str | None, meant: str | None
) -> None:
    series_id = api.series(codes=["QP-6"])
    url = path.format(series=series_id)

    response = api.request(method, url, json=body)

    if named is None:  # a field no call knows stays ignored (spec §1)
        assert response.status_code == 200, response.text
        return
    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    said = message(response)
    assert said.startswith(f"{named}: not a field of this call")
    assert meant is None or said.endswith(f"did you mean {meant}?")
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["expired"] is False
