"""Redeem (spec §4: all or nothing) and reactivate, over HTTP on both backends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from coupons.adapters.tables import coupon_series as series_table
from coupons.adapters.tables import coupons, redemptions
from tests.conftest import Backend
from tests.e2e.conftest import Api, error_code


def _redeem_lines(api: Api, customer_id: int, lines: list[dict[str, Any]]) -> httpx.Response:
    return api.post(
        "/v2/coupon/redeem",
        {
            "customer": {"id": customer_id},
            "transactionNumber": "T-42",
            "billAmount": 250.5,
            "redemptionRequestList": lines,
        },
    )


def _reactivate(api: Api, *redemption_ids: int) -> httpx.Response:
    return api.request(
        "PATCH", "/v2/coupon/reactivate", json={"redemptionIds": list(redemption_ids)}
    )


def _states(api: Api, *coupon_ids: int) -> list[str]:
    return [api.coupon(cid)["state"] for cid in coupon_ids]


def _actions(api: Api, coupon_id: int) -> list[str]:
    return [h["action"] for h in api.coupon(coupon_id)["history"]]


def _expire(backend: Backend, series_id: int) -> None:
    """Move a series' validTill into the past (no API changes it once coupons exist)."""
    with backend.db.engine.begin() as conn:
        conn.execute(
            update(series_table)
            .where(series_table.c.id == series_id)
            .values(valid_till=datetime.now(UTC) - timedelta(days=1))
        )


def test_redeeming_issued_codes_redeems_each_with_its_own_redemption_id(api: Api) -> None:
    # given two coupons issued to one customer
    series_id = api.series(codes=["alpha1", "beta22"])
    customer_id = api.customer("555-0101")
    first, second = api.issue(series_id, customer_id), api.issue(series_id, customer_id)

    # when the customer redeems both, with codes in another case
    entity = api.ok(api.redeem(customer_id, "ALPHA1", "Beta22"))

    # then each coupon gets its own redemption, is REDEEMED, and its history says so
    got = entity["redemptions"]
    assert [r["couponId"] for r in got] == [first["couponId"], second["couponId"]]
    assert [r["code"] for r in got] == ["alpha1", "beta22"]
    assert len({r["redemptionId"] for r in got}) == 2
    assert _states(api, first["couponId"], second["couponId"]) == ["REDEEMED", "REDEEMED"]
    history = api.coupon(first["couponId"])["history"]
    assert [h["action"] for h in history] == ["ISSUE", "REDEEM"]
    assert history[-1]["actor"] == "acme-admin"
    assert history[-1]["fromState"] == "ISSUED" and history[-1]["toState"] == "REDEEMED"


