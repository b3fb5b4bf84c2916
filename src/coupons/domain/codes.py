"""Coupon code handling: trimming, case-insensitive matching and output casing."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from enum import Enum
from typing import Any

from coupons.domain.errors import InvalidCodeCase

MAX_CODE_LENGTH = 100
# Codes one revoke or reinstate request may name (the vendor's limit); bigger files go through
# the bulk command, which batches by it.
MAX_CODES_PER_REQUEST = 50
# No 0/O or 1/I/L: generated codes are read aloud and typed at tills.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GENERATED_CODE_LENGTH = 12
PIN_LENGTH = 6
# No code is typed with control characters (a line break or a tab inside one is a paste gone
# wrong), and PostgreSQL cannot store NUL in text: C0, DEL and C1 (U+0085 is a line break
# too), and the Unicode line and paragraph separators.
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class CodeCase(Enum):
    """How codes are written in responses (the vendor's `couponCodeCase`)."""

    UPPER = "UPPER"
    LOWER = "LOWER"
    AS_IT_IS = "AS_IT_IS"

    @classmethod
    def parse(cls, value: str | None) -> CodeCase:
        """Parse the query value case-insensitively; absent means UPPER. Anything else is
        9007 (spec §5), a value with spaces around it too: ` LOWER` is not a spelling of it."""
        if value is None:
            return cls.UPPER
        # ASCII only: `str.upper` also maps a few other letters to these (the long s to S).
        if value.isascii() and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise InvalidCodeCase(value)

    def render(self, code: str) -> str:
        """Write a code in this case."""
        if self is CodeCase.UPPER:
            return code.upper()
        if self is CodeCase.LOWER:
            return code.lower()
        return code


def clean(code: str) -> str:
    """Strip the whitespace clients paste around codes."""
    return code.strip()


def has_control_character(code: str) -> bool:
    """Whether a (trimmed) code holds a character no code is typed with."""
    return CONTROL_CHARACTER.search(code) is not None


def trimmed_pin(value: Any) -> Any:
    """A PIN as stored: trimmed as a redeem trims the one it is given (Python's strip, which
    takes U+001C-1F too), with no control character inside; anything else as it came."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    if has_control_character(value):
        raise ValueError("must not contain control characters")
    return value


def normalize(code: str) -> str:
    """The matching key of a code: trimmed and case-folded."""
    return code.strip().casefold()


def distinct_codes(codes: Iterable[str]) -> list[str]:
    """Trimmed, non-blank codes, de-duplicated case-insensitively, first spelling kept."""
    seen: set[str] = set()
    result: list[str] = []
    for raw in codes:
        code = clean(raw)
        key = normalize(code)
        if code and key not in seen:
            seen.add(key)
            result.append(code)
    return result


def generate_code() -> str:
    """A random code with about 59 bits of entropy."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(GENERATED_CODE_LENGTH))


def generate_pin() -> str:
    """A random numeric PIN."""
    return "".join(secrets.choice("0123456789") for _ in range(PIN_LENGTH))
