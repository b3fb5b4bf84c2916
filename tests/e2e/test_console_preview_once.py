"""A console preview starts one real job for its whole org: whoever presses "Start revoke job",
however often, at once or after that job was undone (docs/console.md)."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Backend
from tests.e2e.conftest import Api
from tests.e2e.test_cli import unique
from tests.e2e.test_console_http import ORIGIN, _bulk, _csrf, sign_in_new_person
from tests.e2e.test_revoke_jobs import JOBS, drain

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def person(backend: Backend, app: FastAPI) -> TestClient:
    """A support person of acme, signed in with a browser of their own."""
    browser = TestClient(app, raise_server_exceptions=False)
    return sign_in_new_person(backend, browser, "pat")


def finished_preview(backend: Backend, browser: TestClient, api: Api) -> tuple[str, list[str]]:
    """A preview of two codes of a new series, run to its end; its id and the codes."""
    codes = [unique("ONE").upper(), unique("ONE").upper()]
    series_id = api.series(codes=codes)
    sent = _bulk(browser, series=str(series_id), codes="\n".join(codes), step="preview")
    assert sent.status_code == 303, sent.text
    drain(backend.db)
    return sent.headers["location"].rsplit("/", 1)[1], codes


def start(browser: TestClient, preview_id: str) -> httpx.Response:
    sent: httpx.Response = browser.post(
        f"/console/jobs/{preview_id}/start",
        data={"csrf": _csrf(browser)},
        headers=ORIGIN,
        follow_redirects=False,
    )
    return sent


def job_ids(api: Api) -> set[str]:
    return {j["jobId"] for j in api.ok(api.get(JOBS, params={"limit": 1000}))["jobs"]}


def test_a_second_person_on_a_started_preview_gets_a_link_and_their_start_leads_to_its_job(
    backend: Backend, app: FastAPI, api: Api
) -> None:
    # Given two people of one org, both looking at the same finished preview
    ann, bob = person(backend, app), person(backend, app)
    preview_id, _ = finished_preview(backend, ann, api)
    start_form = f'action="/console/jobs/{preview_id}/start"'
    assert start_form in bob.get(f"/console/jobs/{preview_id}").text

    # When the first starts it
    first = start(ann, preview_id)
    assert first.status_code == 303
    job_id = first.headers["location"].rsplit("/", 1)[1]
    before = job_ids(api)

    # Then the preview's page shows the started job, with no button to start another
    page = bob.get(f"/console/jobs/{preview_id}").text
    assert start_form not in page
    assert f'href="/console/jobs/{job_id}"' in page

    # And the second person's start (from the page drawn before) leads to that job, making none
    second = start(bob, preview_id)
    assert (second.status_code, second.headers["location"]) == (303, f"/console/jobs/{job_id}")
    assert job_ids(api) == before


def test_a_preview_started_again_after_its_job_was_undone_revokes_nothing_again(
    backend: Backend, app: FastAPI, api: Api
) -> None:
    # Given a preview started by one person, its job run and then undone
    ann, bob = person(backend, app), person(backend, app)
    preview_id, codes = finished_preview(backend, ann, api)
    job_id = start(ann, preview_id).headers["location"].rsplit("/", 1)[1]
    drain(backend.db)
    undo = ann.post(
        f"/console/jobs/{job_id}/undo",
        data={"csrf": _csrf(ann)},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert undo.status_code == 303, undo.text
    drain(backend.db)
    before = job_ids(api)

    # When another person starts the same preview
    again = start(bob, preview_id)
    drain(backend.db)

    # Then it leads to the undone job, and no job is made: the coupons stay reinstated
    assert (again.status_code, again.headers["location"]) == (303, f"/console/jobs/{job_id}")
    assert job_ids(api) == before
    report = api.get(f"{JOBS}/{job_id}/report").text.splitlines()[1:]
    assert [row.split(",")[:2] for row in report] == [[c, "revoked"] for c in codes]
    undone = api.ok(api.get(f"{JOBS}/{job_id}"))
    assert undone["undoneByJobId"] is not None


def start_at_once(browsers: list[TestClient], preview_id: str) -> list[httpx.Response]:
    """Each browser sends the preview's start form at the same moment; their answers."""
    forms = [{"csrf": _csrf(b)} for b in browsers]
    barrier = threading.Barrier(len(browsers))
    answers: list[httpx.Response] = []

    def press(browser: TestClient, form: dict[str, str]) -> None:
        barrier.wait()
        answers.append(
            browser.post(
                f"/console/jobs/{preview_id}/start",
                data=form,
                headers=ORIGIN,
                follow_redirects=False,
            )
        )

    racers = [
        threading.Thread(target=press, args=pair) for pair in zip(browsers, forms, strict=True)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    return answers


def test_two_people_starting_one_preview_at_once_make_one_job(
    backend: Backend, app: FastAPI, api: Api
) -> None:
    # Given two people on the same finished preview, several times over
    ann, bob = person(backend, app), person(backend, app)
    for _ in range(3):
        preview_id, _ = finished_preview(backend, ann, api)
        before = job_ids(api)

        # When both press "Start revoke job" at the same moment
        answers = start_at_once([ann, bob], preview_id)

        # Then both lead to the same, single new job
        assert [a.status_code for a in answers] == [303, 303], [a.text for a in answers]
        assert answers[0].headers["location"] == answers[1].headers["location"]
        made = job_ids(api) - before
        assert {f"/console/jobs/{j}" for j in made} == {answers[0].headers["location"]}