def test_redeem_records_transaction_number_and_bill_amount(api: Api, backend: Backend) -> None:
    # given an issued coupon
    series_id = api.series(codes=["bill01"])
    customer_id = api.customer("555-0102")
    coupon = api.issue(series_id, customer_id)

    # when it is redeemed with a transaction number and bill amount
    entity = api.ok(_redeem_lines(api, customer_id, [{"code": "bill01"}]))

    # then the redemption row carries them, for this customer and coupon
    with backend.db.engine.connect() as conn:
        row = conn.execute(
            select(redemptions).where(redemptions.c.id == entity["redemptions"][0]["redemptionId"])
        ).one()
    assert (row.coupon_id, row.customer_id) == (coupon["couponId"], customer_id)
    assert row.transaction_number == "T-42"
    assert float(row.bill_amount) == 250.5
    assert row.reactivated_at is None


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("missing", 702),
        ("other_customers", 703),
        ("redeemed", 711),
        ("revoked", 682),
        ("expired", 712),
    ],
)
def test_one_unredeemable_line_fails_the_whole_request_and_redeems_nothing(
    api: Api, backend: Backend, bad_line: str, expected: int
) -> None:
    # given a redeemable coupon and one line that cannot be redeemed, for the reason under test
    series_id = api.series(codes=["good01", "mine02", "theirs03"])
    customer_id = api.customer("555-0103")
    stranger_id = api.customer("555-0104")
    good = api.issue(series_id, customer_id)
    bad_code = "NO-SUCH-CODE"
    bad_coupon_id: int | None = None
    if bad_line == "other_customers":
        bad = api.issue(series_id, stranger_id)
        bad_code, bad_coupon_id = bad["couponCode"], bad["couponId"]
    elif bad_line in ("redeemed", "revoked"):
        bad = api.issue(series_id, customer_id)
        bad_code, bad_coupon_id = bad["couponCode"], bad["couponId"]
        if bad_line == "redeemed":
            api.ok(api.redeem(customer_id, bad_code))
        else:
            api.ok(api.revoke({"couponSeriesId": series_id, "couponCodes": [bad_code]}))
    elif bad_line == "expired":
        expiring = api.series(codes=["late01"])
        bad = api.issue(expiring, customer_id)
        bad_code, bad_coupon_id = bad["couponCode"], bad["couponId"]
        _expire(backend, expiring)
    before = api.coupon(bad_coupon_id)["history"] if bad_coupon_id else []

    # when both are redeemed in one request (the good line first)
    response = api.redeem(customer_id, good["couponCode"], bad_code)

    # then the request fails with the reason's code and nothing was redeemed
    assert response.status_code == 400
    assert error_code(response) == expected
    assert _states(api, good["couponId"]) == ["ISSUED"]
    assert _actions(api, good["couponId"]) == ["ISSUE"]
    if bad_coupon_id:
        assert api.coupon(bad_coupon_id)["history"] == before
    with backend.db.engine.connect() as conn:
        rows = conn.execute(
            select(redemptions.c.coupon_id).where(redemptions.c.coupon_id == good["couponId"])
        ).all()
    assert rows == []


def test_redeeming_a_pin_coupon_needs_its_pin(api: Api) -> None:
    # given a DISC_CODE_PIN coupon issued to a customer
    series_id = api.series("DISC_CODE_PIN")
    api.ok(
        api.post(
            f"/v2/coupon/series/{series_id}/codes", {"codes": [{"code": "pin01", "pin": "4711"}]}
        )
    )
    customer_id = api.customer("555-0105")
    coupon = api.issue(series_id, customer_id)

    # when it is redeemed without a PIN, or with a wrong one
    missing = _redeem_lines(api, customer_id, [{"code": "pin01"}])
    wrong = _redeem_lines(api, customer_id, [{"code": "pin01", "pin": "0000"}])

    # then both fail and the coupon stays ISSUED
    assert error_code(missing) == 9019 and error_code(wrong) == 9019
    assert _states(api, coupon["couponId"]) == ["ISSUED"]

    # when the right PIN is given, then it is redeemed
    api.ok(_redeem_lines(api, customer_id, [{"code": "PIN01", "pin": "4711"}]))
    assert _states(api, coupon["couponId"]) == ["REDEEMED"]


def test_a_generic_redeemable_code_is_redeemed_without_issue_once_per_customer(api: Api) -> None:
    # given a GENERIC_REDEEMABLE series and two customers who were never issued anything
    series_id = api.series("GENERIC_REDEEMABLE", generic_code="Welcome10")
    ann = api.customer("555-0106")
    bob = api.customer("555-0107")

    # when both redeem the shared code
    ann_entity = api.ok(api.redeem(ann, "welcome10"))
    bob_entity = api.ok(api.redeem(bob, "WELCOME10"))

    # then each gets their own REDEEMED coupon of the series, with a REDEEM history entry
    ann_red, bob_red = ann_entity["redemptions"][0], bob_entity["redemptions"][0]
    assert ann_red["couponId"] != bob_red["couponId"]
    assert ann_red["redemptionId"] != bob_red["redemptionId"]
    ann_coupon = api.coupon(ann_red["couponId"])
    assert ann_coupon["seriesId"] == series_id
    assert ann_coupon["state"] == "REDEEMED"
    assert ann_coupon["issuedToUserId"] == ann
    assert [h["action"] for h in ann_coupon["history"]] == ["REDEEM"]
    # made by the redemption: it was never ISSUED, so its history starts from nothing
    assert ann_coupon["history"][0]["fromState"] is None
    assert ann_coupon["history"][0]["toState"] == "REDEEMED"

    # when the same customer redeems it again, then it is already redeemed
    again = api.redeem(ann, "Welcome10")
    assert error_code(again) == 711


