"""PostgreSQL array literals, built in one pass for statements that send arrays.

psycopg adapts a Python list element by element (a type lookup and an escaping regex per
item): for a 50-code revoke, its ten arrays (the lookup, the guarded UPDATE, the history
insert's columns) cost more CPU than the rest of the request's SQL. These functions write the
array's text form directly; the statement casts the parameter (`CAST(:p AS bigint[])`), and
PostgreSQL parses it as it parses any array input. Every text element is double-quoted, with
backslash and double quote escaped, which the array input syntax reads back exactly for any
string; `None` is the unquoted NULL.
"""

from __future__ import annotations

from collections.abc import Iterable


def int_array(values: Iterable[int | None]) -> str:
    """`{1,2,NULL}`."""
    return "{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}"


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


def text_array(values: Iterable[str | None]) -> str:
    """`{"a","b",NULL}`: any strings (PostgreSQL text holds no NUL character)."""
    return "{" + ",".join(["NULL" if v is None else _quoted(v) for v in values]) + "}"
