"""Bulk revoke as a server job, in a real browser (spec §9 on the jobs of spec §8)."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta

from playwright.sync_api import BrowserContext, FilePayload, Page, expect

from coupons.adapters.tables import revoke_jobs
from tests.browser.conftest import Server, campaign, coupon_state, screenshot, sign_in


def _pool(server: Server, series_id: int, count: int) -> list[str]:
    codes = [f"BULK-{series_id}-{i:04d}" for i in range(count)]
    with server.api() as api:
        api.post(f"/v2/coupon/series/{series_id}/codes", json={"codes": codes}).raise_for_status()
    return codes


def test_a_bulk_revoke_of_pasted_codes_runs_to_100_percent_and_can_be_undone(
    page: Page, any_server: Server
) -> None:
    # Given a series with 120 codes in its pool
    given = campaign(any_server, issued=1)
    codes = _pool(any_server, given.series_id, 120)
    sign_in(page, any_server, "agent@acme.test")

    # When the agent pastes them (plus a typo and a duplicate) and previews the job
    page.get_by_role("link", name="Bulk revoke", exact=True).click()
    page.get_by_label("Series", exact=True).fill(str(given.series_id))
    page.get_by_label("Codes", exact=True).fill("\n".join([*codes, "NOPE-1", codes[0]]))
    page.get_by_label("Reason", exact=True).fill("campaign cancelled")
    screenshot(page, "bulk")
    page.get_by_role("button", name="Preview").click()

    # Then a dry-run job reports what would happen and changes nothing
    expect(page.get_by_role("heading", name=re.compile("Preview job"))).to_be_visible()
    bar = page.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    expect(page.locator("[data-field=revokedCount]")).to_have_text("120")
    with any_server.api() as api:
        pool = api.get(f"/v2/coupon/series/{given.series_id}").json()["entity"]["counts"]
    assert pool["REVOKED"] == 0

    # When they start the real job from the finished preview, without pasting the codes again
    page.get_by_role("button", name="Start revoke job").click(timeout=20_000)

    # Then the progress bar moves to 100% live, with the counts by outcome
    expect(page.get_by_role("heading", name=re.compile("Revoke job"))).to_be_visible()
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    expect(page.locator("[data-field=state]")).to_have_text("SUCCEEDED")
    expect(page.locator("[data-field=revokedCount]")).to_have_text("120")
    expect(page.get_by_text("Coupon not found (error 682): 1")).to_be_visible()
    screenshot(page, "job")

    # And the report lists every line, in input order
    with page.expect_download() as download:
        page.get_by_role("link", name="Download report").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [r["code"] for r in rows] == [*codes, "NOPE-1", codes[0]]
    assert [r["outcome"] for r in rows[-2:]] == ["not_found", "duplicate_in_file"]

    # When they undo the job
    page.get_by_role("button", name="Undo job").click()

    # Then an undo job reinstates them all, and history names the person
    expect(page.get_by_role("heading", name=re.compile("Undo job"))).to_be_visible()
    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "100", timeout=20_000
    )
    expect(page.locator("[data-field=state]")).to_have_text("SUCCEEDED")
    with any_server.api() as api:
        pool = api.get(f"/v2/coupon/series/{given.series_id}").json()["entity"]["counts"]
    assert pool["REVOKED"] == 0
    assert coupon_state(any_server, given.coupon_ids[0])["state"] == "ISSUED"


def test_a_codes_file_upload_starts_a_job_and_a_bad_file_changes_nothing(
    page: Page, server: Server
) -> None:
    # Given a series with codes, and a file of them with a `code` column
    given = campaign(server, issued=1)
    codes = _pool(server, given.series_id, 30)
    sign_in(page, server, "agent@acme.test")
    page.goto(f"{server.base}/console/bulk")

    # When a file that is not UTF-8 is uploaded
    page.get_by_label("Codes file").set_input_files(
        files=FilePayload(name="codes.csv", mimeType="text/csv", buffer=b"code\n\xff\xfe\n")
    )
    page.get_by_label("Reason", exact=True).fill("leak")
    page.get_by_role("button", name="Start revoke job").click()

    # Then the page says what is wrong with it, and no job exists
    expect(page.get_by_role("alert")).to_contain_text("9027")
    with server.api() as api:
        assert api.get("/v2/coupon/revoke/jobs").json()["entity"]["jobs"] == []

    # When a good file is uploaded
    body = ("code\n" + "\n".join(codes) + "\n").encode()
    page.get_by_label("Codes file").set_input_files(
        files=FilePayload(name="codes.csv", mimeType="text/csv", buffer=body)
    )
    page.get_by_label("Reason", exact=True).fill("leak")
    page.get_by_role("button", name="Start revoke job").click()

    # Then the job revokes them all
    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "100", timeout=20_000
    )
    expect(page.locator("[data-field=revokedCount]")).to_have_text("30")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)


def test_a_viewer_sees_jobs_but_cannot_start_cancel_or_undo_them(
    page: Page, server: Server
) -> None:
    sign_in(page, server, "viewer@acme.test")
    page.goto(f"{server.base}/console/bulk")

    expect(page.get_by_role("button", name="Start revoke job")).to_have_count(0)
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    answer = page.request.post(
        f"{server.base}/console/bulk",
        multipart={"csrf": token, "codes": "A\nB", "reason": "x", "step": "start"},
        headers={"Origin": server.base},
    )
    assert answer.status == 403
    with server.api() as api:
        assert api.get("/v2/coupon/revoke/jobs").json()["entity"]["jobs"] == []


def test_a_job_page_whose_session_ends_while_it_watches_goes_to_sign_in(
    context: BrowserContext, server: Server
) -> None:
    # Given a job another host is still running (its row claimed, its lease live), so the
    # page keeps asking for its progress
    given = campaign(server, issued=1)
    codes = _pool(server, given.series_id, 3)
    with server.api() as api:
        started = api.post(
            "/v2/coupon/revoke/jobs",
            params={"couponSeriesId": given.series_id},
            content="\n".join(codes),
            headers={"Content-Type": "text/plain"},
        )
        job_id = started.json()["entity"]["jobId"]
        for _ in range(200):
            if api.get(f"/v2/coupon/revoke/jobs/{job_id}").json()["entity"]["state"] == "SUCCEEDED":
                break
            time.sleep(0.05)
    still_running = {"state": "RUNNING", "finished_at": None, "claimed_by": "another-host"}
    lease = datetime.now(UTC) + timedelta(hours=1)
    jobs = revoke_jobs.update().where(revoke_jobs.c.id == job_id)
    with server.backend.db.engine.begin() as conn:
        conn.execute(jobs.values(**still_running, lease_until=lease))
    page = context.new_page()
    sign_in(page, server, "agent@acme.test")
    try:
        page.goto(f"{server.base}/console/jobs/{job_id}")
        expect(page.locator("[data-field=state]")).to_have_text("RUNNING")

        # When the person signs out in another tab
        other = context.new_page()
        other.goto(f"{server.base}/console/search")
        other.get_by_role("button", name="Sign out").click()

        # Then the job page does not sit on frozen progress and stale buttons: it goes to
        # the sign-in page (which brings the person back to the job)
        expect(page.get_by_label("Password")).to_be_visible(timeout=10_000)
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    finally:
        with server.backend.db.engine.begin() as conn:
            conn.execute(jobs.values(state="SUCCEEDED", finished_at=lease, lease_until=None))
