"""Orgs and API clients, for the command line. The caller commits."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from coupons.domain import errors
from coupons.domain.records import ClientSummary, OrgSummary
from coupons.services.auth import (
    PERSON_CLIENT_PREFIX,
    chosen_or_new_secret,
    hash_secret,
    new_secret,
    parse_groups,
)
from coupons.services.common import utcnow
from coupons.services.ports import UnitOfWork

# The width of `orgs.name` and `api_clients.username`: checked here, so SQLite (which does
# not enforce a VARCHAR's length) and PostgreSQL (which refuses the row) answer alike.
MAX_NAME = 200


def _printable(field: str, value: str) -> None:
    """Names are shown in tables and logs: a line break or a control character in one would
    split a row or hide part of the name (`x\x01y` was listed as `xy`)."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise errors.InvalidField(field, "must not contain line breaks or control characters")


def create_org(uow: UnitOfWork, name: str) -> int:
    """A new org; 9016 when the name is taken."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise errors.InvalidField("name", f"must be 1 to {MAX_NAME} characters")
    _printable("name", name)
    if uow.clients.org_id_by_name(name) is not None:
        raise errors.OrgNameTaken(name)
    return uow.clients.add_org(name, utcnow())


def create_client(
    uow: UnitOfWork,
    *,
    org: str,
    username: str,
    password: str | None,
    groups: str | Iterable[str],
) -> str:
    """A new API client of `org`; returns its secret (generated unless given)."""
    org_id = uow.clients.org_id_by_name(org.strip())
    if org_id is None:
        raise errors.InvalidField("org", f"no org named {org.strip()!r}")
    username = username.strip()
    if not username or ":" in username or len(username) > MAX_NAME:
        raise errors.InvalidField(
            "username", f"must be 1 to {MAX_NAME} characters and contain no ':'"
        )
    _printable("username", username)
    if "@" in unicodedata.normalize("NFKC", username):  # also the fullwidth and small at signs
        # A console person's email is the actor of what they do (spec §9): a client named
        # like an email would read in the trail as a person's doing.
        raise errors.InvalidField(
            "username", "must not contain '@': email addresses name console people"
        )
    if uow.clients.client_by_username(username) is not None:
        raise errors.UsernameTaken(username)
    try:
        group_set = parse_groups(groups)
    except ValueError as error:
        raise errors.InvalidField("groups", str(error)) from None
    secret = chosen_or_new_secret(password)
    uow.clients.add_client(org_id, username, hash_secret(secret), group_set, utcnow())
    return secret


def set_client_active(uow: UnitOfWork, username: str, active: bool) -> None:
    """Enable or disable a client; a disabled client's tokens stop working at once, and an
    enable of a disabled client revives none issued before it (spec §2: they die)."""
    username = _api_client_name(username)
    found = uow.clients.client_by_username(username)
    if found is None:
        raise errors.InvalidField("username", f"no client named {username!r}")
    # On an enable too: a token issued while the disable was still reaching every worker's
    # memory (about a second) must stay dead like those before it.
    tokens_after = None if active and found.is_active else utcnow()
    uow.clients.update_client(username, is_active=active, tokens_after=tokens_after)


def _api_client_name(username: str) -> str:
    """The name as stored (trimmed, as `create_client` stores it), of an API client: a
    console person's own client is the person's, enabled and disabled with them."""
    username = username.strip()
    if username.startswith(PERSON_CLIENT_PREFIX):
        raise errors.InvalidField(
            "username",
            "names a console person's own client: use `coupons user enable`, `user disable` "
            "or `user reset-password` for people",
        )
    return username


def reset_client_secret(uow: UnitOfWork, username: str) -> str:
    """Give a client a new generated secret and return it; the old secret stops working, and
    so do tokens issued under it (they carry the secret's version)."""
    secret = new_secret()
    username = _api_client_name(username)
    if not uow.clients.update_client(username, secret_hash=hash_secret(secret)):
        raise errors.InvalidField("username", f"no client named {username!r}")
    return secret


def list_orgs(uow: UnitOfWork) -> list[OrgSummary]:
    """Every org, with how many API clients it has (console people's own clients are theirs,
    not the org's: `coupons user list` shows people)."""
    return uow.clients.orgs(hidden_prefix=PERSON_CLIENT_PREFIX)


def list_clients(uow: UnitOfWork) -> list[ClientSummary]:
    """Every API client with its org, groups and status; never a secret. Not the client each
    console person gets for the records that name one (`services.people`)."""
    return uow.clients.clients(hidden_prefix=PERSON_CLIENT_PREFIX)