def test_a_reactivated_generic_redeemable_coupon_can_be_redeemed_again(api: Api) -> None:
    # given a customer who redeemed a GENERIC_REDEEMABLE code and had it reactivated
    api.series("GENERIC_REDEEMABLE", generic_code="COMEBACK")
    ann = api.customer("555-0108")
    first = api.ok(api.redeem(ann, "comeback"))["redemptions"][0]
    api.ok(_reactivate(api, first["redemptionId"]))

    # when they redeem the code again
    second = api.ok(api.redeem(ann, "COMEBACK"))["redemptions"][0]

    # then the same coupon is redeemed again under a new redemption id
    assert second["couponId"] == first["couponId"]
    assert second["redemptionId"] != first["redemptionId"]
    assert _actions(api, first["couponId"]) == ["REDEEM", "REACTIVATE", "REDEEM"]


def test_redeem_rejects_unknown_customers_and_repeated_codes(api: Api) -> None:
    # given an issued coupon
    series_id = api.series(codes=["twice1"])
    customer_id = api.customer("555-0109")
    coupon = api.issue(series_id, customer_id)

    # when redeemed for an unknown customer, or with the code twice in one request
    unknown = api.redeem(customer_id + 1000, "twice1")
    repeated = api.redeem(customer_id, "twice1", " TWICE1 ")

    # then 701 and 9002, and the coupon is untouched
    assert error_code(unknown) == 701
    assert error_code(repeated) == 9002
    assert _states(api, coupon["couponId"]) == ["ISSUED"]


def test_another_orgs_code_is_redeemed_as_if_it_did_not_exist(api: Api, other: Api) -> None:
    # given a coupon issued in another org
    theirs = other.series(codes=["globex1"])
    their_customer = other.customer("555-0110")
    other.issue(theirs, their_customer)
    mine = api.customer("555-0110")

    # when this org's customer tries to redeem its code
    response = api.redeem(mine, "globex1")

    # then the code is invalid here, exactly like a missing one
    assert error_code(response) == 702


def test_a_read_only_client_cannot_redeem(api: Api, viewer: Api) -> None:
    # given an issued coupon
    series_id = api.series(codes=["ro0001"])
    customer_id = api.customer("555-0111")
    coupon = api.issue(series_id, customer_id)

    # when a read-only client redeems it, then it is refused and nothing changes
    response = viewer.redeem(customer_id, "ro0001")
    assert response.status_code == 403 and error_code(response) == 9011
    assert _states(api, coupon["couponId"]) == ["ISSUED"]


def test_reactivating_a_redemption_returns_the_coupon_to_issued(api: Api, backend: Backend) -> None:
    # given a redeemed coupon
    series_id = api.series(codes=["react1"])
    customer_id = api.customer("555-0112")
    coupon = api.issue(series_id, customer_id)
    redemption = api.ok(api.redeem(customer_id, "react1"))["redemptions"][0]

    # when its redemption is reactivated
    entity = api.ok(_reactivate(api, redemption["redemptionId"]))

    # then the coupon is ISSUED again, with a REACTIVATE history entry, and redeemable again
    assert entity["reactivated"] == [
        {
            "redemptionId": redemption["redemptionId"],
            "couponId": coupon["couponId"],
            "couponCode": "react1",
        }
    ]
    history = api.coupon(coupon["couponId"])["history"]
    assert [h["action"] for h in history] == ["ISSUE", "REDEEM", "REACTIVATE"]
    assert history[-1]["fromState"] == "REDEEMED" and history[-1]["toState"] == "ISSUED"
    with backend.db.engine.connect() as conn:
        reactivated_at = conn.scalar(
            select(redemptions.c.reactivated_at).where(
                redemptions.c.id == redemption["redemptionId"]
            )
        )
    assert reactivated_at is not None
    api.ok(api.redeem(customer_id, "react1"))
    assert _states(api, coupon["couponId"]) == ["REDEEMED"]


