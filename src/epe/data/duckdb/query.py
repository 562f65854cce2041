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
from collections.abc import Iterator
from types import TracebackType

import duckdb
import pyarrow as pa

from epe.data.catalog import read_batches
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


# Rows per record batch of a streamed result: DuckDB's own vector-aligned default,
# small enough that a stream holds a few MB at a time.
BATCH_ROWS = 122_880


@contextlib.contextmanager
def stream_query(cursor: duckdb.DuckDBPyConnection, sql: str, seconds: float,
                 batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatchReader]:
    """The result of ``sql`` (already checked read-only) on ``cursor`` as a stream of
    record batches, to be read before the block ends: the transaction and the time
    limit last as long as the block."""
    limit = TimeLimit(cursor, seconds)
    reader: pa.RecordBatchReader | None = None
    try:
        with limit:
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            reader = cursor.sql(sql).to_arrow_reader(batch_rows)
            batches = read_batches(reader, lambda error: stream_error(error, limit))
            yield pa.RecordBatchReader.from_batches(reader.schema, batches)
    except SERVER_SIDE:
        raise
    except duckdb.Error as e:
        raise query_error(e, limit) from None
    finally:
        if reader is not None:
            # A stream left midway (its reader failed) keeps its result open, and DuckDB
            # refuses the rollback until it is let go.
            reader.close()
        rollback(cursor)


def run_query(cursor: duckdb.DuckDBPyConnection, sql: str, seconds: float) -> pa.Table:
    """The result of ``sql`` (already checked read-only) on ``cursor``, as one Arrow table."""
    with stream_query(cursor, sql, seconds) as reader:
        return reader.read_all()


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


# DuckDB's messages for failures of the database or the disk, as opposed to the query.
_SERVER_SIDE_MESSAGES = ("IO Error", "INTERNAL Error", "FATAL Error")


def stream_error(error: OSError, limit: TimeLimit) -> Exception:
    message = str(error)
    if message.startswith(_SERVER_SIDE_MESSAGES):
        return error
    if limit.fired:
        return query_error(duckdb.InterruptException(message), limit)
    return InvalidRequest(f"the input query failed: {message}")
