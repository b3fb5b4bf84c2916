"""Spec §4: series creation, counts per state, and code pools."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from coupons.domain.codes import CODE_ALPHABET, GENERATED_CODE_LENGTH
from tests.e2e.conftest import FUTURE, PAST, Api, error_code


def series_body(type: str = "DISC_CODE", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": f"{type} series",
        "clientHandlingType": type,
        "validTill": FUTURE,
        "discountType": "ABS",
        "discountValue": 5,
    }
    body.update(overrides)
    return body


def counts(api: Api, series_id: int) -> dict[str, int]:
    return dict(api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"])


# --- create ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type", "generic_code"),
    [
        ("DISC_CODE", None),
        ("DISC_CODE_PIN", None),
        ("GENERIC", "SUMMER10"),
        ("GENERIC_REDEEMABLE", "WELCOME"),
    ],
)
def test_each_client_handling_type_can_be_created_and_read_back(
    api: Api, type: str, generic_code: str | None
) -> None:
    # given a body for this type
    body = series_body(type, discountType="PERC", discountValue=12.5)
    if generic_code:
        body["genericCode"] = generic_code

    # when the series is created and read back
    created = api.ok(api.post("/v2/coupon/series", body))
    read = api.ok(api.get(f"/v2/coupon/series/{created['id']}"))

    # then both show what was asked, and the new series is empty and valid
    for entity in (created, read):
        assert entity["clientHandlingType"] == type
        assert entity["genericCode"] == generic_code
        assert entity["discountType"] == "PERC"
        assert entity["discountValue"] == 12.5
        assert entity["expired"] is False
    assert read["counts"] == {"AVAILABLE": 0, "ISSUED": 0, "REDEEMED": 0, "REVOKED": 0}
    assert read["totalCount"] == 0


def test_a_date_valid_till_lasts_through_that_whole_day_in_utc(api: Api) -> None:
    entity = api.ok(api.post("/v2/coupon/series", series_body(validTill="2099-03-04")))

    assert entity["validTill"].startswith("2099-03-04T23:59:59")
    assert entity["validTill"].endswith("Z")


def test_an_iso_datetime_valid_till_is_kept_to_the_instant_in_utc(api: Api) -> None:
    entity = api.ok(
        api.post("/v2/coupon/series", series_body(validTill="2099-03-04T10:30:00+02:00"))
    )

    assert entity["validTill"] == "2099-03-04T08:30:00Z"


def test_a_series_valid_through_today_is_not_expired(api: Api) -> None:
    today = datetime.now(UTC).date().isoformat()

    entity = api.ok(api.post("/v2/coupon/series", series_body(validTill=today)))

    assert entity["expired"] is False


@pytest.mark.parametrize(
    "valid_till", [PAST, "2001-01-01T00:00:00Z", "2001-01-01T00:00:00"], ids=str
)
def test_a_series_whose_valid_till_has_passed_is_expired(api: Api, valid_till: str) -> None:
    # when a series is created with a past validTill
    created = api.ok(api.post("/v2/coupon/series", series_body(validTill=valid_till)))

    # then it is flagged expired, on creation and when read
    assert created["expired"] is True
    assert api.ok(api.get(f"/v2/coupon/series/{created['id']}"))["expired"] is True


@pytest.mark.parametrize("type", ["GENERIC", "GENERIC_REDEEMABLE"])
@pytest.mark.parametrize("generic_code", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_generic_series_without_generic_code_gets_9002(
    api: Api, type: str, generic_code: str | None
) -> None:
    body = series_body(type)
    if generic_code is not None:
        body["genericCode"] = generic_code

    response = api.post("/v2/coupon/series", body)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "genericCode" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("discount_type", "value"), [("PERC", 0), ("PERC", 101), ("ABS", 0), ("ABS", -5)]
)
def test_a_discount_value_out_of_range_gets_9002(
    api: Api, discount_type: str, value: float
) -> None:
    response = api.post(
        "/v2/coupon/series", series_body(discountType=discount_type, discountValue=value)
    )

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "discountValue" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("value", ["1_000", "\u0665", "5,5", "five", "", "NaN", "0x10"])
def test_a_discount_value_as_text_other_than_ascii_digits_gets_9002(api: Api, value: str) -> None:
    # Python's Decimal reads "1_000" as 1000 and an Arabic-Indic five as 5
    response = api.post("/v2/coupon/series", series_body(discountType="ABS", discountValue=value))

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "discountValue" in response.json()["errors"][0]["message"]
    assert api.ok(api.get("/v2/coupon/series"))["series"] == []


@pytest.mark.parametrize(("value", "stored"), [("5", 5), (" 7.25 ", 7.25), ("1e1", 10), (3, 3)])
def test_a_discount_value_as_a_number_or_its_ascii_text_is_taken(
    api: Api, value: object, stored: float
) -> None:
    entity = api.ok(
        api.post("/v2/coupon/series", series_body(discountType="ABS", discountValue=value))
    )

    assert entity["discountValue"] == stored


def test_an_unknown_series_gets_707_and_404(api: Api) -> None:
    response = api.get("/v2/coupon/series/987654321")

    assert (response.status_code, error_code(response)) == (404, 707)


# --- counts ---------------------------------------------------------------------------------


def test_a_series_reports_its_coupon_counts_per_state(api: Api) -> None:
    # given a pool of five codes: one issued, one redeemed, one revoked
    series_id = api.series(codes=["C1", "C2", "C3", "C4", "C5"])
    customer_id = api.customer("5550100")
    issued = api.issue(series_id, customer_id)
    redeemed = api.issue(series_id, customer_id)
    api.ok(api.redeem(customer_id, redeemed["couponCode"]))
    api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["C5"]}))

    # when the series is read
    entity = api.ok(api.get(f"/v2/coupon/series/{series_id}"))

    # then each state is counted
    assert issued["couponCode"] == "C1"
    assert entity["counts"] == {"AVAILABLE": 2, "ISSUED": 1, "REDEEMED": 1, "REVOKED": 1}
    assert entity["totalCount"] == 5


# --- codes ----------------------------------------------------------------------------------


def test_uploaded_codes_join_the_available_pool(api: Api) -> None:
    series_id = api.series()

    entity = api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["A1", "B2"]}))

    assert entity == {"added": 2, "duplicates": []}
    assert counts(api, series_id)["AVAILABLE"] == 2


def test_ten_thousand_codes_can_be_uploaded_at_once(api: Api) -> None:
    series_id = api.series()
    codes = [f"BULK{i:05d}" for i in range(10_000)]

    entity = api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": codes}))

    assert entity == {"added": 10_000, "duplicates": []}
    assert counts(api, series_id)["AVAILABLE"] == 10_000


def test_more_than_ten_thousand_codes_get_9002_and_add_nothing(api: Api) -> None:
    series_id = api.series()
    codes = [f"BULK{i:05d}" for i in range(10_001)]

    response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": codes})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "codes" in response.json()["errors"][0]["message"]
    assert counts(api, series_id)["AVAILABLE"] == 0


@pytest.mark.parametrize("blank", ["", "   ", {"code": " ", "pin": "1234"}])
def test_an_empty_code_gets_9002_naming_it_and_adds_nothing(api: Api, blank: object) -> None:
    # Stored, it could be issued but never redeemed or revoked by its code
    series_id = api.series()

    response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["OK1", blank]})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith("codes[1]")
    assert counts(api, series_id)["AVAILABLE"] == 0


def test_duplicates_within_one_upload_are_reported_case_insensitively(api: Api) -> None:
    series_id = api.series()

    entity = api.ok(
        api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["Abc1", "ABC1", " abc1 "]})
    )

    assert entity["added"] == 1
    assert sorted(entity["duplicates"]) == ["ABC1", "abc1"]
    assert counts(api, series_id)["AVAILABLE"] == 1


def test_codes_already_in_the_series_are_reported_not_added_again(api: Api) -> None:
    # given a series holding ABC1
    series_id = api.series(codes=["Abc1"])

    # when the same code in another case is uploaded with a new one
    entity = api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["aBC1", "NEW1"]}))

    # then only the new one is added and the stored spelling is kept
    assert entity == {"added": 1, "duplicates": ["aBC1"]}
    assert counts(api, series_id)["AVAILABLE"] == 2
    customer_id = api.customer("5550100")
    assert api.issue(series_id, customer_id)["couponCode"] == "Abc1"


def test_the_same_code_may_live_in_two_series(api: Api) -> None:
    first = api.series(codes=["SHARED1"])
    second = api.series()

    entity = api.ok(api.post(f"/v2/coupon/series/{second}/codes", {"codes": ["shared1"]}))

    assert entity == {"added": 1, "duplicates": []}
    assert counts(api, first)["AVAILABLE"] == 1


def test_generate_adds_n_unique_readable_codes(api: Api) -> None:
    # given a series with some uploaded codes
    series_id = api.series(codes=["MANUAL1"])

    # when 50 codes are generated
    entity = api.ok(api.post(f"/v2/coupon/series/{series_id}/codes", {"generate": 50}))

    # then 50 more are available, and issued ones use the readable alphabet
    assert entity == {"added": 50, "duplicates": []}
    assert counts(api, series_id)["AVAILABLE"] == 51
    customer_id = api.customer("5550100")
    issued = api.issue_many(series_id, customer_id, 51)
    generated = {c["couponCode"] for c in issued} - {"MANUAL1"}
    assert len(generated) == 50
    for code in generated:
        assert len(code) == GENERATED_CODE_LENGTH
        assert set(code) <= set(CODE_ALPHABET)


@pytest.mark.parametrize(
    "body",
    [{}, {"codes": ["A"], "generate": 2}, {"generate": 0}, {"generate": 10_001}],
    ids=["neither", "both", "zero", "too-many"],
)
def test_an_upload_must_give_codes_or_a_sane_generate_count(api: Api, body: dict[str, Any]) -> None:
    series_id = api.series()

    response = api.post(f"/v2/coupon/series/{series_id}/codes", body)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert counts(api, series_id)["AVAILABLE"] == 0


def test_uploading_to_a_generic_series_is_refused(api: Api) -> None:
    series_id = api.series("GENERIC", generic_code="SUMMER")

    response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["X1"]})

    assert 400 <= response.status_code < 500
    assert error_code(response) not in (811, 707)
    assert counts(api, series_id)["AVAILABLE"] == 0


@pytest.mark.parametrize("body", [{"codes": ["X1"]}, {"generate": 3}])
def test_uploading_to_a_generic_redeemable_series_gets_811(api: Api, body: dict[str, Any]) -> None:
    series_id = api.series("GENERIC_REDEEMABLE", generic_code="WELCOME")

    response = api.post(f"/v2/coupon/series/{series_id}/codes", body)

    assert error_code(response) == 811
    assert counts(api, series_id)["AVAILABLE"] == 0


def test_uploading_to_an_unknown_series_gets_707(api: Api) -> None:
    response = api.post("/v2/coupon/series/987654321/codes", {"codes": ["X1"]})

    assert response.status_code == 404
    assert error_code(response) == 707


def test_pin_series_codes_get_a_pin_unless_one_is_given(api: Api) -> None:
    # given a PIN series with one code uploaded with its own pin and one without
    series_id = api.series("DISC_CODE_PIN")
    api.ok(
        api.post(
            f"/v2/coupon/series/{series_id}/codes",
            {"codes": [{"code": "PIN1", "pin": "4321"}, "PIN2"]},
        )
    )
    customer_id = api.customer("5550100")

    # when both are issued
    first, second = api.issue_many(series_id, customer_id, 2)

    # then the given pin is kept and the other got a generated one
    assert (first["couponCode"], first["pin"]) == ("PIN1", "4321")
    assert second["couponCode"] == "PIN2" and second["pin"].isdigit()


def test_a_pin_for_a_series_without_pins_or_an_empty_pin_is_9002_naming_the_pin(
    api: Api,
) -> None:
    # A pin on a DISC_CODE coupon would be kept and shown on issue, but never asked for
    plain, with_pins = api.series(), api.series("DISC_CODE_PIN")

    stray = api.post(
        f"/v2/coupon/series/{plain}/codes", {"codes": ["OK1", {"code": "P1", "pin": "1"}]}
    )
    empty = api.post(f"/v2/coupon/series/{with_pins}/codes", {"codes": [{"code": "Q4", "pin": ""}]})
    blank = api.post(
        f"/v2/coupon/series/{with_pins}/codes", {"codes": [{"code": "Q5", "pin": " "}]}
    )

    assert (stray.status_code, error_code(stray)) == (400, 9002)
    assert stray.json()["errors"][0]["message"].startswith("codes[1].pin: only a DISC_CODE_PIN")
    assert (empty.status_code, error_code(empty)) == (400, 9002)
    assert empty.json()["errors"][0]["message"].startswith("codes[0].pin")
    assert (blank.status_code, blank.json()["errors"][0]["message"][:12]) == (400, "codes[0].pin")
    assert counts(api, plain)["AVAILABLE"] == 0 and counts(api, with_pins)["AVAILABLE"] == 0


def test_a_pin_given_with_spaces_around_it_is_kept_as_a_redeem_reads_it(api: Api) -> None:
    # a redeem trims the PIN it is given: " 1234 " stored as sent could never be redeemed
    series_id = api.series("DISC_CODE_PIN")
    added = api.post(
        f"/v2/coupon/series/{series_id}/codes", {"codes": [{"code": "SP1", "pin": " 1234 "}]}
    )
    customer_id = api.customer("5550109")
    issued = api.issue(series_id, customer_id)

    redeemed = api.post(
        "/v2/coupon/redeem",
        {
            "customer": {"id": customer_id},
            "redemptionRequestList": [{"code": "SP1", "pin": "1234"}],
        },
    )

    assert added.status_code == 200 and issued["pin"] == "1234"
    assert redeemed.status_code == 200, redeemed.text


@pytest.mark.parametrize("type", ["DISC_CODE", "GENERIC"])
def test_a_code_that_grows_when_case_folded_never_gets_a_500(api: Api, type: str) -> None:
    # given a 100-character code whose case-folded form is twice as long ("ß" folds to "ss")
    code = "ß" * 100

    # when it is uploaded to a pool, or used as a generic code
    if type == "GENERIC":
        response = api.post("/v2/coupon/series", series_body(type, genericCode=code))
    else:
        series_id = api.series()
        response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": [code]})

    # then it is accepted or refused as a bad field, never a server error
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert error_code(response) == 9002


@pytest.mark.parametrize("valid_till", [20301231, 1.5, "1700000000", " 2030 ", True])
def test_a_valid_till_that_is_a_number_is_9002_not_unix_seconds(api: Api, valid_till: Any) -> None:
    # given a live series
    series_id = api.series()

    # when a series is created, or the live one changed, with a number for validTill
    created = api.post("/v2/coupon/series", series_body(validTill=valid_till))
    changed = api.request("PATCH", f"/v2/coupon/series/{series_id}", json={"validTill": valid_till})

    # then both are refused naming the field, and the live series stays live
    for response in (created, changed):
        assert (response.status_code, error_code(response)) == (400, 9002)
        assert response.json()["errors"][0]["message"].startswith("validTill")
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["expired"] is False


def test_a_100_character_code_with_spaces_around_it_is_taken_trimmed(api: Api) -> None:
    # given a pool series, and a code of exactly the longest length, pasted with spaces
    series_id = api.series()
    code = "L" * 99 + "1"

    # when it is added to the pool, then revoked in a dry run
    added = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": [f"  {code}  "]})
    revoked = api.post(
        "/v2/coupon/revoke?dryRun=true",
        {"couponSeriesId": series_id, "couponCodes": [f" {code} "]},
    )

    # then both count its length trimmed, as they match and store it
    api.ok(added)
    entity = api.ok(revoked)
    assert entity["failedCount"] == 0 and len(entity["revokedCoupons"]) == 1


def test_a_code_too_long_is_9002_naming_just_its_place_in_the_list(api: Api) -> None:
    series_id = api.series()

    response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["A", "B" * 101]})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith("codes[1]: ")


@pytest.mark.parametrize(
    "code",
    ["A\nB", "A\tB", "A\rB", "A\x7fB", "A\x85B", "A\u2028B", {"code": "P\x1bIN", "pin": "1"}],
)
def test_a_code_with_a_control_character_inside_gets_9002_and_adds_nothing(
    api: Api, code: object
) -> None:
    # A code file refuses such a code; typed at a till, none could ever be matched
    series_id = api.series("DISC_CODE_PIN" if isinstance(code, dict) else "DISC_CODE")

    response = api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": ["OK1", code]})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"] == (
        "codes[1]: a code must not contain a control character (a line break or a tab)"
    )
    assert counts(api, series_id)["AVAILABLE"] == 0


@pytest.mark.parametrize("type", ["GENERIC", "GENERIC_REDEEMABLE"])
def test_a_generic_code_with_a_control_character_inside_gets_9002(api: Api, type: str) -> None:
    response = api.post("/v2/coupon/series", {**series_body(type), "genericCode": "OPEN\nDOOR"})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"].startswith("genericCode: a code must not")
    # around it, the whitespace is trimmed as ever
    api.ok(api.post("/v2/coupon/series", {**series_body(type), "genericCode": " OPEN\n"}))


@pytest.mark.parametrize("type", ["DISC_CODE", "DISC_CODE_PIN"])
def test_a_generic_code_for_a_series_with_a_pool_gets_9002_not_dropped(api: Api, type: str) -> None:
    response = api.post("/v2/coupon/series", {**series_body(type), "genericCode": "SHARED"})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert response.json()["errors"][0]["message"] == (
        f"genericCode: only GENERIC and GENERIC_REDEEMABLE series have one; a {type} series "
        "has a pool of codes"
    )
    # absent, null or blank is no generic code, as before
    for empty in (None, "", "  "):
        made = api.ok(api.post("/v2/coupon/series", {**series_body(type), "genericCode": empty}))
        assert made["genericCode"] is None


@pytest.mark.parametrize(("description", "stored"), [("   ", None), ("  Spring  ", "Spring")])
def test_a_new_series_description_is_trimmed_and_never_blank_as_a_patch_takes_it(
    api: Api, description: str, stored: str | None
) -> None:
    body = {
        "description": description,
        "clientHandlingType": "DISC_CODE",
        "validTill": "2099-01-01",
        "discountType": "ABS",
        "discountValue": 5,
    }

    response = api.post("/v2/coupon/series", body)

    if stored is None:
        assert (response.status_code, error_code(response)) == (400, 9002)
        assert response.json()["errors"][0]["message"].startswith("description")
    else:
        assert api.ok(response)["description"] == stored


@pytest.mark.parametrize("pin", ["1234\u001f", "\u001c1234"])
def test_a_pin_with_control_characters_at_its_ends_is_trimmed_as_a_redeem_trims_it(
    api: Api, pin: str
) -> None:
    # pydantic's trimming left U+001C-1F, which Python's (the redeem's) takes away
    series_id = api.series("DISC_CODE_PIN")
    api.ok(
        api.post(f"/v2/coupon/series/{series_id}/codes", {"codes": [{"code": "CP1", "pin": pin}]})
    )
    customer_id = api.customer("5550119")

    assert api.issue(series_id, customer_id)["pin"] == "1234"
