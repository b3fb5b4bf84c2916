"""Spec §9: console people from the command line, and their sign-in rules, on both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import text

from coupons.domain import errors
from coupons.services import people
from coupons.services.auth import FailureThrottle
from coupons.services.common import utcnow
from tests.conftest import Backend
from tests.e2e.test_cli import create_person, run, unique

HOUR = timedelta(hours=1)


def sign_in(
    backend: Backend,
    email: str,
    password: str,
    throttle: FailureThrottle | None = None,
    lifetime: timedelta = HOUR,
) -> people.SignedIn:
    return people.sign_in(
        backend.db,
        throttle or FailureThrottle(10, 60),
        email=email,
        password=password,
        address="192.0.2.1",
        now=utcnow(),
        lifetime=lifetime,
    )


def person_of(backend: Backend, token: str, at_offset: timedelta = timedelta(0)) -> object:
    return backend.db.run(
        lambda uow: people.session_person(uow, token, utcnow() + at_offset), write=False
    )


def test_user_create_prints_a_generated_password_once_and_stores_only_its_argon2_hash(
    backend: Backend,
) -> None:
    # When a person is created without a password
    email = f"{unique('ada')}@Example.com"
    code, output = run(
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        email,
        "--role",
        "support",
        "--db",
        backend.url,
    )

    # Then the generated password is printed, and only its hash is stored
    assert code == 0, output
    password = output.strip()
    assert len(password) >= 24
    with backend.db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT email, password_hash, role FROM users WHERE email = :e"),
            {"e": email.lower()},
        ).one()
    assert row.role == "support"
    assert password not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, password)

    # And the person signs in with it, any case of the email, as the API's default group
    signed = sign_in(backend, email.upper(), password)
    assert people.actor_of(signed.person).groups == frozenset({"default"})
    assert people.actor_of(signed.person).username == email.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--email", "a@b.test", "--role", "viewer"], "no org named"),
        (["--org", "acme", "--email", "not-an-email", "--role", "viewer"], "not an email"),
        (["--org", "acme", "--email", '"><b>x</b>@acme.example', "--role", "viewer"], "<, >"),
        (["--org", "acme", "--email", "a@b@acme.example", "--role", "viewer"], "one '@'"),
        (["--org", "acme", "--email", "a\u200b@acme.example", "--role", "viewer"], "control"),
        (["--org", "acme", "--email", "a@b.test", "--role", "owner"], "viewer, support or admin"),
        # the longest address that fits the history's actor column is 192 characters
        (["--org", "acme", "--email", "a" * 181 + "@acme.example", "--role", "viewer"], "192"),
    ],
)
def test_user_create_refuses_bad_input_with_a_plain_message(
    backend: Backend, args: list[str], message: str
) -> None:
    code, output = run("user", "create", *args, "--db", backend.url)

    assert code != 0
    assert message in output
    assert "Traceback" not in output


def test_the_longest_address_a_person_may_have_is_stored_on_both_stores(
    backend: Backend,
) -> None:
    # (320 was taken on SQLite, and refused by PostgreSQL's 200-character columns)
    email = "a" * (192 - len("@acme.example")) + "@acme.example"

    create_person(backend.url, email)

    assert sign_in(backend, email, "pw-123456").person.email == email


def test_an_email_is_one_person_across_orgs(backend: Backend) -> None:
    email = f"{unique('dup')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "viewer",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )

    code, output = run(
        "user",
        "create",
        "--org",
        "globex",
        "--email",
        email.upper(),
        "--role",
        "admin",
        "--db",
        backend.url,
    )

    assert code != 0
    # a person's email, not an API client's username
    assert "a person with the email" in output and "already exists" in output
    assert "username" not in output


def test_disabling_a_person_ends_their_sessions_and_refuses_sign_in(backend: Backend) -> None:
    # Given a signed-in person
    email = f"{unique('grace')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "admin",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )
    signed = sign_in(backend, email, "pw-123456")
    assert person_of(backend, signed.token) is not None

    # When they are disabled
    code, output = run("user", "disable", email, "--db", backend.url)

    # Then the session is gone and the right password no longer signs in
    assert code == 0, output
    assert person_of(backend, signed.token) is None
    with pytest.raises(errors.AuthenticationFailed):
        sign_in(backend, email, "pw-123456")
    assert run("user", "disable", "nobody@example.com", "--db", backend.url)[0] != 0


def signed_in_person(backend: Backend, name: str) -> tuple[str, str]:
    """A new support person of acme (password pw-123456), signed in: (email, session token)."""
    email = f"{unique(name)}@example.com"
    args = ["--org", "acme", "--email", email, "--role", "support", "--password", "pw-123456"]
    code, output = run("user", "create", *args, "--db", backend.url)
    assert code == 0, output
    return email, sign_in(backend, email, "pw-123456").token


def test_a_new_password_ends_every_session_and_the_old_one_no_longer_signs_in(
    backend: Backend,
) -> None:
    # Given a signed-in person whose password leaked
    email, token = signed_in_person(backend, "hedy")

    # When an operator sets a new one, and then lets one be generated
    code, output = run(
        "user", "reset-password", email, "--password", "pw-654321", "--db", backend.url
    )

    # Then the session is gone, the old password is refused and the new one signs in
    assert (code, output.strip()) == (0, "pw-654321")
    assert person_of(backend, token) is None
    with pytest.raises(errors.AuthenticationFailed):
        sign_in(backend, email, "pw-123456")
    assert person_of(backend, sign_in(backend, email, "pw-654321").token) is not None
    code, output = run("user", "reset-password", email.upper(), "--db", backend.url)
    generated = output.strip()
    assert code == 0 and len(generated) >= 16
    assert person_of(backend, sign_in(backend, email, generated).token) is not None
    # and a short password or an unknown person is refused, changing nothing
    assert run("user", "reset-password", email, "--password", "short", "--db", backend.url)[0] != 0
    assert run("user", "reset-password", "nobody@example.com", "--db", backend.url)[0] != 0
    sign_in(backend, email, generated)


def test_a_disabled_person_enabled_again_signs_in_but_old_sessions_stay_ended(
    backend: Backend,
) -> None:
    email, token = signed_in_person(backend, "radia")
    assert run("user", "disable", email, "--db", backend.url)[0] == 0

    code, output = run("user", "enable", email, "--db", backend.url)

    assert code == 0, output
    assert person_of(backend, token) is None
    assert person_of(backend, sign_in(backend, email, "pw-123456").token) is not None
    assert run("user", "enable", "nobody@example.com", "--db", backend.url)[0] != 0


def test_a_session_expires_and_sign_out_ends_it(backend: Backend) -> None:
    email = f"{unique('linus')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "viewer",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )
    signed = sign_in(backend, email, "pw-123456", lifetime=HOUR)

    # A session works within its lifetime and not after it
    assert person_of(backend, signed.token, timedelta(minutes=59)) is not None
    assert person_of(backend, signed.token, timedelta(minutes=61)) is None
    assert person_of(backend, signed.token + "x") is None

    # Sign-out ends it at once; only the token's hash was ever stored
    with backend.db.engine.connect() as conn:
        stored = conn.scalar(
            text("SELECT count(*) FROM user_sessions WHERE token_hash = :t"), {"t": signed.token}
        )
    assert stored == 0
    backend.db.run(lambda uow: people.sign_out(uow, signed.token))
    assert person_of(backend, signed.token) is None


def test_failed_sign_ins_are_throttled_per_email_and_unknown_emails_fail_alike(
    backend: Backend,
) -> None:
    throttle = FailureThrottle(2, 60)
    for _ in range(2):
        with pytest.raises(errors.AuthenticationFailed):
            sign_in(backend, "nobody@example.com", "guess", throttle)
    with pytest.raises(errors.TooManyAuthFailures):
        sign_in(backend, "nobody@example.com", "guess", throttle)


def test_the_demo_person_keeps_its_documented_password_across_restarts(backend: Backend) -> None:
    with backend.db.engine.begin() as conn:
        if conn.scalar(text("SELECT count(*) FROM orgs WHERE name = 'demo'")) == 0:
            conn.execute(
                text("INSERT INTO orgs (name, created_at) VALUES ('demo', :t)"), {"t": utcnow()}
            )
        conn.execute(text("DELETE FROM user_sessions"))
        conn.execute(text("DELETE FROM users WHERE email = :e"), {"e": people.DEMO_EMAIL})

    first = backend.db.run(lambda uow: people.ensure_demo_person(uow, utcnow()))
    assert run("user", "disable", people.DEMO_EMAIL, "--db", backend.url)[0] == 0
    second = backend.db.run(lambda uow: people.ensure_demo_person(uow, utcnow()))

    assert first == second == (people.DEMO_EMAIL, people.DEMO_PASSWORD)
    signed = sign_in(backend, people.DEMO_EMAIL, people.DEMO_PASSWORD)
    assert signed.person.role.value == "admin"


def test_a_persons_own_api_client_can_never_sign_in_to_the_api(
    backend: Backend, client: TestClient
) -> None:
    # Given a person (and with them, their API client)
    email = f"{unique('eve')}@example.com"
    assert (
        run(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            email,
            "--role",
            "admin",
            "--password",
            "pw-123456",
            "--db",
            backend.url,
        )[0]
        == 0
    )

    # When anyone tries that client's name with the person's password, by token or Basic
    token = client.post(
        "/v3/oauth/token/generate", json={"key": f"console:{email}", "secret": "pw-123456"}
    )
    basic = client.get("/v2/coupon/series/1", auth=(f"console:{email}", "pw-123456"))

    # Then both are refused
    assert token.status_code == 401
    assert basic.status_code == 401
