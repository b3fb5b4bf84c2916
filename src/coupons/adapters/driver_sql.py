"""The revoke's statements: compiled once by SQLAlchemy Core, sent by the driver.

SQLAlchemy's per-call execution (cache key, parameter and result set-up, events) costs more
CPU than the driver's own work for the short statements a revoke sends: on PostgreSQL a
primary-key lookup of a series took 0.17-0.22 ms of CPU through `Connection.execute` and
0.06-0.08 ms on the psycopg cursor. On SQLite it is worse, as every writer waits while one holds
the database's write lock from `BEGIN IMMEDIATE` to `COMMIT`; on two cores shared with
PostgreSQL every such millisecond comes off the database (docs/benchmarks.md). So the statements
a revoke sends are still built with Core from the table definitions, compiled by the
connection's SQLAlchemy dialect and bound and read with its type processing, but compiled once
per statement and dialect, and each call hands the finished SQL and values straight to the
driver cursor of the unit of work's own connection, inside its transaction.

Nothing is hidden: listeners of `before_cursor_execute` and `after_cursor_execute` see each
statement (tests count statements and read their plans that way), and a driver error is
raised as SQLAlchemy's (`OperationalError` for "database is locked", so retries behave the
same). A PostgreSQL error that means the connection is gone invalidates it and throws the pool
away, as SQLAlchemy's own handling does (`adapters.db`), so the next request reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
T = TypeVar("T")
# Rows `DriverStatement.objects` remembers per statement and store, before it starts afresh.
MEMO_SIZE = 1024


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement as its dialect's driver takes it."""

    sql: str
    names: tuple[str, ...]  # the bind parameters (on SQLite in the order of the `?` marks)
    fixed: Mapping[str, Any]  # values the statement itself carries (`values(state=...)`)
    binders: tuple[Processor, ...]  # per parameter: the type's bind processing, if any
    # The result's type processing, set when the first rows come back (the processors depend
    # on the driver's column types): one per column, or None when no column has one.
    readers: list[tuple[Processor, ...] | None]
    named: bool  # values go by name (`%(name)s`, psycopg), not in the order of `?` marks
    memo: dict[tuple[Any, ...], Any]  # `DriverStatement.objects`: built results by raw row


