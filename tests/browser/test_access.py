"""Signing in and out, roles, and forged requests, in a real browser (spec §9)."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from coupons.services import people
from coupons.services.common import utcnow
from tests.browser.conftest import (
    PERSON_PASSWORD,
    Server,
    campaign,
    coupon_state,
    screenshot,
    sign_in,
)

NAV = ("Search", "Bulk revoke", "Activity", "Series")


def test_a_person_with_a_non_ascii_email_signs_in_typing_it_in_any_case(
    page: Page, any_server: Server
) -> None:
    # Given a person whose email has a non-ASCII local part and domain
    email = "jörg.müller@bücher.example"

    def add(uow: Any) -> None:
        if uow.users.by_email(email) is None:
            people.create_person(
                uow, org="acme", email=email, role="viewer", password=PERSON_PASSWORD, now=utcnow()
            )
            uow.commit()

    any_server.backend.db.run(add)

    # When they type it at the sign-in page, in capitals
    sign_in(page, any_server, "JÖRG.Müller@BÜCHER.example")

    # Then the browser sends it and they are signed in as themselves
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text(email)


def test_a_wrong_password_is_refused_with_a_message_that_does_not_say_which_part_was_wrong(
    page: Page, server: Server
) -> None:
    # When a known email is tried with a wrong password, and an unknown email
    sign_in(page, server, "agent@acme.test", "not-the-password")
    first = page.get_by_role("alert").inner_text()
    sign_in(page, server, "nobody@acme.test", PERSON_PASSWORD)
    second = page.get_by_role("alert").inner_text()

    # Then both get the same words, and neither is signed in
    assert first == second == "Wrong email or password."
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    screenshot(page, "sign-in")


def test_failed_sign_ins_are_throttled_even_for_the_right_password(
    page: Page, server: Server
) -> None:
    # Given as many failures as the limit allows (3 in the test server)
    for _ in range(3):
        sign_in(page, server, "agent@acme.test", "wrong")
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")

    # When the right password comes next
    sign_in(page, server, "agent@acme.test")

    # Then it is refused until the window passes
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_every_page_has_the_navigation_and_who_is_signed_in_and_sign_out_ends_the_session(
    browser: Browser, page: Page, server: Server
) -> None:
    # Given a signed-in person
    sign_in(page, server, "viewer@acme.test")
    cookie = next(c for c in page.context.cookies() if c["name"] == "coupons_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0

    # Then every page offers the navigation, and each link works
    for name in NAV:
        page.get_by_role("link", name=name, exact=True).click()
        for other in NAV:
            expect(page.get_by_role("link", name=other, exact=True)).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_contain_text("viewer@acme.test")

    # When they sign out
    page.get_by_role("button", name="Sign out").click()

    # Then the sign-in page shows, and the old cookie opens nothing any more
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    fresh = browser.new_context()
    fresh.add_cookies([cookie])  # type: ignore[list-item]
    stale = fresh.new_page()
    stale.goto(f"{server.base}/console/search")
    expect(stale).to_have_url(re.compile("/console/signin"))
    fresh.close()


def test_a_viewer_sees_no_revoke_button_and_a_forged_revoke_is_refused(
    page: Page, server: Server
) -> None:
    # Given an issued coupon and a viewer signed in
    given = campaign(server, issued=1)
    sign_in(page, server, "viewer@acme.test")

    # Then neither the coupon page nor the customer page offers to revoke
    page.goto(f"{server.base}/console/coupons/{given.coupon_ids[0]}")
    expect(page.locator("#coupon-state")).to_have_text("ISSUED")
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    page.goto(f"{server.base}/console/customers/{given.customer_id}")
    expect(page.get_by_role("button", name="Revoke selected")).to_have_count(0)

    # When the viewer posts a revoke anyway, with a valid token from their own page
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(
        f"{server.base}/console/revoke",
        form={
            "csrf": token or "",
            "coupon": str(given.coupon_ids[0]),
            "reason": "x",
            "step": "confirm",
        },
        headers={"Origin": server.base},
    )

    # Then it is refused in words and nothing changes
    assert answer.status == 403
    assert "does not allow" in answer.text()
    assert coupon_state(server, given.coupon_ids[0])["state"] == "ISSUED"


def test_a_revoke_without_the_right_csrf_token_or_from_another_origin_changes_nothing(
    page: Page, server: Server
) -> None:
    # Given a support agent signed in, whose browser holds a valid session cookie
    given = campaign(server, issued=1)
    sign_in(page, server, "agent@acme.test")
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    body: dict[str, str | float | bool] = {
        "coupon": str(given.coupon_ids[0]),
        "reason": "forged",
        "step": "confirm",
    }
    url = f"{server.base}/console/revoke"

    # When a page elsewhere makes the browser post without the token, with a wrong one, or
    # with the right one but from another origin
    answers = [
        page.request.post(url, form=body, headers={"Origin": server.base}),
        page.request.post(url, form={**body, "csrf": "0" * 64}, headers={"Origin": server.base}),
        page.request.post(
            url, form={**body, "csrf": token}, headers={"Origin": "http://evil.test"}
        ),
    ]

    # Then every one is refused and the coupon is untouched
    assert [a.status for a in answers] == [403, 403, 403]
    assert all("nothing was changed" in a.text() for a in answers)
    assert coupon_state(server, given.coupon_ids[0])["state"] == "ISSUED"

    # And the same request with the token, from the console itself, works
    done = page.request.post(url, form={**body, "csrf": token}, headers={"Origin": server.base})
    assert done.status == 200
    assert coupon_state(server, given.coupon_ids[0])["state"] == "REVOKED"


def test_another_orgs_coupon_is_not_found_and_faults_never_show_a_stack_trace(
    page: Page, server: Server
) -> None:
    # Given a coupon of acme, and a person of globex
    given = campaign(server, issued=1)
    sign_in(page, server, "admin@globex.test")

    # When they open it, or search its code, or open a page that does not exist
    page.goto(f"{server.base}/console/coupons/{given.coupon_ids[0]}")
    expect(page.get_by_role("alert")).to_contain_text("Coupon not found (error 682)")
    page.goto(f"{server.base}/console/search?q={given.codes[0]}")
    expect(page.get_by_role("status")).to_contain_text("Nothing matches")
    missing = page.goto(f"{server.base}/console/no-such-page")

    # Then they see plain pages, never the other org's data or a trace
    assert missing is not None and missing.status == 404
    expect(page.get_by_role("alert")).to_have_text("There is no such page.")
    expect(page.locator("body")).not_to_contain_text(given.codes[0])


def test_pages_fit_a_phone_and_work_from_the_keyboard(page: Page, server: Server) -> None:
    # Given a phone-sized window
    page.set_viewport_size({"width": 375, "height": 740})
    given = campaign(server, issued=2)

    # When a person signs in and searches using only the keyboard
    sign_in(page, server, "agent@acme.test")
    page.keyboard.press("Tab")  # the skip link first
    page.get_by_label("Search").focus()
    expect(page.get_by_label("Search")).to_be_focused()
    page.keyboard.type(given.codes[0])
    expect(page.get_by_label("Search")).to_have_value(given.codes[0])
    page.keyboard.press("Enter")

    # Then the coupon page shows without sideways scrolling
    expect(page.locator("#coupon-state")).to_have_text("ISSUED")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    for name in ("Search", "Bulk revoke", "Activity", "Series"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    screenshot(page, "coupon-phone")
