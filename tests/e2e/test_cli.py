"""Spec §3: the `coupons` command's database, org and client subcommands."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from coupons.adapters import migrate
from coupons.adapters.tables import api_clients
from coupons.entrypoints.cli import app as cli
from coupons.services.auth import hash_secret, secret_version
from tests.conftest import Backend
from tests.e2e.conftest import error_code
from tests.reliability.live import free_port

runner = CliRunner()

# The shared app fixture signs tokens with a short test key; PyJWT warns about its length and
# warnings fail tests. Production keys are generated at 48 random bytes.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def run(*args: str) -> tuple[int, str]:
    """Exit code and output; any failure must be a clean exit, never an uncaught exception
    (which a user would see as a traceback)."""
    result = runner.invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def create_person(url: str, email: str, role: str = "support", org: str = "acme") -> None:
    """A console person made by the command line (password `pw-123456`)."""
    code, output = run(
        "user",
        "create",
        "--org",
        org,
        "--email",
        email,
        "--role",
        role,
        "--password",
        "pw-123456",
        "--db",
        url,
    )
    assert code == 0, output


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_client(backend: Backend) -> tuple[str, str]:
    """A new org's new API client: its username and the generated secret the CLI printed."""
    org, username = unique("initech"), unique("initech-bot")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    created = run("client", "create", "--org", org, "--username", username, "--db", backend.url)
    return username, created[1].strip()


def secret_hash(backend: Backend, username: str) -> str:
    with backend.db.engine.connect() as conn:
        value = conn.scalar(
            text("SELECT secret_hash FROM api_clients WHERE username = :u"), {"u": username}
        )
    assert value is not None
    return str(value)


def _tables(url: str) -> set[str]:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_in_an_empty_database(empty_database_url: str) -> None:
    # when the schema is created in an empty database
    code, output = run("db", "upgrade", "--db", empty_database_url)

    # then it succeeds and the tables exist
    assert code == 0, output
    assert {"orgs", "api_clients", "coupon_series", "coupons", "customers"} <= _tables(
        empty_database_url
    )


def test_a_postgresql_url_naming_several_hosts_reaches_the_one_that_answers(
    empty_database_url: str,
) -> None:
    if not empty_database_url.startswith("postgresql"):
        pytest.skip("several hosts are PostgreSQL's")
    # given libpq's form for a primary and its standby, the first host's address dead
    url = make_url(empty_database_url)
    several = (
        f"postgresql://{url.username}@127.0.0.1:{free_port()},{url.host}:{url.port}/"
        f"{url.database}?target_session_attrs=read-write"
    )

    # when the schema is created and an org made through it
    upgraded = run("db", "upgrade", "--db", several)
    created = run("org", "create", "multihost", "--db", several)

    # then both reach the server that answers (the comma was read as part of a port, and
    # the URL refused as no database URL at all)
    assert upgraded[0] == 0 and created[0] == 0, (upgraded, created)
    assert "orgs" in _tables(empty_database_url)


def test_a_postgresql_url_naming_several_hosts_with_one_port_still_connects(
    empty_database_url: str,
) -> None:
    if not empty_database_url.startswith("postgresql"):
        pytest.skip("several hosts are PostgreSQL's")
    # given two names of the server and the one port as a query option, a URL read before
    # several-host URLs were taken (it then failed: "Can't mix 'multihost' formats")
    url = make_url(empty_database_url)
    several = f"postgresql://{url.username}@{url.host},localhost/{url.database}?port={url.port}"

    upgraded = run("db", "upgrade", "--db", several)

    assert upgraded[0] == 0, upgraded
    assert "orgs" in _tables(empty_database_url)


def test_db_upgrade_on_an_up_to_date_database_succeeds_and_keeps_data(
    empty_database_url: str,
) -> None:
    # given an upgraded database with an org in it
    assert run("db", "upgrade", "--db", empty_database_url)[0] == 0
    assert run("org", "create", "keepme", "--db", empty_database_url)[0] == 0

    # when it is upgraded again
    code, output = run("db", "upgrade", "--db", empty_database_url)

    # then nothing fails and the org is still there
    assert code == 0, output
    again, message = run("org", "create", "keepme", "--db", empty_database_url)
    assert again != 0 and "already exists" in message


