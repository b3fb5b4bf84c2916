"""Activity and series pages in a real browser (spec §9, on the lists of spec §7)."""

from __future__ import annotations

import csv
import io
import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, campaign, coupon_state, screenshot, sign_in


def test_activity_lists_revokes_newest_first_filters_by_person_and_undoes_a_row(
    page: Page, server: Server
) -> None:
    # Given two revokes: one by an API client, then one by a person in the console
    given = campaign(server, issued=2)
    with server.api() as api:
        api.post(
            "/v2/coupon/revoke",
            json={
                "couponSeriesId": given.series_id,
                "couponCodes": [given.codes[0]],
                "reason": "api revoke",
            },
        ).raise_for_status()
    sign_in(page, server, "agent@acme.test")
    page.goto(f"{server.base}/console/revoke?coupon={given.coupon_ids[1]}")
    page.get_by_label("Reason").fill("console revoke")
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Confirm revoke").click()
    expect(page.get_by_role("heading", name="Revoked")).to_be_visible()

    # When the agent opens the activity page
    page.get_by_role("link", name="Activity", exact=True).click()

    # Then both show, newest first, with who and why
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("agent@acme.test")
    expect(rows.nth(0)).to_contain_text("console revoke")
    expect(rows.nth(1)).to_contain_text("acme-admin")
    screenshot(page, "activity")

    # When they filter by person
    page.get_by_label("Person").fill("acme-admin")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("api revoke")

    # And undo that row
    rows.nth(0).get_by_role("button", name="Undo").click()

    # Then its coupon is back, and the other stays revoked
    expect(page.get_by_text("Reinstated 1 of 1")).to_be_visible()
    assert coupon_state(server, given.coupon_ids[0])["state"] == "ISSUED"
    assert coupon_state(server, given.coupon_ids[1])["state"] == "REVOKED"


def test_series_page_counts_states_pages_filters_and_exports_csv(
    page: Page, server: Server
) -> None:
    # Given a series with three issued coupons and two in the pool, one issued one revoked
    given = campaign(server, issued=3, description="Autumn promo")
    with server.api() as api:
        api.post(
            "/v2/coupon/revoke",
            json={"couponSeriesId": given.series_id, "couponCodes": [given.codes[0]]},
        ).raise_for_status()
    sign_in(page, server, "viewer@acme.test")

    # When a viewer opens the series list and the series
    page.get_by_role("link", name="Series", exact=True).click()
    row = page.get_by_role("row", name=re.compile("Autumn"))
    expect(row).to_contain_text("DISC_CODE")
    row.get_by_role("link").click()

    # Then the counts per state show, and the coupons filter by state
    expect(page.locator("dl.facts")).to_contain_text("REVOKED")
    expect(page.locator("tbody tr")).to_have_count(5)
    page.get_by_label("State").select_option("ISSUED")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    screenshot(page, "series")

    # And "Export CSV" downloads the filtered coupons
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = download.value.path().read_text()
    found = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["couponCode"] for r in found) == sorted(given.codes[1:])
    assert {r["state"] for r in found} == {"ISSUED"}
