"""People who use the console (spec §9): roles, and what each role may do.

A person is not an API client, but a role maps onto one of the API's access groups, so every
permission check the console makes is the API's own (`services.auth.require`).
"""

from __future__ import annotations

import enum
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
