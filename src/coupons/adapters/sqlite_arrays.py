"""SQLite arrays: a list sent as one JSON text parameter and read back with `json_each`.

`column IN (?, ?, ...)` has one placeholder per value, so its text changes with the count:
SQLAlchemy renders it anew on every call and processes every value, and SQLite prepares a
new statement for each length. `column IN (SELECT value FROM json_each(?))` is one statement
for 1 or 500 values, prepared once (the driver's statement cache), with the list serialized in
one C call. PostgreSQL gets the same from array literals (`adapters.pg_arrays`).

The text is written by orjson (a quarter of the standard module's time for a revoke's 50
codes, ids or history changes, all of it while the revoke holds the write lock). A string
orjson refuses (a lone surrogate, which UTF-8 cannot carry) goes through the standard module
instead, as an ASCII escape that can match no stored value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def json_array(values: Iterable[Any]) -> str:
    """`[1,2,null]` or `["a","b"]`: ints, strings (enum members as their values) and None."""
    listed = values if isinstance(values, list | tuple) else list(values)
    try:
        return orjson.dumps(listed).decode()
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate
        return _ENCODE(list(listed))
