"""The whole-request checks of revoke (spec §5), each alone and in pairs, in the spec's order.

A request failing a check answers that one code, with nothing changed: every test compares
the series counts and each known coupon's state and history before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import PAST, Api, error_code


@dataclass(frozen=True)
class World:
    """A small org: a pool series with issued and available codes, two customers, an expired
    series, a GENERIC series, a GENERIC_REDEEMABLE series and another org's series."""

    pool: int
    expired: int
    generic: int
    open_generic: int
    foreign: int
    alice: int
    bob: int
    alice_codes: list[str]
    coupon_ids: list[int]

    @property
    def series_ids(self) -> list[int]:
        return [self.pool, self.expired, self.generic, self.open_generic]


@pytest.fixture
def world(api: Api, other: Api) -> World:
    pool = api.series(codes=["POOL1", "POOL2", "POOL3", "SPARE1", "SPARE2"])
    expired = api.series(valid_till=PAST, codes=["OLD1", "OLD2"])
    generic = api.series("GENERIC", generic_code="SALE20")
    open_generic = api.series("GENERIC_REDEEMABLE", generic_code="OPEN10")
    foreign = other.series(codes=["POOL1", "POOL2"])
    alice = api.customer("555-0101", email="alice@example.com", externalId="A-1")
    bob = api.customer("555-0102", email="bob@example.com", externalId="B-1")
    issued = api.issue_many(pool, alice, 3)
    instance = api.issue(generic, alice)
    return World(
        pool=pool,
        expired=expired,
        generic=generic,
        open_generic=open_generic,
        foreign=foreign,
        alice=alice,
        bob=bob,
        alice_codes=[c["couponCode"] for c in issued],
        coupon_ids=[c["couponId"] for c in issued] + [instance["couponId"]],
    )


def snapshot(api: Api, world: World) -> dict[str, Any]:
    """Everything a failed request must leave as it was."""
    return {
        "counts": {
            s: api.ok(api.get(f"/v2/coupon/series/{s}"))["counts"] for s in world.series_ids
        },
        "coupons": [api.coupon(cid) for cid in world.coupon_ids],
    }


Body = Callable[[World], dict[str, Any]]

# (name, body builder, query, expected code, expected HTTP status)
SINGLE_CHECKS: list[tuple[str, Body, dict[str, str], int, int]] = [
    ("body-not-an-object", lambda w: [w.pool], {}, 9001, 400),  # type: ignore[list-item,return-value]
    (
        "codes-not-a-list",
        lambda w: {"couponSeriesId": w.pool, "couponCodes": "POOL1"},
        {},
        9002,
        400,
    ),
    (
        "series-not-an-int",
        lambda w: {"couponSeriesId": "abc", "couponCodes": ["POOL1"]},
        {},
        9002,
        400,
    ),
    ("reason-too-long", lambda w: {"couponCodes": ["POOL1"], "reason": "x" * 501}, {}, 9002, 400),
    ("empty-body", lambda w: {}, {}, 756, 400),
    ("series-only", lambda w: {"couponSeriesId": w.pool}, {}, 756, 400),
    ("empty-codes", lambda w: {"couponSeriesId": w.pool, "couponCodes": []}, {}, 756, 400),
    ("blank-codes", lambda w: {"couponSeriesId": w.pool, "couponCodes": [" ", ""]}, {}, 756, 400),
    (
        # taken as "no codes", this would revoke everything the customer holds in the series
        "blank-codes-beside-a-customer",
        lambda w: {"couponSeriesId": w.pool, "couponCodes": [" "], "customer": {"id": w.alice}},
        {},
        9002,
        400,
    ),
    ("empty-customer", lambda w: {"couponSeriesId": w.pool, "customer": {}}, {}, 756, 400),
    (
        # an identifier the client does not have, sent as blank text, is not given
        "blank-identifiers",
        lambda w: {"customer": {"mobile": "   ", "email": "", "externalId": " \t"}},
        {},
        756,
        400,
    ),
    ("blank-id", lambda w: {"customer": {"id": "  "}}, {}, 756, 400),
    ("empty-id", lambda w: {"couponSeriesId": w.pool, "customer": {"id": ""}}, {}, 756, 400),
    (
        "51-codes",
        lambda w: {"couponSeriesId": w.pool, "couponCodes": [f"C{i:02}" for i in range(51)]},
        {},
        9003,
        400,
    ),
    ("two-codes-no-series", lambda w: {"couponCodes": w.alice_codes[:2]}, {}, 9005, 400),
    ("unknown-series", lambda w: {"couponSeriesId": 10**9, "couponCodes": ["POOL1"]}, {}, 707, 400),
    (
        "other-orgs-series",
        lambda w: {"couponSeriesId": w.foreign, "couponCodes": ["POOL1"]},
        {},
        707,
        400,
    ),
    (
        "expired-series",
        lambda w: {"couponSeriesId": w.expired, "couponCodes": ["OLD1"]},
        {},
        712,
        400,
    ),
    (
        "expired-series-customer-mode",
        lambda w: {"couponSeriesId": w.expired, "customer": {"id": w.alice}},
        {},
        712,
        400,
    ),
    (
        "generic-redeemable-series",
        lambda w: {"couponSeriesId": w.open_generic, "couponCodes": ["OPEN10"]},
        {},
        811,
        400,
    ),
    (
        "generic-redeemable-code-alone",
        lambda w: {"couponCodes": ["open10"]},
        {},
        811,
        400,
    ),
    ("unknown-customer", lambda w: {"customer": {"mobile": "555-9999"}}, {}, 701, 400),
    (
        "customer-of-other-org",
        lambda w: {"couponSeriesId": w.pool, "customer": {"email": "nobody@example.com"}},
        {},
        701,
        400,
    ),
    (
        "one-identifier-names-nobody",
        lambda w: {"customer": {"id": w.alice, "externalId": "NOPE"}},
        {},
        9008,
        400,
    ),
    (
        "identifiers-name-two-customers",
        lambda w: {"customer": {"mobile": "5550101", "email": "BOB@example.com"}},
        {},
        9008,
        400,
    ),
    (
        "generic-code-no-customer",
        lambda w: {"couponSeriesId": w.generic, "couponCodes": ["SALE20"]},
        {},
        108,
        400,
    ),
    ("generic-code-alone", lambda w: {"couponCodes": ["sale20"]}, {}, 108, 400),
    (
        "bad-code-case",
        lambda w: {"couponSeriesId": w.pool, "couponCodes": w.alice_codes},
        {"couponCodeCase": "TITLE"},
        9007,
        400,
    ),
    (
        "code-case-with-spaces",
        lambda w: {"couponSeriesId": w.pool, "couponCodes": w.alice_codes},
        {"couponCodeCase": " LOWER "},
        9007,
        400,
    ),
]


