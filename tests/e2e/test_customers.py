"""Spec §4: customers, their unique identifiers, and lookups."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Api, error_code

ALICE = {
    "mobile": "+1 (555) 0100",
    "email": "Alice@Example.com",
    "externalId": "EXT-1",
    "firstName": "Alice",
    "lastName": "Liddell",
}


def test_creating_a_customer_returns_its_id_and_fields(api: Api) -> None:
    entity = api.ok(api.post("/v2/customers", ALICE))

    assert isinstance(entity["id"], int)
    assert {k: v for k, v in entity.items() if k != "id"} == ALICE


def test_a_customer_with_only_one_identifier_can_be_created(api: Api) -> None:
    for body in ({"mobile": "5550100"}, {"email": "b@example.com"}, {"externalId": "E2"}):
        assert api.ok(api.post("/v2/customers", body))["id"]


def test_a_customer_needs_at_least_one_identifier(api: Api) -> None:
    response = api.post("/v2/customers", {"firstName": "Nobody"})

    assert (response.status_code, error_code(response)) == (400, 9002)


@pytest.mark.parametrize("field", ["mobile", "email", "externalId"])
def test_a_blank_identifier_beside_a_real_one_is_stored_as_none_and_taken_by_no_one(
    api: Api, field: str
) -> None:
    # a client sends "" or spaces for an identifier it does not have
    first = api.ok(api.post("/v2/customers", {field: "  ", "firstName": "A", **_other(field, 1)}))
    second = api.ok(api.post("/v2/customers", {field: "", "firstName": "B", **_other(field, 2)}))

    assert first["id"] != second["id"]
    assert first[field] is None and second[field] is None


def _other(field: str, n: int) -> dict[str, str]:
    """A real identifier other than `field`, unique per `n`."""
    return {"externalId": f"BLANK-{n}"} if field != "externalId" else {"email": f"b{n}@x.test"}


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("mobile", "+1 (555) 0100", "15550100"),
        ("mobile", "555-0100", "555 01 00"),
        ("email", "Alice@Example.com", "alice@example.COM"),
        ("email", "alice@example.com", "  ALICE@example.com "),
        ("externalId", "EXT-1", "EXT-1"),
    ],
)
def test_each_identifier_is_unique_within_the_org(
    api: Api, field: str, first: str, second: str
) -> None:
    # given a customer with this identifier
    api.ok(api.post("/v2/customers", {field: first}))

    # when another customer claims the same identifier written differently
    response = api.post("/v2/customers", {field: second, "firstName": "Copy"})

    # then it is a conflict naming the field, and there is still one such customer
    assert response.status_code == 409, response.text
    assert error_code(response) == 9016
    assert field in response.json()["errors"][0]["message"]


def test_a_conflict_on_one_identifier_creates_nothing(api: Api) -> None:
    # given a customer with a mobile
    api.customer("5550100")

    # when a new customer has a fresh email but the taken mobile
    response = api.post("/v2/customers", {"mobile": "5550100", "email": "new@example.com"})

    # then nothing is created: the email stays free
    assert response.status_code == 409
    lookup = api.get("/v2/customers/lookup", params={"email": "new@example.com"})
    assert (lookup.status_code, error_code(lookup)) == (404, 701)


def test_the_same_identifiers_in_another_org_are_fine(api: Api, other: Api) -> None:
    # given acme's customer
    acme_id = api.ok(api.post("/v2/customers", ALICE))["id"]

    # when globex creates a customer with the same identifiers
    globex_id = other.ok(other.post("/v2/customers", ALICE))["id"]

    # then both exist, each seen by its own org
    assert globex_id != acme_id
    assert api.ok(api.get("/v2/customers/lookup", params={"externalId": "EXT-1"}))["id"] == acme_id
    found = other.ok(other.get("/v2/customers/lookup", params={"externalId": "EXT-1"}))
    assert found["id"] == globex_id


@pytest.mark.parametrize(
    "query",
    [
        {"mobile": "15550100"},
        {"mobile": "+1-555-0100"},
        {"email": "alice@example.com"},
        {"email": "ALICE@EXAMPLE.COM"},
        {"externalId": "EXT-1"},
    ],
    ids=str,
)
def test_a_customer_can_be_looked_up_by_each_identifier(api: Api, query: dict[str, str]) -> None:
    # given Alice and another customer
    alice_id = api.ok(api.post("/v2/customers", ALICE))["id"]
    api.customer("5550999", email="bob@example.com", externalId="EXT-2")

    # when she is looked up
    entity = api.ok(api.get("/v2/customers/lookup", params=query))

    # then it is Alice, stored as written
    assert entity["id"] == alice_id
    assert entity["mobile"] == ALICE["mobile"] and entity["email"] == ALICE["email"]


def test_an_external_id_with_spaces_around_it_finds_the_customer_it_made(api: Api) -> None:
    # given a customer made with spaces around its external id (stored trimmed)
    made = api.ok(api.post("/v2/customers", {"externalId": " X-1 "}))
    assert made["externalId"] == "X-1"
    series_id = api.series(codes=["SPACED-1"])

    # then the same value finds them: in a lookup, an issue and a revoke
    found = api.ok(api.get("/v2/customers/lookup", params={"externalId": " X-1\t"}))
    issued = api.post(
        "/v2/coupon/issue", {"seriesId": series_id, "customer": {"externalId": " X-1 "}}
    )
    revoked = api.revoke({"couponSeriesId": series_id, "customer": {"externalId": "X-1 "}})
    assert found["id"] == made["id"]
    assert api.ok(issued)["couponCode"] == "SPACED-1"
    assert [c["couponCode"] for c in api.ok(revoked)["revokedCoupons"]] == ["SPACED-1"]
    # and spaces alone are no identifier at all
    blank = api.get("/v2/customers/lookup", params={"externalId": "   "})
    assert (blank.status_code, error_code(blank)) == (400, 9002)


def test_a_customer_can_be_looked_up_by_id(api: Api) -> None:
    alice_id = api.ok(api.post("/v2/customers", ALICE))["id"]

    entity = api.ok(api.get("/v2/customers/lookup", params={"id": alice_id}))

    assert entity["externalId"] == "EXT-1"


def test_a_blank_id_is_no_identifier_in_a_lookup_and_spaces_around_an_id_are_allowed(
    api: Api,
) -> None:
    # given a customer
    made = api.ok(api.post("/v2/customers", {"email": "blank-id@example.com"}))

    # when a lookup or a call sends a blank id beside the email, or the id between spaces
    beside = api.get("/v2/customers/lookup", params={"id": " ", "email": "blank-id@example.com"})
    spaced = api.get("/v2/customers/lookup", params={"id": f" {made['id']} "})
    issued = api.post(
        "/v2/coupon/issue",
        {"seriesId": api.series(codes=["BLANK-ID-1"]), "customer": {"id": f" {made['id']} "}},
    )
    alone = api.get("/v2/customers/lookup", params={"id": "  "})

    # then the blank id is left out, the spaced one is the customer's, and alone it is none
    assert api.ok(beside)["id"] == made["id"]
    assert api.ok(spaced)["id"] == made["id"]
    assert api.ok(issued)["couponCode"] == "BLANK-ID-1"
    assert (alone.status_code, error_code(alone)) == (400, 9002)
    assert "give one of" in alone.json()["errors"][0]["message"]


def test_a_read_only_client_can_look_up_customers(api: Api, viewer: Api) -> None:
    alice_id = api.ok(api.post("/v2/customers", ALICE))["id"]

    assert viewer.ok(viewer.get("/v2/customers/lookup", params={"id": alice_id}))


@pytest.mark.parametrize(
    "query",
    [{"mobile": "5559999"}, {"email": "zed@example.com"}, {"externalId": "ext-1"}, {"id": 99999}],
    ids=str,
)
def test_looking_up_a_missing_customer_gets_701_and_404(api: Api, query: dict[str, Any]) -> None:
    # given Alice (externalId compares exactly, so "ext-1" is someone else)
    api.ok(api.post("/v2/customers", ALICE))

    response = api.get("/v2/customers/lookup", params=query)

    assert (response.status_code, error_code(response)) == (404, 701)


def test_a_lookup_without_any_identifier_gets_9002(api: Api) -> None:
    response = api.get("/v2/customers/lookup")

    assert (response.status_code, error_code(response)) == (400, 9002)


def test_a_lookup_whose_identifiers_name_different_customers_gets_9008(api: Api) -> None:
    api.customer("5550100")
    api.customer("5550200", email="bob@example.com")

    response = api.get(
        "/v2/customers/lookup", params={"mobile": "5550100", "email": "bob@example.com"}
    )

    assert error_code(response) == 9008


def test_an_identifier_naming_nobody_beside_one_naming_a_customer_is_9008_saying_which(
    api: Api,
) -> None:
    # given one customer, and identifiers of which one names them and the other nobody
    customer = api.customer("5550100", email="ann@example.com")

    # when looked up by both
    response = api.get(
        "/v2/customers/lookup", params={"id": customer, "externalId": "NO-SUCH-CUSTOMER"}
    )

    # then it is ambiguous (9008), and the message says which one names nobody, not that
    # they name different customers
    assert (response.status_code, error_code(response)) == (400, 9008)
    message = response.json()["errors"][0]["message"]
    assert "externalId matches no customer" in message and "different" not in message


@pytest.mark.parametrize("mobile", ["12", "1" * 21, "no digits"])
def test_a_mobile_without_5_to_20_digits_gets_9002(api: Api, mobile: str) -> None:
    response = api.post("/v2/customers", {"mobile": mobile})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "mobile" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("email", ["plain", "@example.com", "alice@"])
def test_an_email_without_a_local_part_and_domain_gets_9002(api: Api, email: str) -> None:
    response = api.post("/v2/customers", {"email": email})

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "email" in response.json()["errors"][0]["message"]


def test_a_heavily_formatted_mobile_never_gets_a_500(api: Api) -> None:
    # given a mobile with few digits but much punctuation (pasted from a spreadsheet)
    mobile = "+1 " + " -- ".join("5550100") + " (home, evenings only)"
    assert len(mobile) > 40

    # when a customer is created with it
    response = api.post("/v2/customers", {"mobile": mobile})

    # then it is either stored or refused as a bad field, never a server error
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert error_code(response) == 9002


def test_an_email_that_grows_when_case_folded_never_gets_a_500(api: Api) -> None:
    # given a 320-character email whose case-folded form is longer ("ß" folds to "ss")
    email = "ß" * 300 + "@example.com"
    email = email + "x" * (320 - len(email))

    # when a customer is created with it
    response = api.post("/v2/customers", {"email": email})

    # then it is stored or refused as a bad field, never a server error
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert error_code(response) == 9002


@pytest.mark.parametrize("written", ["1_000", "1.0", "+1", "\u00a01"])
def test_a_lookup_id_is_written_in_digits_as_a_path_id_is(api: Api, written: str) -> None:
    # `?id=1_000` found customer 1000, where /v2/customers/1_000/coupons is refused
    api.customer("5550120")

    response = api.get("/v2/customers/lookup", params={"id": written})

    assert (response.status_code, error_code(response)) == (400, 9002), response.text
    assert response.json()["errors"][0]["message"].startswith("id")