def test_reactivating_the_same_redemption_twice_is_rejected(api: Api) -> None:
    # given a redemption that was already reactivated
    series_id = api.series(codes=["twice2"])
    customer_id = api.customer("555-0113")
    coupon = api.issue(series_id, customer_id)
    redemption_id = api.ok(api.redeem(customer_id, "twice2"))["redemptions"][0]["redemptionId"]
    api.ok(_reactivate(api, redemption_id))

    # when it is reactivated again
    response = _reactivate(api, redemption_id)

    # then it is refused and the history has one REACTIVATE only
    assert response.status_code == 400 and error_code(response) == 9020
    assert _actions(api, coupon["couponId"]) == ["ISSUE", "REDEEM", "REACTIVATE"]


def test_a_stale_redemption_cannot_reactivate_a_later_redemption(api: Api) -> None:
    # given a coupon redeemed, reactivated, and redeemed again
    series_id = api.series(codes=["stale1"])
    customer_id = api.customer("555-0114")
    coupon = api.issue(series_id, customer_id)
    old = api.ok(api.redeem(customer_id, "stale1"))["redemptions"][0]["redemptionId"]
    api.ok(_reactivate(api, old))
    api.ok(api.redeem(customer_id, "stale1"))

    # when the first (already undone) redemption is reactivated
    response = _reactivate(api, old)

    # then the current redemption stands
    assert error_code(response) == 9020
    assert _states(api, coupon["couponId"]) == ["REDEEMED"]


def test_unknown_or_other_orgs_redemption_ids_reactivate_nothing(
    api: Api, other: Api, backend: Backend
) -> None:
    # given a redemption in this org and one in another org
    series_id = api.series(codes=["mine01"])
    customer_id = api.customer("555-0115")
    coupon = api.issue(series_id, customer_id)
    mine = api.ok(api.redeem(customer_id, "mine01"))["redemptions"][0]["redemptionId"]
    theirs_series = other.series(codes=["theirs"])
    their_customer = other.customer("555-0116")
    their_coupon = other.issue(theirs_series, their_customer)
    theirs = other.ok(other.redeem(their_customer, "theirs"))["redemptions"][0]["redemptionId"]

    # when this org reactivates its own id together with a foreign one, or an unknown one
    foreign = _reactivate(api, mine, theirs)
    unknown = _reactivate(api, mine, max(mine, theirs) + 1000)

    # then both are refused as not found, and nothing was reactivated anywhere
    assert error_code(foreign) == 9020 and error_code(unknown) == 9020
    assert _states(api, coupon["couponId"]) == ["REDEEMED"]
    assert other.coupon(their_coupon["couponId"])["state"] == "REDEEMED"
    with backend.db.engine.connect() as conn:
        states = conn.scalars(select(coupons.c.state).order_by(coupons.c.id)).all()
    assert "ISSUED" not in states


@pytest.mark.parametrize("series_type", ["DISC_CODE", "DISC_CODE_PIN"])
def test_the_same_code_in_an_expired_series_neither_stops_nor_shows_in_a_redeem(
    api: Api, backend: Backend, series_type: str
) -> None:
    # given one code in two series of the org: an expired pool, and a live series where it
    # is issued to the customer
    expired = api.series(series_type, codes=["SAME-7"])
    live = api.series(series_type, codes=["SAME-7"])
    _expire(backend, expired)
    customer_id = api.customer("555-0177")
    issued = api.issue(live, customer_id)
    assert issued["couponCode"] == "SAME-7"
    line: dict[str, Any] = {"code": "same-7"}
    if series_type == "DISC_CODE_PIN":
        with backend.db.engine.connect() as conn:
            line["pin"] = conn.execute(
                select(coupons.c.pin).where(coupons.c.id == issued["couponId"])
            ).scalar_one()

    # when the customer redeems the code
    response = _redeem_lines(api, customer_id, [line])

    # then her coupon in the live series is redeemed
    [redemption] = api.ok(response)["redemptions"]
    assert redemption["couponId"] == issued["couponId"]
    assert _states(api, issued["couponId"]) == ["REDEEMED"]