def test_db_upgrade_reads_the_url_from_the_environment(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUPONS_DATABASE_URL", empty_database_url)

    code, output = run("db", "upgrade")

    assert code == 0, output
    assert "orgs" in _tables(empty_database_url)


def stamped_by_a_newer_release(url: str) -> None:
    """A database at head, then stamped with a revision this version does not know."""
    assert run("db", "upgrade", "--db", url)[0] == 0
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999_from_the_future'"))
    engine.dispose()


@pytest.mark.parametrize("command", [("db", "upgrade"), ("org", "list"), ("serve",)])
def test_a_database_migrated_by_a_newer_release_says_to_run_that_release(
    empty_database_url: str, command: tuple[str, ...]
) -> None:
    # given a database a newer release has migrated
    stamped_by_a_newer_release(empty_database_url)
    if command == ("serve",):
        command = ("serve", "--port", str(free_port()))

    # when this version upgrades it, or works on it
    code, output = run(*command, "--db", empty_database_url)

    # then it says so in one line, naming both revisions, and does not offer an upgrade
    assert code == 1
    assert output.strip() == (
        f"error: the database was migrated by a newer release (revision 0999_from_the_future; "
        f"this version knows up to {migrate.head_revision()}): run that release or newer"
    )
    assert migrate.current_revision(empty_database_url) == "0999_from_the_future"


# --- org and client -------------------------------------------------------------------------


def test_org_create_prints_the_new_orgs_id(backend: Backend) -> None:
    code, output = run("org", "create", unique("initech"), "--db", backend.url)

    assert code == 0, output
    assert output.strip().isdigit()


def test_creating_an_org_twice_fails_without_a_traceback(backend: Backend) -> None:
    # given an org
    name = unique("initech")
    assert run("org", "create", name, "--db", backend.url)[0] == 0

    # when it is created again
    code, output = run("org", "create", name, "--db", backend.url)

    # then the command fails with a plain message
    assert code != 0
    assert "already exists" in output
    assert "Traceback" not in output


def test_client_create_prints_a_generated_secret_once_and_stores_only_its_hash(
    backend: Backend,
) -> None:
    # given an org
    org = unique("initech")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    username = unique("initech-bot")

    # when a client is created without a password
    code, output = run(
        "client", "create", "--org", org, "--username", username, "--db", backend.url
    )

    # then the secret is printed exactly once and only an argon2 hash of it is stored
    assert code == 0, output
    secret = output.strip()
    assert len(secret) >= 20
    assert output.count(secret) == 1
    stored = secret_hash(backend, username)
    assert stored.startswith("$argon2") and secret not in stored
    assert PasswordHasher().verify(stored, secret)


def test_client_create_uses_a_given_password_and_groups(
    backend: Backend, client: TestClient
) -> None:
    # given a client created with its own password as coupon_admin
    org = unique("initech")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    username = unique("initech-admin")
    code, output = run(
        "client",
        "create",
        "--org",
        org,
        "--username",
        username,
        "--password",
        "a-long-chosen-secret",
        "--groups",
        "default,coupon_admin",
        "--db",
        backend.url,
    )
    assert code == 0, output

    # when it creates a series over HTTP with that password
    response = client.post(
        "/v2/coupon/series",
        auth=(username, "a-long-chosen-secret"),
        json={
            "description": "cli series",
            "clientHandlingType": "DISC_CODE",
            "validTill": "2099-01-01",
            "discountType": "ABS",
            "discountValue": 1,
        },
    )

    # then it is allowed
    assert response.status_code == 200, response.text


def test_creating_a_taken_username_fails_without_a_traceback(backend: Backend) -> None:
    # given a client (usernames are unique across orgs)
    code, output = run(
        "client", "create", "--org", "globex", "--username", "acme-admin", "--db", backend.url
    )

    assert code != 0
    assert "already exists" in output
    assert "Traceback" not in output


def test_a_client_cannot_be_named_like_a_console_persons_email(backend: Backend) -> None:
    # given a console person, whose email is the actor of what they do
    email = f"{unique('lee')}@example.com"
    create_person(backend.url, email)

    # when a client is made with that email, or any email, as its username
    for username in (email, "bot@example.org", "ann\uff20acme.example", "ann\ufe6bx"):
        code, output = run(
            "client", "create", "--org", "acme", "--username", username, "--db", backend.url
        )
        # then it is refused, so the trail never shows a client's doing as the person's
        assert code != 0
        assert "must not contain '@'" in output
    assert email not in run("client", "list", "--db", backend.url)[1]


@pytest.mark.parametrize(
    ("org", "groups", "message"),
    [
        ("no-such-org", "default", "no org"),
        ("acme", "superuser", "unknown access group"),
        # groups add up: read_only beside coupon_admin would be an admin called read-only
        ("acme", "read_only,coupon_admin", "read_only cannot be combined"),
    ],
)
def test_client_create_with_a_bad_org_or_group_fails_plainly(
    backend: Backend, org: str, groups: str, message: str
) -> None:
    code, output = run(
        "client",
        "create",
        "--org",
        org,
        "--username",
        unique("u"),
        "--groups",
        groups,
        "--db",
        backend.url,
    )

    assert code != 0
    assert message in output
    assert "Traceback" not in output


def test_client_disable_stops_its_basic_credentials_and_tokens_within_two_seconds(
    backend: Backend, client: TestClient
) -> None:
    # given a new client that has used Basic and holds a token
    org = unique("initech")
    username = unique("initech-bot")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    created = run("client", "create", "--org", org, "--username", username, "--db", backend.url)
    secret = created[1].strip()
    assert client.get("/v2/customers/lookup?id=1", auth=(username, secret)).status_code == 404
    token = client.post(
        "/v3/oauth/token/generate", json={"key": username, "secret": secret}
    ).json()["data"]["accessToken"]

    # when it is disabled
    code, output = run("client", "disable", username, "--db", backend.url)
    assert code == 0, output

    # then, within two seconds (the service trusts a client row it read for a second),
    # neither its secret nor its token works any more
    deadline = time.monotonic() + 2.0
    while True:
        basic = client.get("/v2/customers/lookup?id=1", auth=(username, secret))
        bearer = client.get(
            "/v2/customers/lookup?id=1", headers={"Authorization": f"Bearer {token}"}
        )
        fresh = client.post("/v3/oauth/token/generate", json={"key": username, "secret": secret})
        responses = (basic, bearer, fresh)
        if all(r.status_code == 401 for r in responses) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for response in responses:
        assert response.status_code == 401
        assert error_code(response) == 9010


def test_tokens_from_before_a_disable_stay_dead_after_the_client_is_enabled_again(
    backend: Backend, client: TestClient
) -> None:
    # given a client holding a token, then disabled (a leak, say) and enabled again
    username, secret = new_client(backend)

    def new_token() -> str:
        answer = client.post("/v3/oauth/token/generate", json={"key": username, "secret": secret})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["data"]["accessToken"])

    def lookup(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return int(client.get("/v2/customers/lookup?id=1", headers=headers).status_code)

    old = new_token()
    assert lookup(old) == 404
    time.sleep(
        1.1
    )  # tokens carry whole seconds: one issued in the disable's second counts as before
    assert run("client", "disable", username, "--db", backend.url)[0] == 0
    assert run("client", "enable", username, "--db", backend.url)[0] == 0
    time.sleep(1.1)  # the service trusts a client row it read for a second

    # then the old token stays refused (spec §2: tokens die with the disable), a new one works
    assert lookup(old) == 401
    assert lookup(new_token()) == 404


def test_disabling_an_unknown_client_fails_plainly(backend: Backend) -> None:
    code, output = run("client", "disable", unique("ghost"), "--db", backend.url)

    assert code != 0
    assert "no client" in output
    assert "Traceback" not in output


def test_org_list_shows_each_org_with_its_id(backend: Backend) -> None:
    # given a new org
    name = unique("initech")
    org_id = run("org", "create", name, "--db", backend.url)[1].strip()

    # when orgs are listed, then each is on its own line with its id
    code, output = run("org", "list", "--db", backend.url)
    assert code == 0, output
    rows = [line.split() for line in output.splitlines()]
    assert rows[0][:2] == ["id", "name"]
    assert [org_id, name] in [row[:2] for row in rows] and ["acme"] in [r[1:2] for r in rows]


def test_client_list_shows_clients_and_their_groups_but_no_secret(backend: Backend) -> None:
    # given a client created with a known secret, then disabled
    org, username = unique("initech"), unique("initech-bot")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    args = ("--org", org, "--username", username, "--password", "listed-secret-123")
    assert run("client", "create", *args, "--db", backend.url)[0] == 0
    assert run("client", "disable", username, "--db", backend.url)[0] == 0

    # when clients are listed
    code, output = run("client", "list", "--db", backend.url)

    # then it shows username, org, groups and whether it is active, and nothing secret
    assert code == 0, output
    rows = {line.split()[0]: line.split() for line in output.splitlines()[1:]}
    assert rows[username][1:] == [org, "default", "disabled"]
    assert rows["acme-admin"][1:] == ["acme", "coupon_admin,default", "active"]
    assert "listed-secret-123" not in output and "argon2" not in output
    assert secret_hash(backend, username) not in output


def test_console_people_are_not_listed_or_counted_as_api_clients(backend: Backend) -> None:
    # given an org with one API client and one console person (who has a client of its own,
    # for the records that name one)
    org = unique("people")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    bot = unique("people-bot")
    assert run("client", "create", "--org", org, "--username", bot, "--db", backend.url)[0] == 0
    person = f"{unique('ann')}@example.com"
    args = ("--org", org, "--email", person, "--role", "admin", "--db", backend.url)
    assert run("user", "create", *args)[0] == 0

    # when clients and orgs are listed
    clients = run("client", "list", "--db", backend.url)[1]
    orgs = run("org", "list", "--db", backend.url)[1]

    # then only the API client shows, and the org counts one client
    assert bot in clients and person not in clients
    [row] = [line.split() for line in orgs.splitlines() if org in line.split()]
    assert row[-1] == "1"


def test_client_reset_secret_prints_a_new_secret_once_and_the_old_one_stops_working(
    backend: Backend, client: TestClient
) -> None:
    # given a client that has authenticated with its secret (so the check is cached)
    username, old_secret = new_client(backend)
    lookup = "/v2/customers/lookup?id=1"
    assert client.get(lookup, auth=(username, old_secret)).status_code == 404
    token = client.post(
        "/v3/oauth/token/generate", json={"key": username, "secret": old_secret}
    ).json()["data"]["accessToken"]

    # when its secret is reset
    code, output = run("client", "reset-secret", username, "--db", backend.url)

    # then a new secret is printed once, it works, and within two seconds (the service
    # trusts a client row it read for a second) the old secret and its token do not
    assert code == 0, output
    new_secret = output.strip()
    assert len(new_secret) >= 20 and new_secret != old_secret and output.count(new_secret) == 1
    # (a refused login counts towards the throttle, 10 a minute: so each poll stops at the
    # answer it waits for, and asks four times a second)
    deadline = time.monotonic() + 2.0

    def polled(call: Callable[[], httpx.Response], status: int) -> httpx.Response:
        answer = call()
        while answer.status_code != status and time.monotonic() < deadline:
            time.sleep(0.25)
            answer = call()
        return answer

    fresh = polled(lambda: client.get(lookup, auth=(username, new_secret)), 404)
    old_basic = polled(lambda: client.get(lookup, auth=(username, old_secret)), 401)
    bearer = {"Authorization": f"Bearer {token}"}
    old_token = polled(lambda: client.get(lookup, headers=bearer), 401)
    assert fresh.status_code == 404
    for response in (old_basic, old_token):
        assert (response.status_code, error_code(response)) == (401, 9010)


def test_resetting_an_unknown_clients_secret_fails_plainly(backend: Backend) -> None:
    code, output = run("client", "reset-secret", unique("ghost"), "--db", backend.url)

    assert code != 0
    assert "no client" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "command", [("client", "list"), ("org", "list"), ("worker",), ("webhook", "retry", "1")]
)
def test_a_database_error_never_prints_the_urls_password(
    command: tuple[str, ...], postgres_admin_url: str | None
) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    # given a URL with a password, naming a user and database the server does not have
    server = make_url(postgres_admin_url)
    where = f"{server.host}:{server.port or 5432}/no_such_db_{uuid.uuid4().hex[:6]}"
    url = f"postgresql://no_such_user:topsecret-pw@{where}"

    code, output = run(*command, "--db", url)

    # then the error names the database with its password masked
    assert code != 0
    assert "topsecret-pw" not in output
    assert f"postgresql://no_such_user:***@{where}" in output


