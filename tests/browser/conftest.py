"""Browser tests: Debian's Chromium, driven by Playwright, against a real server.

One browser per test process; one server per backend (uvicorn in a thread, on a free port,
over the same migrated databases the other tests use); a fresh browser context (no cookies)
per test. Playwright's own browser download cannot run here, so the system Chromium is
launched by path, with the flags a closed network needs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from coupons.config import Settings
from coupons.entrypoints.http import create_app
from coupons.entrypoints.job_worker import JobWorker, JobWorkerOptions
from coupons.services import people
from coupons.services.common import utcnow
from tests.conftest import PASSWORD, Backend, postgresql_database, sqlite_database

CHROMIUM = os.environ.get("COUPONS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PERSON_PASSWORD = "console-pass-0123"
JOB_CHUNK = 25
PEOPLE = {
    "admin@acme.test": ("acme", "admin"),
    "agent@acme.test": ("acme", "support"),
    "viewer@acme.test": ("acme", "viewer"),
    "admin@globex.test": ("globex", "admin"),
}
FUTURE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
# Where the README's screenshots go; set COUPONS_SCREENSHOTS=docs/screenshots to refresh them.
SCREENSHOTS = os.environ.get("COUPONS_SCREENSHOTS")


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing; `make test` installs it")
        warnings.warn(f"\n\n*** {CHROMIUM} missing: browser tests SKIPPED ***\n", stacklevel=1)
        pytest.skip("no Chromium")
    launched = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@dataclass
class Server:
    """A running `coupons` server over one backend."""

    base: str
    backend: Backend
    app: Any

    def api(self, username: str = "acme-admin") -> httpx.Client:
        return httpx.Client(base_url=self.base, auth=(username, PASSWORD), timeout=30)

    def forget_failed_sign_ins(self) -> None:
        self.app.state.authenticator.throttle._failures.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(backend: Backend) -> Iterator[Server]:
    def add_people(uow: Any) -> None:
        for email, (org, role) in PEOPLE.items():
            if uow.users.by_email(email) is None:
                people.create_person(
                    uow, org=org, email=email, role=role, password=PERSON_PASSWORD, now=utcnow()
                )
        uow.commit()

    backend.db.run(add_people)
    settings = Settings(
        database_url=backend.url,
        token_secret="browser-test-signing-key-0123456789abcdef",
        auth_failure_limit=3,
    )
    app = create_app(settings, db=backend.db)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # Revoke jobs run in a background worker, as under `coupons serve`; small chunks and a
    # quick poll so a test sees a job move and end within a second or two.
    worker = JobWorker(backend.db, JobWorkerOptions(chunk_size=JOB_CHUNK, poll_interval=0.05))
    worker_thread = threading.Thread(target=worker.run, name="job-worker", daemon=True)
    worker_thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("console test server did not start")
        time.sleep(0.02)
    yield Server(f"http://127.0.0.1:{port}", backend, app)
    worker.stop()
    worker_thread.join(timeout=10)
    server.should_exit = True
    thread.join(timeout=10)


# Each server has a database of its own: its job worker polls for jobs all session long, and
# on the shared test database it took the jobs other tests queued for their own workers.
@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with sqlite_database(Path(tmp_path_factory.mktemp("console-sqlite"))) as backend:
        yield from _serve(backend)


@pytest.fixture(scope="session")
def postgresql_server(postgres_admin_url: str | None) -> Iterator[Server]:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with postgresql_database(postgres_admin_url, "coupons_console") as backend:
        yield from _serve(backend)


@pytest.fixture
def server(sqlite_server: Server) -> Server:
    """The SQLite server, data tables emptied (people and API clients kept)."""
    sqlite_server.backend.reset()
    sqlite_server.forget_failed_sign_ins()
    return sqlite_server


@pytest.fixture(params=["sqlite", "postgresql"])
def any_server(request: pytest.FixtureRequest) -> Server:
    """Each backend's server in turn, data tables emptied."""
    chosen: Server = request.getfixturevalue(f"{request.param}_server")
    chosen.backend.reset()
    chosen.forget_failed_sign_ins()
    return chosen


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, server: Server, email: str, password: str = PERSON_PASSWORD) -> None:
    """Sign in through the form, by keyboard, as a person would."""
    page.goto(f"{server.base}/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    # The answer (the next page, or the form again) is loaded before the test goes on: a
    # test typing at once could type into the page that was going away.
    with page.expect_navigation():
        page.get_by_label("Password").press("Enter")


def screenshot(page: Page, name: str) -> None:
    """Keep a picture of a page for the README when asked to (COUPONS_SCREENSHOTS)."""
    shot = page.screenshot(type="png")
    if SCREENSHOTS:
        target = Path(SCREENSHOTS)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{name}.png").write_bytes(shot)


@dataclass
class Campaign:
    """A series with coupons issued to one customer, made through the API."""

    series_id: int
    customer_id: int
    codes: list[str]
    coupon_ids: list[int]


def campaign(
    server: Server,
    *,
    issued: int = 3,
    description: str = "Spring 15% off",
    mobile: str = "+44 7700 900123",
    valid_till: str = FUTURE,
) -> Campaign:
    with server.api() as api:
        series = api.post(
            "/v2/coupon/series",
            json={
                "description": description,
                "clientHandlingType": "DISC_CODE",
                "validTill": valid_till,
                "discountType": "PERC",
                "discountValue": 15,
            },
        ).json()["entity"]["id"]
        codes = [f"SPRING-{series}-{i:03d}" for i in range(1, issued + 3)]
        api.post(f"/v2/coupon/series/{series}/codes", json={"codes": codes}).raise_for_status()
        customer = api.post(
            "/v2/customers",
            json={"mobile": mobile, "email": f"sam{series}@example.com", "firstName": "Sam"},
        ).json()["entity"]["id"]
        got = api.post(
            "/v2/coupon/issue/multiple",
            json={"seriesId": series, "customer": {"id": customer}, "count": issued},
        ).json()["entity"]["coupons"]
    return Campaign(
        series_id=int(series),
        customer_id=int(customer),
        codes=[c["couponCode"] for c in got],
        coupon_ids=[int(c["couponId"]) for c in got],
    )


def coupon_state(server: Server, coupon_id: int) -> dict[str, Any]:
    with server.api() as api:
        entity: dict[str, Any] = api.get(f"/v2/coupon/{coupon_id}").json()["entity"]
    return entity
