"""The revoke's statements on SQLite: compiled once by SQLAlchemy Core, sent by the driver.

SQLite runs inside the process and has one write lock per database file, held from
`BEGIN IMMEDIATE` to `COMMIT`; every microsecond of Python a writer spends between its
statements is taken from every other writer. SQLAlchemy's per-call execution (cache key,
parameter and result set-up, events) came to about a third of a codes50 revoke's time under
that lock (docs/benchmarks.md). So the statements a revoke sends are still built with Core from
the table definitions, compiled by SQLAlchemy's SQLite dialect and bound and read with its type
processing, but compiled once per statement, and each call hands the finished SQL and values
straight to the `sqlite3` cursor of the unit of work's own connection, inside its transaction.

Nothing is hidden: listeners of `before_cursor_execute` and `after_cursor_execute` see each
statement (tests count statements and read their plans that way), and a driver error is
raised as SQLAlchemy's (`OperationalError` for "database is locked", so retries behave the
same). On PostgreSQL, which locks rows and answers over a socket, a `DriverStatement` is sent
through `Connection.execute` as any other statement: there the time goes to waiting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement as the SQLite driver takes it."""

    sql: str
    names: tuple[str, ...]  # the bind parameters, in the order of the `?` marks
    fixed: Mapping[str, Any]  # values the statement itself carries (`values(state=...)`)
    binders: tuple[Processor, ...]  # per `?`: the type's bind processing, if any
    readers: tuple[Processor, ...] | None  # per result column, or None: rows come as they are


class DriverStatement:
    """A Core statement, sent to SQLite's driver directly (see the module's docstring)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row the statement returns, each a sequence of its columns' values."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).all()  # type: ignore[call-overload,no-any-return]
        compiled = self._compile(conn.dialect)
        rows = self._send(conn, compiled, params).fetchall()
        readers = compiled.readers
        if readers is None:
            return rows
        return [
            tuple(v if read is None else read(v) for read, v in zip(readers, row, strict=True))
            for row in rows
        ]

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """How many rows the statement changed."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)  # type: ignore[call-overload]
        return int(self._send(conn, self._compile(conn.dialect), params).rowcount)

    def _send(
        self, conn: Connection, compiled: _Compiled, params: Mapping[str, Any]
    ) -> sqlite3.Cursor:
        values = []
        for name, bind in zip(compiled.names, compiled.binders, strict=True):
            value = params[name] if name in params else compiled.fixed[name]
            values.append(value if bind is None else bind(value))
        return send(conn, compiled.sql, tuple(values))

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = compile_for_driver(self.statement, dialect)
        return compiled


def send(conn: Connection, sql: str, arguments: tuple[Any, ...]) -> sqlite3.Cursor:
    """Run SQL on a SQLite connection's driver cursor, seen by the engine's cursor listeners,
    its errors raised as SQLAlchemy's."""
    cursor: sqlite3.Cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    dispatch = conn.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(conn, cursor, sql, arguments, None, False)
    try:
        cursor.execute(sql, arguments)
    except sqlite3.Error as error:
        raise DBAPIError.instance(
            sql, arguments, error, sqlite3.Error, dialect=conn.dialect
        ) from error
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(conn, cursor, sql, arguments, None, False)
    return cursor


def compile_for_driver(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    """The SQL, parameter order and type processing SQLAlchemy would use for `statement`.

    Only statements whose SQL never changes with their values qualify: no expanding `IN`
    lists (the revoke's lists go as one JSON text parameter, `adapters.sqlite_arrays`)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise ValueError("an expanding IN list changes the SQL with its values")
    names = tuple(compiled.positiontup or ())
    if len(names) != compiled.string.count("?"):
        raise ValueError("only qmark statements with one mark per parameter qualify")
    fixed = {name: binds[name].effective_value for name in names if not binds[name].required}
    binders = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    readers: tuple[Processor, ...] | None = None
    if isinstance(statement, Select):
        found = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        readers = found if any(found) else None
    return _Compiled(compiled.string, names, fixed, binders, readers)