@pytest.mark.parametrize(
    "command",
    [("org", "list"), ("db", "upgrade"), ("serve", "--port", "1", "--wait-for-database", "0")],
)
@pytest.mark.parametrize("option", ["", "?stall_timeout=x"])
def test_a_password_holding_an_unencoded_at_sign_is_never_printed(
    command: tuple[str, ...], option: str
) -> None:
    # given a password with an `@` not written %40: the part after it was read as the host
    url = f"postgresql://probe:Sup3r@S3cretPw@127.0.0.1:{free_port()}/coupons{option}"

    code, output = run(*command, "--db", url)

    # then the command says how to write it, and no part of the password is shown (the
    # masking stopped at the first `@`, and "failed to resolve host 'S3cretPw@127.0.0.1'")
    assert code == 1
    assert "S3cretPw" not in output and "Sup3r" not in output, output
    assert "%40" in output, output


@pytest.mark.parametrize("option", ["", "?stall_timeout=x"])
def test_a_password_holding_a_slash_is_never_printed(option: str) -> None:
    # given a password with a `/` (as base64 secrets have), which SQLAlchemy reads as such
    url = f"postgresql://probe:Ab/Secret+x@127.0.0.1:{free_port()}/coupons{option}"

    code, output = run("org", "list", "--db", url)

    # then no part of it is shown (the masking stopped at the `/`, and showed it all)
    assert code == 1
    assert "Secret" not in output, output