class DriverStatement:
    """A Core statement, sent to the driver directly (see the module's docstring)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # by dialect name

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row the statement returns, each a sequence of its columns' values."""
        compiled = self._compile(conn.dialect)
        rows = self._fetch(conn, compiled, params)
        readers = compiled.readers[0]
        if readers is None:
            return rows
        return [_read(readers, row) for row in rows]

    def objects(
        self, conn: Connection, params: Mapping[str, Any], build: Callable[[Sequence[Any]], T]
    ) -> list[T]:
        """Each row as `build` makes it from the row's values, remembered by the driver's own
        values: a row read again unchanged (the series every revoke of it reads) costs a dict
        lookup instead of the type processing and `build`. Only for immutable results of
        pure builders, and rows of hashable values; at most `MEMO_SIZE` rows are kept."""
        compiled = self._compile(conn.dialect)
        rows = self._fetch(conn, compiled, params)
        readers = compiled.readers[0]
        memo = compiled.memo
        found = []
        for row in rows:
            key = tuple(row)
            built = memo.get(key)
            if built is None:
                built = build(row if readers is None else _read(readers, row))
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                memo[key] = built
            found.append(built)
        return found

    def _fetch(
        self, conn: Connection, compiled: _Compiled, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        cursor = self._send(conn, compiled, params)
        rows: Sequence[Sequence[Any]] = cursor.fetchall()
        if not compiled.readers:
            compiled.readers.append(_readers(self.statement, conn.dialect, cursor.description))
        return rows

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """How many rows the statement changed."""
        return int(self._send(conn, self._compile(conn.dialect), params).rowcount)

    def _send(self, conn: Connection, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values = []
        for name, bind in zip(compiled.names, compiled.binders, strict=True):
            value = params[name] if name in params else compiled.fixed[name]
            values.append(value if bind is None else bind(value))
        if compiled.named:
            return send(conn, compiled.sql, dict(zip(compiled.names, values, strict=True)))
        return send(conn, compiled.sql, tuple(values))

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = compile_for_driver(self.statement, dialect)
        return compiled


def send(conn: Connection, sql: str, arguments: tuple[Any, ...] | dict[str, Any]) -> Any:
    """Run SQL on a connection's driver cursor, seen by the engine's cursor listeners, its
    errors raised as SQLAlchemy's."""
    pooled = conn.connection
    # The DB-API connection: psycopg's own, or on the event loop SQLAlchemy's adapter of its
    # asyncio connection, whose calls wait for the loop from inside the use case's greenlet.
    cursor = pooled.dbapi_connection.cursor()  # type: ignore[union-attr]
    dispatch = conn.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(conn, cursor, sql, arguments, None, False)
    try:
        cursor.execute(sql, arguments)
    except conn.dialect.loaded_dbapi.Error as error:
        raise as_sqlalchemy_error(conn, sql, arguments, error, cursor) from error
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(conn, cursor, sql, arguments, None, False)
    return cursor


def as_sqlalchemy_error(
    conn: Connection, sql: str, arguments: Any, error: Any, cursor: Any
) -> StatementError:
    """A driver's error from a call SQLAlchemy did not make, as SQLAlchemy would raise it,
    so that the unit of work reads it as every other (a lost connection, a timeout, a
    conflict to retry); a lost connection takes the pool with it, as it would."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor) or (
        is_disconnect_sqlstate(getattr(error, "sqlstate", None))
    )
    wrapped: StatementError = DBAPIError.instance(
        sql, arguments, error, dialect.loaded_dbapi.Error, connection_invalidated=lost,
        dialect=dialect,
    )  # fmt: skip
    if lost:
        conn.invalidate(wrapped)
        conn.engine.dispose()  # the others went with it: the next checkout reconnects
    return wrapped


# SQLSTATEs meaning "this connection, or the server behind it, is gone": connection
# exceptions (class 08, also what PgBouncer sends when it cannot reach the server), the
# server shutting down or starting up (57P01-57P03), and a primary that became read-only in
# a failover (25006). The pool is thrown away on these, so the next checkout reconnects.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006"})


def is_disconnect_sqlstate(sqlstate: str | None) -> bool:
    """Whether a PostgreSQL error code means the connection or its server went away."""
    return sqlstate is not None and (sqlstate.startswith("08") or sqlstate in DISCONNECT_SQLSTATES)


def compile_for_driver(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    """The SQL, parameter order and type processing SQLAlchemy would use for `statement`.

    Only statements whose SQL never changes with their values qualify: no expanding `IN`
    lists (the revoke's lists go as one array or JSON text parameter, `adapters.pg_arrays`,
    `adapters.sqlite_arrays`)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise ValueError("an expanding IN list changes the SQL with its values")
    named = dialect.paramstyle == "pyformat"
    if named:
        if compiled.escaped_bind_names:
            raise ValueError("only parameters named as plain identifiers qualify")
        names = tuple(binds)
    else:
        names = tuple(compiled.positiontup or ())
        if len(names) != compiled.string.count("?"):
            raise ValueError("only qmark statements with one mark per parameter qualify")
    fixed = {name: binds[name].effective_value for name in names if not binds[name].required}
    binders = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return _Compiled(compiled.string, names, fixed, binders, [], named, {})


def _read(readers: tuple[Processor, ...], row: Sequence[Any]) -> tuple[Any, ...]:
    """A row's values with each column's result processing applied."""
    return tuple(v if read is None else read(v) for read, v in zip(readers, row, strict=True))


def _readers(
    statement: ClauseElement, dialect: Dialect, description: Sequence[Sequence[Any]] | None
) -> tuple[Processor, ...] | None:
    """Per result column, the processing SQLAlchemy would apply to the driver's values (it
    picks it by the column's type and, on PostgreSQL, by the type the driver reports)."""
    if not isinstance(statement, Select) or description is None:
        return None
    found = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, described[1])
        for column, described in zip(statement.selected_columns, description, strict=True)
    )
    return found if any(found) else None
