"""The table catalog: what the server needs of wherever users' tables live.

Every method names the owner and sees only that owner's tables; rows go in and
out as Arrow, never row by row. ``epe.data.duckdb`` implements it over one
embedded DuckDB file per user; a second backend is one more implementation that
passes ``tests/integration/test_catalog_conformance.py``, picked from
``EPE_DATA_URL`` by ``epe.data.open_catalog``; ``epe.data.postgres`` is the second,
over a PostgreSQL database with a role and a schema per user.

Errors follow ``epe.errors``: a missing table is ``NotFound``, an existing one
without ``overwrite`` is ``Conflict``, bad SQL or a bad name ``InvalidRequest``,
a query past its time limit ``TimeLimitExceeded``.

A query may be given ``relations``: Arrow tables it reads by name, as if they were
tables, for that one statement (OML's PYQ views and the results of ``pyq*`` table
functions, computed by ``epe.service.sql``). Their names are ours (``__epe_...``), the
query names them quoted, and for that statement they come before a table of the same
name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    # DuckDB's type names (BIGINT, DOUBLE, VARCHAR, TIMESTAMP WITH TIME ZONE...) on every
    # backend, so that a table describes the same wherever it is kept.
    type: str


@dataclass(frozen=True)
class TableInfo:
    name: str
    rows: int
    columns: list[ColumnInfo]


Relations = Mapping[str, pa.Table]


class Catalog(Protocol):
    # sqlglot's name of the SQL dialect queries are written in ("duckdb", "postgres").
    dialect: str

    def tables(self, owner: str) -> list[TableInfo]:
        """The owner's tables, by name, seen in one snapshot."""
        ...

    def describe(self, owner: str, name: str) -> TableInfo:
        """One table, its name matched ignoring case as SQL matches it."""
        ...

    def put(self, owner: str, name: str, table: pa.Table, overwrite: bool) -> TableInfo:
        """Create (or with ``overwrite`` replace, atomically) a table from Arrow."""
        ...

    def drop(self, owner: str, name: str) -> None: ...

    def add_owner(self, owner: str, db_role: str | None = None) -> None:
        """Make a place for a new user's tables (PostgreSQL: a role and a schema), or
        with ``db_role`` bind the user to that existing database role; a no-op when the
        place exists, so that it may be retried."""
        ...

    def drop_owner(self, owner: str) -> None:
        """Everything of ``owner``'s, gone (the user is being deleted)."""
        ...

    def query(self, owner: str, sql: str, relations: Relations | None = None) -> pa.Table:
        """The result of one read-only query over the owner's tables (blocking)."""
        ...

    def stream(self, owner: str, sql: str, relations: Relations | None = None
               ) -> AbstractContextManager[pa.RecordBatchReader]:
        """The same result as record batches, read within the block (blocking)."""
        ...

    def check(self) -> None:
        """Raise ``epe.errors.NotReady`` unless queries could run now (the readiness
        check); cheap, and it reads no user's tables."""
        ...

    def warm_up(self) -> None:
        """Load the engine once, so that the first user's query does not pay for it."""
        ...

    def close(self) -> None: ...


def read_batches(reader: pa.RecordBatchReader,
                 failed: Callable[[OSError], Exception]) -> Iterator[pa.RecordBatch]:
    """The batches of a database's Arrow stream, as they come. A failure after the first
    batch (the time limit, a bad value in a later row, the server gone) reaches Python
    through Arrow's C stream as an ``OSError`` carrying the database's message:
    ``failed`` says which error it is."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as e:
            raise failed(e) from None
        yield batch