@pytest.mark.parametrize("name", ["bad\nname", "tab\tbed", "x\x01y", "zero\u200bwidth"])
def test_org_and_client_names_with_line_breaks_or_control_characters_are_refused(
    backend: Backend, name: str
) -> None:
    # they would split a row of the lists, or hide part of the name
    org_code, org_output = run("org", "create", name, "--db", backend.url)
    client_code, client_output = run(
        "client", "create", "--org", "acme", "--username", name, "--db", backend.url
    )

    assert org_code != 0 and client_code != 0
    for output in (org_output, client_output):
        assert "must not contain line breaks or control characters" in output
    assert "zero" not in run("org", "list", "--db", backend.url)[1]


@pytest.mark.parametrize("password", ["", "p", "7-chars"])
def test_a_chosen_password_shorter_than_8_characters_is_refused_not_replaced(
    backend: Backend, password: str
) -> None:
    # `--password ''` used to get a generated secret without a word, and "p" was taken
    name = unique("short")
    client = run(
        "client", "create", "--org", "acme", "--username", name, "--password", password,
        "--db", backend.url,
    )  # fmt: skip
    person = run(
        "user", "create", "--org", "acme", "--email", f"{name}@example.com", "--role",
        "viewer", "--password", password, "--db", backend.url,
    )  # fmt: skip

    for code, output in (client, person):
        assert code != 0
        assert "must be at least 8 characters (leave it out to have one generated)" in output
    assert name not in run("client", "list", "--db", backend.url)[1]


def test_an_export_to_a_directory_or_a_missing_folder_is_refused_before_downloading(
    tmp_path: Path,
) -> None:
    # no server listens at this URL: the refusal must come before any request
    api = ["--url", "http://127.0.0.1:9", "--username", "u", "--password", "p"]
    for out, says in (
        (tmp_path, "is a directory; give the path of a file"),
        (tmp_path / "nowhere" / "x.csv", "does not exist"),
    ):
        code, output = run("export", "series", "1", "--out", str(out), *api)
        assert code == 1, output
        assert says in output and ".partial" not in output and "Errno" not in output
    assert list(tmp_path.iterdir()) == []


def test_an_error_longer_than_the_terminal_stays_one_line(tmp_path: Path) -> None:
    # a pipe or a narrow terminal must not split the command the error suggests
    url = f"sqlite:///{tmp_path / ('a-rather-long-database-name-' * 3)}.db"

    code, output = run("org", "list", "--db", url)

    assert code != 0
    [line] = [x for x in output.splitlines() if "coupons db upgrade" in x]
    assert f"run `coupons db upgrade --db {url}` first" in line


def test_worker_on_a_taken_metrics_port_says_so_in_one_line(backend: Backend) -> None:
    taken = socket.create_server(("0.0.0.0", 0))
    try:
        code, output = run(
            "worker", "--metrics-port", str(taken.getsockname()[1]), "--db", backend.url
        )
    finally:
        taken.close()

    assert code == 2
    assert "cannot serve metrics on port" in output and "Traceback" not in output


@pytest.mark.parametrize(
    "url", ["nonsense", "mysql://u@localhost/db", "sqlite:////no/such/dir/coupons.db"]
)
def test_a_bad_database_url_fails_plainly(url: str) -> None:
    code, output = run("db", "upgrade", "--db", url)

    assert code != 0
    assert "error" in output


