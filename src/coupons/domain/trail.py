"""The revocations trail (spec §7): one row per revoke call or job that revoked something,
which is what a person reads to answer "who revoked what, when and why"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoke call (or job) and how many of its coupons were reinstated since."""

    id: int
    request_id: str
    at: datetime
    actor: str
    reason: str | None
    revoked_count: int
    reinstated_count: int
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class TrailFilter:
    """Which rows to read: one actor's, and `since <= at < until` (either end open)."""

    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string starting with `prefix`, in code point order
    (None when there is none): `code >= prefix AND code < successor` is the prefix range."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1
            if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters
                following = 0xE000
            return "".join(chars) + chr(following)
    return None
