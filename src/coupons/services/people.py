"""People who sign in to the console (spec §9): accounts, sign-in and sessions.

Passwords are argon2 hashes made exactly as API secrets are (`auth.hash_secret`). Failed
sign-ins go through the API's `FailureThrottle` (per email and per address), so a person's
password is guessed no faster than an API client's secret. A session is a random token in an
HttpOnly cookie; only its SHA-256 is stored, with an expiry, so several processes share
sessions through the database, sign-out and disabling a person end them at once, and a copy
of the table signs nobody in.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from coupons.domain import errors
from coupons.domain.model import normalize_email
from coupons.domain.people import ConsoleSession, Person, Role, email_problem
from coupons.services.auth import (
    PERSON_CLIENT_PREFIX,
    FailureThrottle,
    chosen_or_new_secret,
    hash_secret,
    new_secret,
)
from coupons.services.common import Actor
from coupons.services.ports import Transactions, UnitOfWork

# The demo person `coupons serve --demo` creates. Its password is fixed and documented so
# that it survives restarts; it exists only in a database seeded with demo data.
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-console"
DEMO_ORG = "demo"
# A person's email is the `actor` of the history they cause (200 characters) and, behind
# "console:", the username of their API client (200 too): at 320, the longest addresses
# were taken on SQLite and refused by PostgreSQL.
MAX_EMAIL = 200 - len(PERSON_CLIENT_PREFIX)

_verifier = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against for an unknown email, so timing does not reveal who has an account."""
    return hash_secret(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: `token` goes into the cookie and is never stored."""

    token: str
    person: Person
    expires_at: datetime


def actor_of(person: Person) -> Actor:
    """The person as the API's use cases see a caller: their email is the actor."""
    return Actor(
        org_id=person.org_id,
        client_id=person.client_id,
        username=person.email,
        groups=frozenset({person.role.group}),
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_person(
    uow: UnitOfWork, *, org: str, email: str, role: str, password: str | None, now: datetime
) -> str:
    """A new person of `org`; returns the password (generated unless given). Caller commits."""
    org_id = uow.clients.org_id_by_name(org)
    if org_id is None:
        raise errors.InvalidField("org", f"no org named {org!r}")
    address = normalize_email(email)
    problem = email_problem(address)
    if problem is None and len(address) > MAX_EMAIL:
        problem = f"it is longer than {MAX_EMAIL} characters"
    if problem is not None:
        raise errors.InvalidField("email", f"not an email address: {problem}")
    try:
        parsed = Role.parse(role)
    except ValueError as error:
        raise errors.InvalidField("role", str(error)) from None
    if uow.users.by_email(address) is not None:
        raise errors.UsernameTaken(address, "a person with the email")
    secret = chosen_or_new_secret(password)
    client_id = uow.clients.add_client(
        org_id, PERSON_CLIENT_PREFIX + address, hash_secret(new_secret()), [parsed.group], now
    )
    uow.users.add(org_id, client_id, address, hash_secret(secret), parsed, now)
    return secret


def _person(uow: UnitOfWork, email: str) -> Person:
    found = uow.users.by_email(normalize_email(email))
    if found is None:
        raise errors.InvalidField("email", f"no person with email {email!r}")
    return found


def reset_password(uow: UnitOfWork, email: str, password: str | None) -> str:
    """A new password for a person (generated unless given), ending every session they
    have: after a leak, the one remedy had been a disable, for good. Caller commits."""
    found = _person(uow, email)
    secret = chosen_or_new_secret(password)
    uow.users.update(found.email, password_hash=hash_secret(secret))
    uow.users.delete_sessions_of(found.id)
    return secret


def enable_person(uow: UnitOfWork, email: str) -> None:
    """Let a disabled person sign in again (their old sessions stay ended). Caller commits."""
    found = _person(uow, email)
    uow.users.update(found.email, is_active=True)
    uow.clients.update_client(PERSON_CLIENT_PREFIX + found.email, is_active=True)


def disable_person(uow: UnitOfWork, email: str) -> None:
    """Disable a person and end every session they have. Caller commits."""
    found = _person(uow, email)
    uow.users.update(found.email, is_active=False)
    uow.clients.update_client(PERSON_CLIENT_PREFIX + found.email, is_active=False)
    uow.users.delete_sessions_of(found.id)


def ensure_demo_person(uow: UnitOfWork, now: datetime) -> tuple[str, str]:
    """The demo admin (created, or reset to the documented password); commits."""
    found = uow.users.by_email(DEMO_EMAIL)
    if found is not None and found.org_id != uow.clients.org_id_by_name(DEMO_ORG):
        # Reset to the published password (and made admin), another org's person would be
        # anyone's. (Imported here: the demo module builds on this one.)
        from coupons.services.demo import DemoTaken

        raise DemoTaken(f"the person {DEMO_EMAIL!r}")
    if found is None:
        create_person(
            uow, org=DEMO_ORG, email=DEMO_EMAIL, role="admin", password=DEMO_PASSWORD, now=now
        )
    elif not _verifies(found.password_hash, DEMO_PASSWORD) or not found.is_active:
        uow.users.update(
            DEMO_EMAIL, password_hash=hash_secret(DEMO_PASSWORD), is_active=True, role=Role.ADMIN
        )
        uow.clients.update_client(
            PERSON_CLIENT_PREFIX + DEMO_EMAIL, is_active=True, groups=[Role.ADMIN.group]
        )
    uow.commit()
    return DEMO_EMAIL, DEMO_PASSWORD


def _verifies(stored: str, password: str) -> bool:
    try:
        return _verifier.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def sign_in(
    db: Transactions,
    throttle: FailureThrottle,
    *,
    email: str,
    password: str,
    address: str,
    now: datetime,
    lifetime: timedelta,
) -> SignedIn:
    """A new session for an active person with this password; 9010 otherwise, 9021 when
    too many attempts failed. The message never says which of email or password was wrong.

    The password is checked between two short transactions, never inside one: argon2 takes
    a fifth of a second, and a sign-in page anyone can post to held the database's one write
    lock (SQLite) or a pooled connection (PostgreSQL) for all of it."""
    address_key = normalize_email(email)[:MAX_EMAIL]
    keys = (f"person:{address_key}", f"addr:{address}")
    # One sign-in of an email at a time in this process: outside the write transaction that
    # once serialized them, attempts sent at once would all pass the throttle's check.
    with throttle.one_at_a_time(keys[0]):
        throttle.check(*keys)
        found = (
            None
            if "\x00" in address_key
            else db.run(lambda uow: uow.users.by_email(address_key), write=False)
        )
        # Verify whatever the lookup found: an unknown email costs the same argon2 work.
        verified = _verifies(found.password_hash if found else _dummy_hash(), password)
        if found is None or not verified or not found.is_active:
            throttle.fail(*keys)
            raise errors.AuthenticationFailed()
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(
        token_hash=hash_token(token),
        user_id=found.id,
        created_at=now,
        expires_at=now + lifetime,
    )

    def start(uow: UnitOfWork) -> None:
        # Disabled, or its password changed, while the password was checked: no session.
        current = uow.users.by_email(address_key)
        if current is None or not current.is_active or current != found:
            raise errors.AuthenticationFailed()
        uow.users.delete_expired_sessions(now)
        uow.users.add_session(session)
        uow.commit()

    db.run(start)
    return SignedIn(token=token, person=found, expires_at=session.expires_at)


def session_person(uow: UnitOfWork, token: str, now: datetime) -> Person | None:
    """The active person an unexpired session token belongs to, or None."""
    found = uow.users.session(hash_token(token), now)
    if found is None or not found[1].is_active:
        return None
    return found[1]


def sign_out(uow: UnitOfWork, token: str) -> None:
    """End one session (the cookie's); commits."""
    uow.users.delete_session(hash_token(token))
    uow.commit()
