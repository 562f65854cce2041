"""The ``Catalog`` over embedded DuckDB: one database file per user.

Every method names the owner; each owner's tables live in a DuckDB file of
their own (``databases.py``). Table names are checked and always quoted, and
looked up ignoring case, as SQL matches them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from epe.data.catalog import ColumnInfo, Relations, TableInfo
from epe.data.duckdb.databases import CONFIG, UserDatabases
from epe.data.duckdb.query import (
    BATCH_ROWS,
    SERVER_SIDE,
    check_read_only,
    rollback,
    run_query,
    stream_query,
)
from epe.data.ingest import storable
from epe.data.names import check_table_name, quote
from epe.errors import Conflict, InvalidRequest, NotFound

_TABLES = """
    SELECT table_name FROM duckdb_tables()
    WHERE database_name = current_database() AND schema_name = 'main'
"""
_COLUMNS = """
    SELECT column_name, data_type FROM duckdb_columns()
    WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?
    ORDER BY column_index
"""


class DuckDBCatalog:
    dialect = "duckdb"

    def __init__(self, root: Path, query_timeout: float, idle_close: float = 5.0) -> None:
        self.query_timeout = query_timeout
        self._dbs = UserDatabases(root, idle_close)

    def put(self, owner: str, name: str, table: pa.Table, overwrite: bool) -> TableInfo:
        check_table_name(name)
        table = storable(table)
        with self._dbs.cursor(owner, write=True) as cur:
            if find_table(cur, name) is not None and not overwrite:
                raise Conflict(f"table {name} already exists; add ?overwrite=true to replace it")
            create_table(cur, name, table)
            return table_info(cur, name)

    def tables(self, owner: str) -> list[TableInfo]:
        with self._dbs.cursor(owner) as cur:
            cur.execute("BEGIN TRANSACTION READ ONLY")  # one snapshot for the whole list
            try:
                names = [row[0] for row in cur.execute(_TABLES + " ORDER BY 1").fetchall()]
                return [table_info(cur, n) for n in names]
            finally:
                rollback(cur)

    def describe(self, owner: str, name: str) -> TableInfo:
        check_table_name(name)
        with self._dbs.cursor(owner) as cur:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                return table_info(cur, existing_table(cur, name))
            finally:
                rollback(cur)

    def drop(self, owner: str, name: str) -> None:
        check_table_name(name)
        with self._dbs.cursor(owner, write=True) as cur:
            cur.execute(f"DROP TABLE {quote(existing_table(cur, name))}")

    def add_owner(self, owner: str, db_role: str | None = None) -> None:
        """Nothing to make: a user's database file is made by their first upload."""
        if db_role is not None:
            raise InvalidRequest("a database role can be bound only when users' tables are "
                                 "in PostgreSQL (EPE_DATA_URL=postgresql://...)")

    def drop_owner(self, owner: str) -> None:
        with self._dbs.cursor(owner, write=True) as cur:
            for (name,) in cur.execute(_TABLES).fetchall():
                cur.execute(f"DROP TABLE {quote(name)}")

    def query(self, owner: str, sql: str, relations: Relations | None = None) -> pa.Table:
        """The result of a read-only query over ``owner``'s tables (blocking)."""
        check_read_only(sql)
        with self._dbs.cursor(owner) as cur, registered(cur, relations):
            return run_query(cur, sql, self.query_timeout)

    @contextmanager
    def stream(self, owner: str, sql: str,
               relations: Relations | None = None) -> Iterator[pa.RecordBatchReader]:
        """The same result as a stream of record batches, read within the block (blocking):
        no copy of the whole result is ever held here."""
        check_read_only(sql)
        with self._dbs.cursor(owner) as cur, registered(cur, relations), \
                stream_query(cur, sql, self.query_timeout) as rows:
            yield rows

    def owners(self) -> list[str]:
        """The users who have a database of tables."""
        return self._dbs.owners()

    def copy_tables(self, owner: str, to: Path) -> list[str]:
        """Every table of ``owner`` as of one moment, into a new DuckDB file ``to``
        (blocking); their names. One read-only transaction reads them all, so the copy
        is whole and consistent while writers go on (DuckDB lets no other process open a
        file this one holds, so a copy of a live server's tables is made here)."""
        with self._dbs.cursor(owner) as cur:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                names = [row[0] for row in cur.execute(_TABLES + " ORDER BY 1").fetchall()]
                with contextlib.closing(duckdb.connect(str(to), config=CONFIG)) as out:
                    for name in names:
                        copy_table(cur, out, name)
                    out.execute("CHECKPOINT")  # one file, no write-ahead log beside it
            finally:
                rollback(cur)
        return names

    def check(self) -> None:
        self._dbs.check()
        with contextlib.closing(duckdb.connect(":memory:", config=CONFIG)) as con:
            con.execute("SELECT 1").fetchall()

    def warm_up(self) -> None:
        """Run DuckDB once, in memory, so that the first user's query does not pay for
        loading the engine (about 50 MB of code and buffers, and their page faults)."""
        with contextlib.closing(duckdb.connect(":memory:", config=CONFIG)) as con:
            con.sql("SELECT range % 7 AS G, range::DOUBLE AS X FROM range(200000)"
                    ).to_arrow_reader(BATCH_ROWS).read_all()

    def close(self) -> None:
        self._dbs.close()