@pytest.mark.parametrize(
    ("option", "value"), [("--port", "70000"), ("--port", "0"), ("--workers", "0")]
)
def test_serve_refuses_a_port_or_worker_count_out_of_range(option: str, value: str) -> None:
    # 70000 would have been bound as 4464 (modulo 65536) while the log named 70000
    code, output = run("serve", option, value, "--db", "sqlite:////no/such/dir/x.db")

    assert code == 2
    assert option in output and value in output


def test_serve_on_a_port_in_use_says_so_before_touching_the_database(tmp_path: Path) -> None:
    # given a port another program listens on
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        # when the demo server is asked to serve there
        database = tmp_path / "coupons.db"
        code, output = run("serve", "--demo", "--port", str(port), "--db", f"sqlite:///{database}")
    finally:
        taken.close()

    # then it fails at once naming the port and how to choose another, printing no credentials
    assert code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert "PORT=" in output and "secret" not in output.lower()
    # and it created no database
    assert not database.exists()


def test_serve_on_a_database_it_cannot_write_refuses_to_start_in_one_line(
    tmp_path: Path,
) -> None:
    # given a migrated SQLite database, opened read-only (file modes do not stop root)
    path = tmp_path / "coupons.db"
    assert run("db", "upgrade", "--db", f"sqlite:///{path}")[0] == 0
    url = f"sqlite:///file:{path}?mode=ro&uri=true"

    # when the server is started on it
    code, output = run("serve", "--port", str(free_port()), "--db", url)

    # then it refuses before serving, saying why
    assert code == 1
    assert output.strip() == (
        f"error: the database at {url} cannot be written: attempt to write a readonly database"
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("COUPONS_TOKEN_TTL_SECONDS", "abc", "must be a whole number, not 'abc'"),
        ("COUPONS_TOKEN_TTL_SECONDS", "0", "must be from 1 to 315,360,000, not 0"),
        ("COUPONS_DB_POOL_SIZE", "-5", "must be from 1 to 1,000, not -5"),
        ("COUPONS_TOKEN_TTL_SECONDS", "99999999999999999999", "must be from 1 to 315,360,000"),
        ("COUPONS_CONSOLE_SESSION_SECONDS", "99999999999999", "must be from 1 to 315,360,000"),
        ("COUPONS_CONSOLE_SESSION_SECONDS", "8h", "must be a whole number"),
        # a typo had served at INFO without a word
        ("COUPONS_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        # the metrics library failed at the first count, a traceback after start-up
        ("PROMETHEUS_MULTIPROC_DIR", "/no/such/dir", "must be a directory this user can write"),
    ],
)
def test_serve_refuses_a_bad_setting_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)

    code, output = run("serve", "--db", "sqlite:////no/such/dir/x.db")

    assert code != 0
    assert f"{name} {says}" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "command",
    [("org", "list"), ("client", "list"), ("org", "create", "acme"), ("worker",)],
)
def test_a_command_on_a_sqlite_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'coupons.db'}"

    code, output = run(*command, "--db", url)

    said = output.replace("\n", "")  # the console wraps long lines
    assert code == 1
    assert f"no database at {tmp_path / 'coupons.db'}" in said
    assert "coupons db upgrade" in said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [("org", "list"), ("client", "list"), ("user", "disable", "x@y.z")]
)
def test_a_database_that_does_not_answer_is_a_clean_error_for_any_command(
    command: tuple[str, ...],
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"

    code, output = run(*command, "--db", url)

    assert code == 1
    assert "error:" in output and "unreachable" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "command",
    [
        ("org", "create", "acme"),
        ("user", "create", "--org", "acme", "--email", "a@example.com", "--role", "viewer"),
        ("worker", "--wait-for-database", "0"),
        ("webhook", "retry", "5"),
    ],
)
@pytest.mark.parametrize(
    ("address", "cause"),
    [
        ("no-such-host.invalid:5432", "failed to resolve host 'no-such-host.invalid'"),
        ("127.0.0.1:{port}", "port {port} failed: Connection refused"),
    ],
)
def test_an_unreachable_database_is_named_with_the_drivers_reason_in_one_line(
    command: tuple[str, ...], address: str, cause: str
) -> None:
    # given a database URL with a mistyped host or a closed port, and a password
    port = free_port()
    url = f"postgresql://bob:hunter2@{address.format(port=port)}/coupons"

    # when an admin command, the worker or a webhook retry is run on it
    code, output = run(*command, "--db", url)

    # then one line says why it cannot reach it, that nothing was written, and no password
    assert code == 1
    assert output.startswith("error: the database is unreachable or failing over (")
    assert cause.format(port=port) in output
    assert output.rstrip().endswith("; nothing was written; retry later (error 9023)")
    assert len(output.strip().splitlines()) == 1
    assert "hunter2" not in output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("org", "create", "X"), "run `coupons db upgrade --db sqlite:///"),
        (("client", "list"), "run `coupons db upgrade --db sqlite:///"),
    ],
)
def test_a_command_on_a_database_without_the_schema_says_to_upgrade_it(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    (tmp_path / "fresh.db").touch()  # a SQLite database with nothing in it
    code, output = run(*args, "--db", f"sqlite:///{tmp_path / 'fresh.db'}")

    assert code == 1
    assert says in " ".join(output.split()) and "Traceback" not in output


def test_a_command_on_a_database_file_that_cannot_be_opened_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    # a directory where the database file should be
    code, output = run("org", "create", "X", "--db", f"sqlite:///{tmp_path}")

    assert code == 1
    assert "is a folder" in output and "Traceback" not in output


def test_db_upgrade_of_a_file_that_is_no_database_says_so_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, " * 400)

    code, output = run("db", "upgrade", "--db", f"sqlite:///{garbage}")

    assert code == 1
    assert output.strip() == "error: migration failed: file is not a database"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("COUPONS_LOG_LEVEL", "LOUD", "must be one of DEBUG"),
        ("PROMETHEUS_MULTIPROC_DIR", "/no/such/dir", "must be a directory this user can write"),
    ],
)
def test_a_worker_refuses_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)

    code, output = run("worker", "--db", f"sqlite:///{tmp_path / 'w.db'}")

    assert code == 1
    assert f"{name} {says}" in " ".join(output.split()) and "Traceback" not in output


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # it holds the token signing key: anyone who reads it can sign a token for any client
    path = tmp_path / "private.db"
    old = os.umask(0o022)  # the usual umask, under which SQLite makes files world-readable
    try:
        code, _ = run("db", "upgrade", "--db", f"sqlite:///{path}")
    finally:
        os.umask(old)

    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_sqlite_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)

    code, _ = run("db", "upgrade", "--db", f"sqlite:///{path}")

    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_worker_on_a_database_without_the_schema_stops_at_once_saying_so(
    tmp_path: Path,
) -> None:
    (tmp_path / "fresh.db").touch()  # a SQLite database with nothing in it
    code, output = run("worker", "--db", f"sqlite:///{tmp_path / 'fresh.db'}")

    assert code == 1
    assert "run `coupons db upgrade --db sqlite:///" in " ".join(output.split())


