"""People who use the console (spec §9): roles, and what each role may do.

A person is not an API client, but a role maps onto one of the API's access groups, so every
permission check the console makes is the API's own (`services.auth.require`).
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from datetime import datetime


class Role(enum.Enum):
    VIEWER = "viewer"
    SUPPORT = "support"
    ADMIN = "admin"

    @property
    def group(self) -> str:
        """The API access group whose permissions this role has."""
        return _GROUPS[self]

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError("role must be viewer, support or admin") from None


_GROUPS = {Role.VIEWER: "read_only", Role.SUPPORT: "default", Role.ADMIN: "coupon_admin"}

# Never part of an address a person types at the sign-in field: markup and quoting marks (a
# quoted local part is valid mail syntax, but no one signs in with one). An apostrophe stays
# allowed: o'brien@example.com is an everyday address.
_REFUSED_MARKS = frozenset('<>"`')


def email_problem(address: str) -> str | None:
    """Why `address` cannot be a person's sign-in email, or None when it can. Anything a
    person can type is kept: non-ASCII local parts and internationalized domains are fine."""
    local, _, domain = address.partition("@")
    if address.count("@") != 1 or not local or not domain:
        return "it must hold exactly one '@', with text before and after it"
    if any(c.isspace() for c in address):
        return "it must not hold spaces or line breaks"
    if any(unicodedata.category(c).startswith("C") for c in address):
        return "it must not hold control or invisible formatting characters"
    if any(c in _REFUSED_MARKS for c in address):
        return 'it must not hold <, >, " or ` characters'
    return None


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    org_id: int
    client_id: int
    email: str
    role: Role
    password_hash: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser: the SHA-256 of its cookie value is the key that is stored."""

    token_hash: str
    user_id: int
    created_at: datetime
    expires_at: datetime