@contextmanager
def registered(cur: duckdb.DuckDBPyConnection, relations: Relations | None) -> Iterator[None]:
    """The Arrow tables readable by name on this cursor (its own temporary views, which
    come before the database's tables of the same name) while the block runs."""
    names = list(relations or {})
    try:
        for name in names:
            cur.register(name, (relations or {})[name])
        yield
    finally:
        for name in names:
            with contextlib.suppress(duckdb.Error):
                cur.unregister(name)


def find_table(cur: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The stored spelling of table ``name``, matched ignoring case, or None."""
    # fetchall, not fetchone: DuckDB refuses more work on a cursor with unread rows.
    found = cur.execute(_TABLES + " AND lower(table_name) = lower(?)", [name]).fetchall()
    return str(found[0][0]) if found else None


def existing_table(cur: duckdb.DuckDBPyConnection, name: str) -> str:
    found = find_table(cur, name)
    if found is None:
        raise NotFound(f"no such table {name}")
    return found


def create_table(cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Create or replace ``name`` from ``table`` in one statement: readers see old or new."""
    view = f"epe_upload_{uuid.uuid4().hex}"
    cur.register(view, table)
    try:
        cur.execute(f"CREATE OR REPLACE TABLE {quote(name)} AS SELECT * FROM {quote(view)}")
    except SERVER_SIDE:
        raise
    except duckdb.Error as e:
        raise InvalidRequest(f"could not store table {name}: {e}") from None
    finally:
        cur.unregister(view)


def copy_table(source: duckdb.DuckDBPyConnection, to: duckdb.DuckDBPyConnection,
               name: str) -> None:
    """Table ``name`` of ``source`` into ``to``, streamed as Arrow batches: the same
    columns, types and rows."""
    rows = source.sql(f"SELECT * FROM {quote(name)}").to_arrow_reader(BATCH_ROWS)
    view = f"epe_copy_{uuid.uuid4().hex}"
    to.register(view, rows)
    try:
        to.execute(f"CREATE TABLE {quote(name)} AS SELECT * FROM {quote(view)}")
    finally:
        to.unregister(view)


def table_info(cur: duckdb.DuckDBPyConnection, name: str) -> TableInfo:
    columns = [ColumnInfo(c, t) for c, t in cur.execute(_COLUMNS, [name]).fetchall()]
    [(count,)] = cur.execute(f"SELECT count(*) FROM {quote(name)}").fetchall()
    return TableInfo(name, int(count), columns)