@pytest.mark.parametrize(
    "args",
    [
        ("worker", "--concurrency", "0"),
        ("worker", "--metrics-port", "99999"),
        ("worker", "--poll-interval", "0"),
        ("worker", "--lease-seconds", "5", "--timeout", "10"),
        ("webhook", "retry", "99999999999999999999"),
        ("webhook", "retry", "0"),
    ],
)
def test_worker_and_webhook_values_out_of_range_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    code, output = run(*args, "--db", f"sqlite:///{tmp_path / 'x.db'}")

    assert code == 2
    assert "Invalid value" in output and "Traceback" not in output


def test_names_longer_than_their_column_are_refused_alike_on_both_stores(
    backend: Backend,
) -> None:
    long_org = run("org", "create", "o" * 201, "--db", backend.url)
    org = unique("org")
    assert run("org", "create", org, "--db", backend.url)[0] == 0
    long_user = run("client", "create", "--org", org, "--username", "u" * 201, "--db", backend.url)

    for code, output in (long_org, long_user):
        assert code == 1 and "1 to 200 characters" in output


def test_names_given_with_spaces_are_found_as_they_were_stored_trimmed(backend: Backend) -> None:
    org, user = unique("org"), unique("user")
    assert run("org", "create", f" {org} ", "--db", backend.url)[0] == 0
    created = run(
        "client", "create", "--org", f" {org} ", "--username", f" {user} ", "--db", backend.url
    )
    reset = run("client", "reset-secret", f" {user} ", "--db", backend.url)
    disabled = run("client", "disable", f" {user} ", "--db", backend.url)

    assert created[0] == reset[0] == disabled[0] == 0, (created, reset, disabled)


def test_a_postgresql_database_that_does_not_exist_is_named_not_called_an_outage(
    backend: Backend,
) -> None:
    if not backend.url.startswith("postgresql"):
        pytest.skip("SQLite creates its file; only a server can lack a database")
    missing = make_url(backend.url).set(database=unique("no_such_db").replace("-", "_"))

    code, output = run("org", "list", "--db", missing.render_as_string(hide_password=False))

    assert code == 1
    assert "does not exist" in " ".join(output.split()) and "9023" not in output


def test_a_token_issued_while_a_disable_was_reaching_the_workers_dies_with_the_enable(
    backend: Backend, client: TestClient
) -> None:
    # A worker trusts a client row it read for about a second, so it may issue a token just
    # after a disable. Such a token must not come back to life when the client is enabled.
    username, secret = new_client(backend)

    def row() -> Any:
        with backend.db.engine.connect() as conn:
            return conn.execute(select(api_clients).where(api_clients.c.username == username)).one()

    assert run("client", "disable", username, "--db", backend.url)[0] == 0
    disabled_at = row().tokens_after.timestamp()
    assert run("client", "enable", username, "--db", backend.url)[0] == 0
    enabled = row()
    assert enabled.tokens_after.timestamp() > disabled_at
    key = client.app.state.authenticator.signing_key()  # type: ignore[attr-defined]
    # issued between the two, from a stale memory of the row
    issued = (disabled_at + enabled.tokens_after.timestamp()) / 2
    claims = {
        "sub": str(enabled.id), "org": enabled.org_id, "iat": issued, "exp": int(issued) + 3600,
        "sv": secret_version(enabled.secret_hash),
    }  # fmt: skip
    late = jwt.encode(claims, key, algorithm="HS256")
    time.sleep(1.1)  # the service trusts a client row it read for a second

    def lookup(bearer: str) -> int:
        headers = {"Authorization": f"Bearer {bearer}"}
        return int(client.get("/v2/customers/lookup?id=1", headers=headers).status_code)

    assert lookup(late) == 401
    # and one issued now, just after the enable, works
    fresh = client.post("/v3/oauth/token/generate", json={"key": username, "secret": secret})
    assert lookup(str(fresh.json()["data"]["accessToken"])) == 404


