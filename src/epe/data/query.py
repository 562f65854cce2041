"""Running a user's ``input``: one read-only query, within a time limit, as Arrow.

Three independent guards keep it read-only. DuckDB's own parser must find exactly
one statement, of type SELECT (which covers WITH, VALUES, FROM-first, TABLE,
DESCRIBE, SHOW and SUMMARIZE). It then runs in a READ ONLY transaction that is
rolled back, so even a function with a side effect cannot write. And the
database's settings forbid file and URL access (see ``databases.CONFIG``).
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

import duckdb
import pyarrow as pa

from epe.errors import InvalidRequest, TimeLimitExceeded

_ALLOWED = duckdb.StatementType.SELECT
# Failures of the database or the disk, not of the query: they surface as our 500.
SERVER_SIDE = (duckdb.InternalError, duckdb.FatalException, duckdb.IOException)


def check_read_only(sql: str) -> None:
    """Refuse anything but exactly one SELECT-type statement, by DuckDB's parser."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise InvalidRequest(f"invalid SQL in input: {e}") from None
    if not statements:
        raise InvalidRequest("input is empty: give one SELECT query")
    if len(statements) > 1:
        raise InvalidRequest(f"input must be one query; it holds {len(statements)} statements")
    if statements[0].type != _ALLOWED:
        raise InvalidRequest(f"input must be a read-only query (SELECT, WITH, VALUES, FROM, "
                             f"DESCRIBE, SHOW); {statements[0].type.name} statements are not "
                             "allowed")


class TimeLimit:
    """Interrupts a cursor's query when ``seconds`` pass, unless it ended first."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._cursor = cursor
        self._done = False
        self._lock = threading.Lock()  # the timer never interrupts after the query ended
        self._timer = threading.Timer(seconds, self._interrupt)
        self._timer.daemon = True

    def _interrupt(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                self._cursor.interrupt()

    def __enter__(self) -> TimeLimit:
        self._timer.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def run_query(cursor: duckdb.DuckDBPyConnection, sql: str, seconds: float) -> pa.Table:
    """The result of ``sql`` (already checked read-only) on ``cursor``, as one Arrow table."""
    limit = TimeLimit(cursor, seconds)
    try:
        with limit:
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            return cursor.sql(sql).to_arrow_table()
    except SERVER_SIDE:
        raise
    except duckdb.Error as e:
        raise query_error(e, limit) from None
    finally:
        rollback(cursor)


def rollback(cursor: duckdb.DuckDBPyConnection) -> None:
    # A statement that failed before the transaction began leaves none to roll back.
    with contextlib.suppress(duckdb.TransactionException):
        cursor.execute("ROLLBACK")


def query_error(error: duckdb.Error, limit: TimeLimit) -> Exception:
    if isinstance(error, duckdb.InterruptException) and limit.fired:
        return TimeLimitExceeded(f"the input query ran longer than the query time limit of "
                                 f"{limit.seconds:g} seconds (setting query_timeout) and was "
                                 "stopped")
    if isinstance(error, duckdb.PermissionException):
        return InvalidRequest(f"input may read your tables only, not files or URLs: {error}")
    return InvalidRequest(f"the input query failed: {error}")
