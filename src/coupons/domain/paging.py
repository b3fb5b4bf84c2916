"""Cursor paging (spec §7): `limit` and an opaque `after` cursor holding a keyset key.

A page is read as "the next `limit` rows after this key" on an indexed order (never OFFSET),
so its cost does not grow with how far the walk has gone, and a row that existed when the
walk began is returned exactly once however many rows are inserted meanwhile.

The cursor is the key of the last row of a page, tagged with the list it belongs to, as JSON
in URL-safe base64 without padding. The tag names the list and, for lists with filters (a
series, a state, a search, an actor) and the org, a digest of those (`list_kind`): a key
means nothing in another series, another search or another org's list, and read there it
would silently skip rows. Clients must
treat the cursor as opaque; the server checks it strictly, so a cursor of another list, of the
same list with other filters, or of another org is 9002 naming `after`. It is a position, not
a signature: a key edited by hand reads on from the key it names, within its own list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from coupons.domain.errors import InvalidField

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 600
MAX_KEY_TEXT = 200
MAX_KEY_INT = 2**63 - 1

T = TypeVar("T")
KeyPart = int | str
Key = tuple[KeyPart, ...]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    """A page size within 1..1,000 (9002 naming `limit` otherwise)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidField("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def list_kind(name: str, org_id: int, *filters: object) -> str:
    """The cursor tag of list `name` of an org, read with `filters` (their text forms, in
    order). The org is part of it: one org's cursor, read in another's list, would skip rows
    of that list as another filter's would."""
    parts = [str(org_id), *(str(f) if f is not None else None for f in filters)]
    text = json.dumps(parts, ensure_ascii=False)
    return f"{name}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def encode_cursor(kind: str, key: Key) -> str:
    """The opaque cursor for a row's keyset key in the list `kind`."""
    raw = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(kind: str, cursor: str, shape: Sequence[type[KeyPart]]) -> Key:
    """The key a cursor of list `kind` holds, with parts of the types in `shape`."""
    bad = InvalidField("after", "not a cursor of this list (pass back nextCursor unchanged)")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(decoded, list) or len(decoded) != len(shape) + 1 or decoded[0] != kind:
        raise bad
    key = tuple(decoded[1:])
    for part, wanted in zip(key, shape, strict=True):
        if wanted is int:
            if type(part) is not int or not 0 <= part <= MAX_KEY_INT:
                raise bad
        elif type(part) is not str or len(part) > MAX_KEY_TEXT or not _storable(part):
            raise bad
    return key


def decode_id_cursor(kind: str, cursor: str | None) -> int | None:
    """The id a cursor of list `kind` keyed by id alone holds; None for the first page."""
    return None if cursor is None else int(decode_cursor(kind, cursor, (int,))[0])


def decode_moment_cursor(kind: str, cursor: str, tie: type[KeyPart]) -> tuple[datetime, KeyPart]:
    """The key of a list ordered by a moment and a tie-breaker: the moment in UTC (it was
    written with its offset), 9002 naming `after` when it is no moment."""
    at_text, tie_value = decode_cursor(kind, cursor, (str, tie))
    try:
        at = datetime.fromisoformat(str(at_text))
        if at.tzinfo is None:
            raise ValueError("no offset")
        return at.astimezone(UTC), tie_value  # a moment past the calendar's ends overflows
    except (ValueError, OverflowError):
        raise InvalidField("after", "not a cursor of this list") from None


def _storable(text: str) -> bool:
    """Text a database can hold and compare: no NUL, no lone surrogate (JSON's `\\ud800`
    decodes to one, and UTF-8 cannot encode it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def page_of(items: list[T], limit: int, kind: str, key_of: Callable[[T], Key]) -> Page[T]:
    """A page from up to `limit + 1` rows read: the extra row only says that more follow."""
    if len(items) <= limit:
        return Page(items, None)
    shown = items[:limit]
    return Page(shown, encode_cursor(kind, key_of(shown[-1])))