@pytest.mark.parametrize(
    "command", [["client", "reset-secret"], ["client", "enable"], ["client", "disable"]]
)
def test_a_console_persons_own_client_is_not_an_api_clients_to_manage(
    backend: Backend, client: TestClient, command: list[str]
) -> None:
    # Its secret is random and never shown; reset, it signed in to the API with the
    # person's rights, and enabled, it outlived the person's disable
    email = f"{unique('own')}@example.com"
    create_person(backend.url, email)

    code, output = run(*command, f"console:{email}", "--db", backend.url)

    assert code != 0
    assert "console person's own client" in output and "coupons user" in output
    # and even with a secret someone knew, it does not sign in
    with backend.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE api_clients SET secret_hash = :h WHERE username = :u"),
            {"h": hash_secret("known-secret"), "u": f"console:{email}"},
        )
    answer = client.post(
        "/v3/oauth/token/generate", json={"key": f"console:{email}", "secret": "known-secret"}
    )
    assert (answer.status_code, error_code(answer)) == (401, 9010)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/no_such_database_here?password=hunter2",
        "postgresql://postgres@127.0.0.1:5432/no_such_database_here?sslmode=prefer&PASSWORD=hunter2",
        "postgresql://postgres:hunter2@127.0.0.1:5432/no_such_database_here",
    ],
)
def test_a_database_password_is_never_printed_wherever_the_url_holds_it(url: str) -> None:
    # the message names the database it could not open, by its URL
    code, output = run("org", "list", "--db", url)

    assert code != 0
    assert "no_such_database_here" in output
    assert "hunter2" not in output and "***" in output


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mdb?mode=memory&uri=true"]
)
def test_an_in_memory_sqlite_database_is_refused_not_migrated_and_lost(url: str) -> None:
    for command in (("db", "upgrade"), ("org", "list"), ("worker",)):
        code, output = run(*command, "--db", url)

        assert code == 1
        assert "in-memory SQLite database" in output and "sqlite:///coupons.db" in output


def test_db_upgrade_into_a_folder_that_does_not_exist_names_the_folder(tmp_path: Path) -> None:
    # given a path whose folder is missing (the advice "run db upgrade" was followed, and
    # SQLite answered only "unable to open database file")
    url = f"sqlite:///{tmp_path / 'nowhere' / 'coupons.db'}"

    for command in (("db", "upgrade"), ("serve", "--port", "1")):
        code, output = run(*command, "--db", url)

        assert code == 1
        assert f"the folder {tmp_path / 'nowhere'} does not exist" in output
    assert not (tmp_path / "nowhere").exists()


def test_a_command_on_a_path_in_a_missing_folder_names_the_folder_not_advice_that_fails(
    tmp_path: Path,
) -> None:
    # given a path whose folder is missing, given to commands that need a database there
    url = f"sqlite:///{tmp_path / 'nowhere' / 'coupons.db'}"

    for command in (("org", "list"), ("client", "list"), ("worker",)):
        code, output = run(*command, "--db", url)

        # then they name the folder (they advised `db upgrade` there, which fails on it)
        assert code == 1, output
        assert f"the folder {tmp_path / 'nowhere'} does not exist" in output, output
        assert "db upgrade" not in output


def test_a_database_url_naming_a_folder_says_so_and_suggests_a_file_in_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}"

    for command in (("db", "upgrade"), ("serve", "--port", "1"), ("org", "list")):
        code, output = run(*command, "--db", url)

        # (SQLite said only "unable to open database file")
        assert code == 1
        assert f"{tmp_path} is a folder" in " ".join(output.split()), output
        assert f"sqlite:///{tmp_path}/coupons.db" in output.replace("\n", ""), output


def test_the_advice_to_upgrade_an_old_schema_names_the_database_it_was_given(
    tmp_path: Path,
) -> None:
    # given a database file without this version's schema, named with --db
    (tmp_path / "old.db").write_bytes(b"")
    url = f"sqlite:///{tmp_path / 'old.db'}"

    code, output = run("org", "list", "--db", url)

    # then the advice names it: run as printed, `coupons db upgrade` upgraded ./coupons.db
    assert code == 1
    assert f"run `coupons db upgrade --db {url}` first" in output.replace("\n", ""), output
    assert run("db", "upgrade", "--db", url)[0] == 0
    assert run("org", "list", "--db", url)[0] == 0


def test_the_advice_to_upgrade_quotes_a_path_with_a_space_as_a_shell_reads_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "my dir").mkdir()
    (tmp_path / "my dir" / "old.db").write_bytes(b"")
    url = f"sqlite:///{tmp_path / 'my dir' / 'old.db'}"

    code, output = run("org", "list", "--db", url)

    assert code == 1
    assert f"run `coupons db upgrade --db '{url}'` first" in output.replace("\n", ""), output


