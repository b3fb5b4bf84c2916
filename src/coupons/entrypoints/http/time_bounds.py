"""The time bounds of the trail and the history range (`since`, `until`): what a query
value means, down to its last microsecond and past the calendar's ends (docs/finding.md)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from coupons.domain import errors


def moment(name: str, value: str | None, *, end_of_day: bool) -> datetime | None:
    """A `since` or `until` query value as a UTC time; None when not given or empty. A bare
    date is its day's start, or with `end_of_day` the next day's start (so `until` takes
    that whole day in)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    # Only the two documented spellings: Python also reads `20240131` and `2024W053` (as a
    # midnight, so `until` silently left out the day it names), `2024-01-31+01:00` (as
    # 01:00 UTC) and any character between a date and its time.
    bare_date = _DATE.fullmatch(text) is not None
    if not (bare_date or _TIME.fullmatch(text)):
        raise errors.InvalidField(name, _SPELLING)
    try:
        if bare_date:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        if _finer_than_microseconds(text):
            # Times are kept to the microsecond, and Python cuts finer digits off: a row at
            # .541817 would then pass `since=.5418171` and miss `until=.5418171`. The next
            # microsecond up is the same bound for every stored time.
            at += timedelta(microseconds=1)
        return at
    except OverflowError:
        # The first or last day of year 1 or 9999, moved past the calendar's end by the
        # whole day a date means, or by its UTC offset (`until=9999-12-31` is a common "no
        # end"). Every stored time is inside the calendar, so the calendar's own end stands
        # for the bound: open on that side, or (a `since` after the end, an `until` before
        # the start) a bound no row meets.
        return datetime.min.replace(tzinfo=UTC) if text.startswith("0001") else _END_OF_TIME
    except ValueError:
        raise errors.InvalidField(name, _SPELLING) from None


_SPELLING = "use YYYY-MM-DD, or a time as YYYY-MM-DDTHH:MM[:SS[.ffffff]] with Z or +HH:MM"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
_FRACTION = re.compile(r"[.,](\d+)")


def _finer_than_microseconds(text: str) -> bool:
    """Whether an ISO time's fraction of a second holds a nonzero digit past the sixth."""
    found = _FRACTION.search(text)
    return found is not None and found.group(1)[6:].strip("0") != ""