@pytest.mark.parametrize(
    ("body", "query", "code", "status"),
    [pytest.param(*case[1:], id=case[0]) for case in SINGLE_CHECKS],
)
def test_a_request_failing_one_check_answers_its_code_and_changes_nothing(
    api: Api, world: World, body: Body, query: dict[str, str], code: int, status: int
) -> None:
    # Given the world as it is
    before = snapshot(api, world)

    # When a request failing exactly one check is sent
    response = api.revoke(body(world), **query)

    # Then it answers that check's code alone and nothing changed
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert len(response.json()["errors"]) == 1
    assert snapshot(api, world) == before


# Each request fails two checks; the earlier one in the spec's order must answer.
ORDER_CHECKS: list[tuple[str, Body, dict[str, str], int]] = [
    ("shape-before-756", lambda w: {"couponCodes": "x"}, {}, 9002),
    ("shape-before-9007", lambda w: {"couponCodes": "x"}, {"couponCodeCase": "TITLE"}, 9002),
    ("9007-before-756", lambda w: {}, {"couponCodeCase": "TITLE"}, 9007),
    ("756-before-707", lambda w: {"couponSeriesId": 10**9, "couponCodes": []}, {}, 756),
    ("756-before-712", lambda w: {"couponSeriesId": w.expired}, {}, 756),
    (
        "9003-before-9005",
        lambda w: {"couponCodes": [f"C{i:02}" for i in range(51)]},
        {},
        9003,
    ),
    (
        "9003-before-707",
        lambda w: {"couponSeriesId": 10**9, "couponCodes": [f"C{i:02}" for i in range(51)]},
        {},
        9003,
    ),
    (
        "9005-before-701",
        lambda w: {"couponCodes": ["A", "B"], "customer": {"mobile": "555-9999"}},
        {},
        9005,
    ),
    (
        "707-before-701",
        lambda w: {"couponSeriesId": 10**9, "customer": {"mobile": "555-9999"}},
        {},
        707,
    ),
    (
        "712-before-701",
        lambda w: {"couponSeriesId": w.expired, "customer": {"mobile": "555-9999"}},
        {},
        712,
    ),
    (
        "811-before-701",
        lambda w: {"couponSeriesId": w.open_generic, "customer": {"mobile": "555-9999"}},
        {},
        811,
    ),
    (
        "707-before-9008",
        lambda w: {
            "couponSeriesId": 10**9,
            "customer": {"id": w.alice, "email": "bob@example.com"},
        },
        {},
        707,
    ),
    (
        "701-before-108",
        lambda w: {
            "couponSeriesId": w.generic,
            "couponCodes": ["SALE20"],
            "customer": {"mobile": "555-9999"},
        },
        {},
        701,
    ),
    (
        "9008-before-108-style-generic-code",
        lambda w: {
            "couponSeriesId": w.generic,
            "couponCodes": ["SALE20"],
            "customer": {"id": w.alice, "email": "bob@example.com"},
        },
        {},
        9008,
    ),
]


@pytest.mark.parametrize(
    ("body", "query", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in ORDER_CHECKS],
)
def test_a_request_failing_two_checks_answers_the_earlier_one_and_changes_nothing(
    api: Api, world: World, body: Body, query: dict[str, str], code: int
) -> None:
    before = snapshot(api, world)

    response = api.revoke(body(world), **query)

    assert error_code(response) == code, response.text
    assert snapshot(api, world) == before