def test_a_worker_started_while_its_database_is_away_waits_for_it_then_runs(
    backend: Backend, tmp_path: Path
) -> None:
    # given a database reached through an address where nothing listens yet (a failover in
    # progress when the host starts)
    if backend.name != "postgresql":
        pytest.skip("SQLite's file is always there")
    import queue
    import socket
    import subprocess
    import sys
    import threading
    import time

    target = make_url(backend.url)
    port = free_port()
    stop = threading.Event()
    opened: list[socket.socket] = []

    def relay(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the other side went, or the test ended
            while chunk := a.recv(65536):
                b.sendall(chunk)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def listen() -> None:
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(
                    (target.host or "127.0.0.1", target.port or 5432)
                )
                opened.extend((client, upstream))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=relay, args=(a, b), daemon=True).start()

    url = backend.url.replace(f":{target.port or 5432}/", f":{port}/", 1)
    assert f":{port}/" in url
    lines: queue.Queue[str] = queue.Queue()

    # when a worker starts on it, and the database answers once the worker said it waits
    process = subprocess.Popen(
        [sys.executable, "-m", "coupons.entrypoints.cli", "worker", "--db", url,
         "--wait-for-database", "60", "--no-jobs"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = process.stderr
    assert stderr is not None

    def read_lines() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        waiting = lines.get(timeout=60)
        threading.Thread(target=listen, daemon=True).start()
        going_on = lines.get(timeout=60)
        time.sleep(1)
        running = process.poll() is None
    finally:
        process.terminate()
        process.wait(30)
        stop.set()
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # then it said it waits, went on once the database answered, and is running
    assert "does not answer" in waiting and "waiting up to 60 s" in waiting, waiting
    assert "the database answers; going on" in going_on, going_on
    assert running


def test_the_start_up_wait_takes_postgres_urls_and_refuses_a_wait_that_is_no_number() -> None:
    # postgres:// is PostgreSQL too; NaN passed the range check and then never ended
    url = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"

    waited = run("worker", "--db", url, "--wait-for-database", "0.5")
    refused = run("worker", "--db", url, "--wait-for-database", "nan")

    assert waited[0] == 1 and "waiting up to 0.5 s" in waited[1]
    assert refused[0] == 2 and "must be a number of seconds" in refused[1]


def test_a_command_that_lost_its_commit_says_to_check_not_to_retry_with_a_key() -> None:
    from coupons.domain.errors import CommitOutcomeUnknown
    from coupons.entrypoints.cli import _unavailable

    said = _unavailable(CommitOutcomeUnknown(2))

    assert "may or may not have been made" in said and "check before running" in said
    assert "Idempotency-Key" not in said


@pytest.mark.parametrize(
    "url", [":memory:", "coupons.db", "", "postgresql://postgres@127.0.0.1:notaport/x"]
)
def test_a_database_url_that_is_no_url_says_what_one_looks_like(url: str) -> None:
    for command in (("db", "upgrade"), ("org", "list"), ("worker",), ("serve", "--port", "1")):
        code, output = run(*command, "--db", url)

        assert code == 1
        said = " ".join(output.split())
        assert "is not a database URL" in said and "sqlite:///PATH" in said, said


@pytest.mark.parametrize("org", ["[/x]", "[bold]acme"])
def test_an_error_naming_text_the_terminal_would_style_prints_it_as_typed(
    backend: Backend, org: str
) -> None:
    # `[/x]` was read as markup (a traceback), `[bold]` vanished from the message
    code, output = run("client", "create", "--org", org, "--username", "u1", "--db", backend.url)

    assert code == 1
    assert f"no org named {org!r}" in output and "Traceback" not in output


def test_an_argument_whose_bytes_are_not_utf8_is_refused_in_a_line(backend: Backend) -> None:
    # (Python hands such bytes over as lone surrogates: the insert raised, a traceback)
    code, output = run("org", "create", "acme\udcff", "--db", backend.url)

    assert code == 2
    assert "must be UTF-8 text" in output and "Traceback" not in output


def test_a_worker_whose_delivery_loop_fails_stops_its_job_thread_and_exits(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the job thread was joined without being told to stop: the process stayed up for good
    import signal
    import threading

    from coupons.entrypoints.worker import Worker

    def fails(self: Worker) -> None:
        raise RuntimeError("the delivery loop failed")

    monkeypatch.setattr(Worker, "run", fails)
    before = signal.getsignal(signal.SIGTERM)
    # A stuck join is ended by SIGTERM after 20 s (the command's own handler), so the test
    # fails on the time taken instead of hanging.
    rescue = threading.Timer(20, os.kill, (os.getpid(), signal.SIGTERM))
    rescue.start()
    started = time.monotonic()
    try:
        result = runner.invoke(cli, ["worker", "--db", backend.url])
    finally:
        rescue.cancel()
        signal.signal(signal.SIGTERM, before)

    assert isinstance(result.exception, RuntimeError)
    assert time.monotonic() - started < 10


# Raises Ctrl-C's KeyboardInterrupt while the command line is being imported, as a Ctrl-C in
# the command's first tenth of a second does: deterministic, where a real signal is a race.
_INTERRUPTED_IMPORT = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "coupons.entrypoints.cli":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["coupons", *sys.argv[1:]]
from coupons.entrypoints.launch import main
main()
"""


@pytest.mark.parametrize(("args", "status"), [(("org", "list"), 130), (("revoke",), 2)])
def test_a_ctrl_c_before_the_command_line_is_loaded_is_one_line_not_a_traceback(
    args: tuple[str, ...], status: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == status, done.stderr
    assert done.stderr == "interrupted before it started: nothing was done\n", done.stderr


def test_the_installed_command_starts_through_the_guarded_entry_point() -> None:
    from importlib.metadata import entry_points

    (command,) = entry_points(group="console_scripts", name="coupons")

    assert command.value == "coupons.entrypoints.launch:main"
