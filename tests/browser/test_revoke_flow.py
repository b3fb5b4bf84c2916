"""The revoke flows a person uses, in a real browser (spec §9)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, campaign, coupon_state, screenshot, sign_in


def test_search_preview_confirm_and_undo_a_revoke_writes_the_persons_email_as_actor(
    page: Page, any_server: Server
) -> None:
    # Given an issued coupon, and a support agent signed in
    given = campaign(any_server, issued=1)
    code, coupon_id = given.codes[0], given.coupon_ids[0]
    sign_in(page, any_server, "agent@acme.test")
    expect(page.get_by_text("Signed in as")).to_contain_text("agent@acme.test")
    screenshot(page, "search")

    # When they search for the code (lower-cased: codes match in any case)
    page.get_by_label("Search").fill(code.lower())
    page.get_by_role("button", name="Search").click()

    # Then the coupon page shows its state as a word, its series and its holder
    expect(page).to_have_url(re.compile(f"/console/coupons/{coupon_id}$"))
    expect(page.locator("#coupon-state")).to_have_text("ISSUED")
    expect(page.get_by_text("Spring 15% off")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Sam"))).to_be_visible()
    screenshot(page, "coupon")

    # When they preview a revoke with a reason
    page.get_by_role("button", name="Revoke", exact=True).click()
    page.get_by_label("Reason").fill("leaked on a deal site")
    page.get_by_role("button", name="Preview").click()

    # Then the preview is the API's dry run, and nothing has changed yet
    expect(page.get_by_text("1 will be revoked")).to_be_visible()
    assert coupon_state(any_server, coupon_id)["state"] == "ISSUED"
    screenshot(page, "revoke-preview")

    # When they confirm
    page.get_by_role("button", name="Confirm revoke").click()

    # Then it is revoked, and the history names the person and the reason
    expect(page.get_by_role("heading", name="Revoked")).to_be_visible()
    found = coupon_state(any_server, coupon_id)
    assert found["state"] == "REVOKED"
    revoke_entry = found["history"][-1]
    assert revoke_entry["action"] == "REVOKE"
    assert revoke_entry["actor"] == "agent@acme.test"
    assert revoke_entry["reason"] == "leaked on a deal site"
    screenshot(page, "revoked")

    # When they undo it
    page.get_by_role("button", name="Undo this revoke").click()

    # Then the coupon is back to ISSUED, reinstated by the same person
    expect(page.get_by_text("Reinstated 1 of 1")).to_be_visible()
    found = coupon_state(any_server, coupon_id)
    assert found["state"] == "ISSUED"
    assert found["history"][-1]["action"] == "REINSTATE"
    assert found["history"][-1]["actor"] == "agent@acme.test"

    # And the coupon page tells the whole story
    page.goto(f"{any_server.base}/console/coupons/{coupon_id}")
    history = page.locator("table.history")
    expect(history).to_contain_text("REVOKE")
    expect(history).to_contain_text("leaked on a deal site")
    expect(history).to_contain_text("agent@acme.test")


def test_a_customers_picked_coupons_are_revoked_and_the_others_are_not(
    page: Page, server: Server
) -> None:
    # Given a customer with three issued coupons
    given = campaign(server, issued=3)
    sign_in(page, server, "admin@acme.test")

    # When an admin finds the customer by mobile, picks two coupons and revokes them
    page.get_by_label("Search").fill("447700900123")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name=re.compile("Sam"))).to_be_visible()
    rows = page.get_by_role("row")
    expect(rows).to_have_count(4)  # header + one row per coupon
    for code in given.codes[:2]:
        page.get_by_role("row", name=re.compile(code)).get_by_role("checkbox").check()
    screenshot(page, "customer")
    page.get_by_role("button", name="Revoke selected").click()
    page.get_by_label("Reason").fill("fraud report 2291")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("2 will be revoked")).to_be_visible()
    page.get_by_role("button", name="Confirm revoke").click()

    # Then exactly the picked two are revoked
    expect(page.get_by_text("Revoked 2 of 2")).to_be_visible()
    states = [coupon_state(server, cid)["state"] for cid in given.coupon_ids]
    assert states == ["REVOKED", "REVOKED", "ISSUED"]


def test_a_revoke_without_a_reason_or_on_an_expired_series_changes_nothing(
    page: Page, server: Server
) -> None:
    # Given a coupon of a series that has expired
    given = campaign(server, issued=1)
    sign_in(page, server, "agent@acme.test")
    coupon_id = given.coupon_ids[0]

    # When the reason is blank (the browser's own check bypassed)
    page.goto(f"{server.base}/console/revoke?coupon={coupon_id}")
    page.get_by_label("Reason").evaluate("el => el.removeAttribute('required')")
    page.get_by_role("button", name="Preview").click()

    # Then the page asks for one
    expect(page.get_by_role("alert")).to_contain_text("Give a reason")

    # When the series expires before the revoke is confirmed
    page.get_by_label("Reason").fill("too late")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("button", name="Confirm revoke")).to_be_visible()
    with server.backend.db.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("UPDATE coupon_series SET valid_till = :t WHERE id = :i"),
            {"t": "2000-01-01 00:00:00", "i": given.series_id},
        )
    page.get_by_role("button", name="Confirm revoke").click()

    # Then the API's error is shown in words, and the coupon is untouched
    expect(page.get_by_role("alert")).to_contain_text("expired (error 712)")
    assert coupon_state(server, coupon_id)["state"] == "ISSUED"
    expect(page.locator("body")).not_to_contain_text("Traceback")


def test_a_revoked_coupon_can_be_reinstated_from_its_page(page: Page, server: Server) -> None:
    # Given a coupon revoked through the API
    given = campaign(server, issued=1)
    with server.api() as api:
        api.post(
            "/v2/coupon/revoke",
            json={"couponSeriesId": given.series_id, "couponCodes": given.codes},
        ).raise_for_status()
    sign_in(page, server, "agent@acme.test")

    # When the agent opens it: no Revoke button, a Reinstate one
    page.goto(f"{server.base}/console/coupons/{given.coupon_ids[0]}")
    expect(page.locator("#coupon-state")).to_have_text("REVOKED")
    expect(page.get_by_role("button", name="Revoke", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Reinstate").click()

    # Then it is ISSUED again
    expect(page.get_by_role("status")).to_contain_text("Reinstated")
    expect(page.locator("#coupon-state")).to_have_text("ISSUED")