def test_fifty_distinct_codes_are_revoked_in_one_call(api: Api) -> None:
    codes = [f"C{i:02}" for i in range(50)]
    series_id = api.series(codes=codes)

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": codes}))

    assert (entity["totalCount"], entity["failedCount"]) == (50, 0)
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["REVOKED"] == 50


def test_sixty_entries_that_are_fifty_distinct_codes_after_trimming_and_case_are_accepted(
    api: Api,
) -> None:
    # Given 50 codes, sent again as 10 extra entries differing only in case and whitespace
    codes = [f"C{i:02}" for i in range(50)]
    series_id = api.series(codes=codes)
    entries = codes + [f"  {c.lower()} " for c in codes[:10]]

    # When they are revoked
    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": entries}))

    # Then each distinct code counts once
    assert (entity["totalCount"], entity["failedCount"]) == (50, 0)
    assert sorted(c["couponCode"] for c in entity["revokedCoupons"]) == codes


def test_fifty_one_distinct_codes_answer_9003_and_revoke_none(api: Api) -> None:
    codes = [f"C{i:02}" for i in range(51)]
    series_id = api.series(codes=codes)

    response = api.revoke({"couponSeriesId": series_id, "couponCodes": codes})

    assert response.status_code == 400
    assert error_code(response) == 9003
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 51


def test_one_code_written_twice_without_a_series_counts_as_one_code(api: Api) -> None:
    series_id = api.series(codes=["ONLY1"])

    entity = api.ok(api.revoke({"couponCodes": ["ONLY1", " only1 "]}))

    assert entity["totalCount"] == 1
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["REVOKED"] == 1


def test_a_customer_with_one_hundred_coupons_in_scope_has_them_all_revoked(api: Api) -> None:
    series_id = api.series()
    customer_id = api.customer("555-0100")
    api.issue_many(series_id, customer_id, 100)

    entity = api.ok(api.revoke({"customer": {"id": customer_id}}))

    assert (entity["totalCount"], entity["failedCount"]) == (100, 0)


def test_a_customer_with_one_hundred_and_one_coupons_in_scope_answers_9004_and_keeps_all(
    api: Api,
) -> None:
    # Given a customer holding 101 issued coupons
    series_id = api.series()
    customer_id = api.customer("555-0100")
    issued = api.issue_many(series_id, customer_id, 101)

    # When all of them are to be revoked
    response = api.revoke({"couponSeriesId": series_id, "customer": {"id": customer_id}})

    # Then the call is refused and every coupon is still issued, with no revoke in its history
    assert response.status_code == 400
    assert error_code(response) == 9004
    listed = api.ok(api.get(f"/v2/customers/{customer_id}/coupons", params={"status": "ALL"}))
    assert {c["state"] for c in listed["coupons"]} == {"ISSUED"}
    assert len(listed["coupons"]) == 101
    assert [h["action"] for h in api.coupon(issued[-1]["couponId"])["history"]] == ["ISSUE"]


def test_redeemed_coupons_do_not_count_towards_the_customer_limit(api: Api) -> None:
    series_id = api.series()
    customer_id = api.customer("555-0100")
    issued = api.issue_many(series_id, customer_id, 101)
    assert api.redeem(customer_id, issued[0]["couponCode"]).status_code == 200

    entity = api.ok(api.revoke({"customer": {"id": customer_id}}))

    assert entity["totalCount"] == 100


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("UPPER", "MIXED1AB"),
        ("upper", "MIXED1AB"),
        ("lower", "mixed1ab"),
        ("LOWER", "mixed1ab"),
        ("As_It_Is", "Mixed1aB"),
        ("as_it_is", "Mixed1aB"),
        (None, "MIXED1AB"),
    ],
)
def test_coupon_code_case_is_read_case_insensitively(
    api: Api, case: str | None, expected: str
) -> None:
    series_id = api.series(codes=["Mixed1aB"])
    query = {} if case is None else {"couponCodeCase": case}

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["mixed1ab"]}, **query))

    assert [c["couponCode"] for c in entity["revokedCoupons"]] == [expected]


def test_a_very_long_list_of_distinct_codes_answers_9003_like_any_list_over_fifty(
    api: Api,
) -> None:
    series_id = api.series(codes=["C00"])

    response = api.revoke(
        {"couponSeriesId": series_id, "couponCodes": [f"C{i:04}" for i in range(1001)]}
    )

    assert error_code(response) == 9003
    assert api.ok(api.get(f"/v2/coupon/series/{series_id}"))["counts"]["AVAILABLE"] == 1


def test_a_very_long_list_repeating_one_code_is_one_code(api: Api) -> None:
    series_id = api.series(codes=["SAME1"])

    entity = api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": ["same1"] * 1001}))

    assert (entity["totalCount"], entity["failedCount"]) == (1, 0)
