"""SQLite arrays: a list sent as one JSON text parameter and read back with `json_each`.

`column IN (?, ?, ...)` has one placeholder per value, so its text changes with the count:
SQLAlchemy renders it anew on every call and processes every value, and SQLite prepares a
new statement for each length. `column IN (SELECT value FROM json_each(?))` is one statement
for 1 or 500 values, prepared once (the driver's statement cache), with the list serialized in
one C call. PostgreSQL gets the same from array literals (`adapters.pg_arrays`).

The text is plain ASCII JSON (`ensure_ascii`): a string the UTF-8 encoder would refuse (a lone
surrogate) still goes through, as an escape that can match no stored value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def json_array(values: Iterable[Any]) -> str:
    """`[1,2,null]` or `["a","b"]`: ints, strings and None only."""
    return _ENCODE(list(values))