def _redeemed_with_bill(api: Api, amount: str) -> tuple[httpx.Response, int]:
    """An issued coupon redeemed with `amount` as its bill: the answer, and the coupon."""
    series_id = api.series(codes=["BILL1"])
    customer_id = api.customer("5550177")
    coupon_id = int(api.issue(series_id, customer_id)["couponId"])
    response = api.post(
        "/v2/coupon/redeem",
        {
            "customer": {"id": customer_id},
            "billAmount": amount,
            "redemptionRequestList": [{"code": "BILL1"}],
        },
    )
    return response, coupon_id


@pytest.mark.parametrize("amount", ["1_000", "\u0665", "1e30", "-1e30", "12.34567"])
def test_a_bill_amount_as_text_other_than_ascii_digits_gets_9002_and_redeems_nothing(
    api: Api, amount: str
) -> None:
    response, coupon_id = _redeemed_with_bill(api, amount)

    assert (response.status_code, error_code(response)) == (400, 9002)
    assert "billAmount" in response.json()["errors"][0]["message"]
    assert _states(api, coupon_id) == ["ISSUED"]


@pytest.mark.parametrize("amount", ["0E-20000", "0e-999999999", "1.5E-0"])
def test_a_bill_amount_of_any_exponent_is_kept_to_four_places(api: Api, amount: str) -> None:
    # A zero has no digits for the four-places check to count: PostgreSQL refused the scale
    response, coupon_id = _redeemed_with_bill(api, amount)

    assert response.status_code == 200, response.text
    assert _states(api, coupon_id) == ["REDEEMED"]


def answered_meanwhile(
    call: Callable[[], httpx.Response], end: Callable[[], None]
) -> tuple[bool, list[httpx.Response]]:
    """`call` in a thread while another transaction holds what it might wait for: whether it
    answered within 5 s, and its answer; `end` then ends that transaction, whatever happened."""
    answers: list[httpx.Response] = []
    calling = threading.Thread(target=lambda: answers.append(call()))
    try:
        calling.start()
        calling.join(5)
        answered = not calling.is_alive()
    finally:
        end()
        calling.join(10)
    return answered, answers


def test_redeeming_an_open_code_waits_for_no_other_customers_redemption(
    api: Api, backend: Backend
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: every write waits for every other")
    # given an open code Ann has redeemed, and her coupon of it locked by a slow transaction
    # (a reactivate, say)
    code = "OPEN-LOCKS"
    api.series("GENERIC_REDEEMABLE", generic_code=code)
    ann, bob = api.customer("555-0210"), api.customer("555-0211")
    ann_coupon = api.ok(api.redeem(ann, code))["redemptions"][0]["couponId"]
    holder = backend.db.engine.connect()
    holder.execute(select(coupons.c.id).where(coupons.c.id == ann_coupon).with_for_update())

    # when Bob redeems the same code meanwhile
    done_while_locked, answers = answered_meanwhile(lambda: api.redeem(bob, code), holder.rollback)
    holder.close()

    # then his redeem neither read nor waited for Ann's coupon: it is done, with its own
    assert done_while_locked
    assert api.ok(answers[0])["redemptions"][0]["couponId"] != ann_coupon


def test_a_redeem_racing_the_issue_of_its_coupon_answers_as_if_it_came_first(
    api: Api, backend: Backend
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the two cannot overlap")
    # given a pool code being issued to Bob by a transaction that has not committed yet
    code = "RACE-ISSUE-1"
    api.series(codes=[code])
    bob = api.customer("555-0212")
    issuing = backend.db.engine.connect()
    issuing.execute(
        update(coupons)
        .where(coupons.c.code == code)
        .values(state="ISSUED", customer_id=bob, version=coupons.c.version + 1)
    )

    # when Bob redeems the code meanwhile
    done_while_issuing, answers = answered_meanwhile(lambda: api.redeem(bob, code), issuing.commit)
    issuing.close()

    # then it neither waited nor saw the uncommitted issue: 703, as if it ran first; and once
    # the issue has committed, the redeem goes through (docs/concurrency.md)
    assert done_while_issuing
    assert error_code(answers[0]) == 703
    assert api.ok(api.redeem(bob, code))["redemptions"][0]["code"] == code
