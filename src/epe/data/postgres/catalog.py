"""The ``Catalog`` over PostgreSQL: each user's tables in a schema of their own, read
by their own database role, as Arrow through ADBC.

An input query runs on a connection logged in as the user's role (``owners``), as
``BEGIN READ ONLY; SET LOCAL ROLE <role>; SET LOCAL statement_timeout = <query time
limit>; SET LOCAL search_path = <role's schema>, public`` then the query, rolled back
at the end. The database refuses what the role may not read (a 400 naming the table),
writes of any kind (the transaction is read-only), several statements (ADBC prepares
the query, and a prepared statement is one statement) and ``COPY``; it cancels a query
past its time itself (``statement_timeout``). Rows come back as Arrow record batches
(ADBC reads the result with ``COPY ... TO STDOUT (FORMAT binary)``), never row by row.

Uploads go in with ADBC's bulk ingest (``COPY ... FROM STDIN``) as the user's role, so
the table is theirs; replacing one drops and re-creates it in one transaction, so
readers see the old table or the new one. Table names keep the case they were given
(they are quoted), and epe's own look-ups match them ignoring case, as on DuckDB.

Column types are reported in DuckDB's vocabulary (``BIGINT``, ``DOUBLE``, ``VARCHAR``,
``TIMESTAMP WITH TIME ZONE``, ...), the names the embedded catalog reports, so that a
table describes the same on both; a type DuckDB has no name for keeps PostgreSQL's.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from epe.data.catalog import ColumnInfo, Relations, TableInfo, read_batches
from epe.data.ingest import storable
from epe.data.names import check_table_name, quote
from epe.data.postgres.connections import (
    LoginRefused,
    Pools,
    alive,
    driver,
    is_unavailable,
    login_url,
    message,
    query_error,
    sqlstate,
    transaction,
    unavailable,
    with_connect_timeout,
)
from epe.data.postgres.owners import Owner, Owners
from epe.data.postgres.relations import with_relations
from epe.errors import Conflict, InvalidRequest, NotFound, NotReady, ServerBusy

_TABLES = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
"""
_COLUMNS = """
    SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), t.typcategory
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = (SELECT c.oid FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""
# PostgreSQL's type names -> DuckDB's, the vocabulary both catalogs report.
_DUCKDB_TYPES = {
    "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "float4": "FLOAT",
    "float8": "DOUBLE", "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR",
    "name": "VARCHAR", "bool": "BOOLEAN", "date": "DATE", "time": "TIME",
    "timetz": "TIME WITH TIME ZONE", "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE", "interval": "INTERVAL", "bytea": "BLOB",
    "uuid": "UUID", "json": "JSON", "jsonb": "JSON",
}
# Bytes per record batch of a result: a stream holds a few of them at a time (ADBC's
# default, 16 MB, would read most tables in a single batch).
BATCH_OPTION = "adbc.postgresql.batch_size_hint_bytes"
BATCH_BYTES = 1 << 20
_NUMERIC = re.compile(r"numeric(\(\d+,\d+\))?")


class PostgresCatalog:
    dialect = "postgres"

    def __init__(self, url: str, query_timeout: float, role_prefix: str = "epe_") -> None:
        driver()  # not installed: say so when the server starts, not at the first request
        url = with_connect_timeout(url)
        self.url = url
        self.query_timeout = query_timeout
        self._pools = Pools()
        self.owners = Owners(self._pools, url, role_prefix)
        self._closed = False

    # Users ------------------------------------------------------------------------
    def add_owner(self, owner: str, db_role: str | None = None) -> None:
        self.owners.add(owner, db_role)

    def drop_owner(self, owner: str) -> None:
        dropped = self.owners.drop(owner)
        if dropped is not None:
            self._pools.forget(self._login_url(dropped))

    # Tables -----------------------------------------------------------------------
    def put(self, owner: str, name: str, table: pa.Table, overwrite: bool) -> TableInfo:
        check_table_name(name)
        table = check_storable(storable(table))
        who = self.owners.ensure(owner)
        with self._pools.connection(self.url) as conn, \
                transaction(conn, role=who.login, schema=who.login) as cur:
            existing = find_table(cur, who.login, name)
            if existing is not None and not overwrite:
                raise Conflict(f"table {name} already exists; add ?overwrite=true to replace it")
            if existing is not None:
                cur.execute(f"DROP TABLE {quote(who.login)}.{quote(existing)}")
            try:  # the new spelling of the name, as on DuckDB
                cur.adbc_ingest(name, table, mode="create", db_schema_name=who.login)
            except Exception as e:
                raise self._store_error(e, conn, name) from None
            return table_info(cur, who.login, name)

    def tables(self, owner: str) -> list[TableInfo]:
        schema = self.owners.login_of(owner)
        with self._pools.connection(self.url) as conn, self._snapshot(conn) as cur:
            cur.execute(_TABLES, parameters=(schema,))
            names = sorted(row[0] for row in cur.fetchall())
            return [table_info(cur, schema, n) for n in names]

    def describe(self, owner: str, name: str) -> TableInfo:
        check_table_name(name)
        schema = self.owners.login_of(owner)
        with self._pools.connection(self.url) as conn, self._snapshot(conn) as cur:
            return table_info(cur, schema, existing_table(cur, schema, name))

    def drop(self, owner: str, name: str) -> None:
        check_table_name(name)
        schema = self.owners.login_of(owner)
        with self._pools.connection(self.url) as conn, transaction(conn) as cur:
            cur.execute(f"DROP TABLE {quote(schema)}.{quote(existing_table(cur, schema, name))}")

    # Queries ----------------------------------------------------------------------
    def query(self, owner: str, sql: str, relations: Relations | None = None) -> pa.Table:
        with self.stream(owner, sql, relations) as rows:
            return rows.read_all()

    @contextmanager
    def stream(self, owner: str, sql: str,
               relations: Relations | None = None) -> Iterator[pa.RecordBatchReader]:
        """The result as record batches, read within the block; the transaction (and the
        time limit) lasts as long as the block. ``relations`` travel in the statement,
        as a WITH clause (``relations.py``)."""
        sql = with_relations(sql, relations)
        seconds = self.query_timeout
        with self._as_user(owner) as (who, conn), \
                transaction(conn, role=who.login, schema=who.login, read_only=True,
                            timeout=seconds) as cur:
            try:
                cur.adbc_statement.set_options(**{BATCH_OPTION: str(BATCH_BYTES)})
                cur.execute(sql)
                reader = cur.fetch_record_batch()
            except Exception as e:
                raise query_error(e, conn, seconds) from None
            schema, numeric = plain_schema(reader.schema)
            yield pa.RecordBatchReader.from_batches(
                schema, (plain(b, schema, numeric) for b in _batches(reader, conn, seconds)))

    # Health -----------------------------------------------------------------------
    def check(self) -> None:
        if self._closed:
            raise NotReady("the table catalog is closed")
        try:
            with self._pools.connection(self.url) as conn, transaction(conn,
                                                                        read_only=True) as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        except Exception as e:  # whatever failed, queries could not run
            raise NotReady(f"the PostgreSQL database of users' tables does not answer: "
                           f"{message(e)}") from None

    def warm_up(self) -> None:
        """Load the driver and open the catalog's first connection before any request
        needs them (a database down now is the readiness check's business)."""
        with contextlib.suppress(Exception):
            self.check()

    def close(self) -> None:
        self._closed = True
        self._pools.close()

    # ------------------------------------------------------------------------------
    def _login_url(self, who: Owner) -> str:
        return login_url(self.url, who.login, who.password)

    @contextmanager
    def _as_user(self, owner: str) -> Iterator[tuple[Owner, Any]]:
        """A connection logged in as ``owner``'s role. A refused login is tried once
        more with what the database says now: another server may have made the user
        again, with a new password, since this one read it."""
        with contextlib.ExitStack() as stack:
            who = self.owners.ensure(owner)
            try:
                conn = stack.enter_context(self._pools.connection(self._login_url(who),
                                                                  reset=True))
            except LoginRefused:
                self.owners.forget(owner)
                who = self.owners.ensure(owner)
                try:
                    conn = stack.enter_context(self._pools.connection(self._login_url(who),
                                                                      reset=True))
                except LoginRefused as e:
                    raise ServerBusy(f"the database refused the login of role {who.login} "
                                     f"({e}): its pg_hba.conf must let users' roles log in "
                                     "with a password from this host") from None
            yield who, conn

    @contextmanager
    def _snapshot(self, conn: Any) -> Iterator[Any]:
        """A read-only transaction that sees one snapshot throughout."""
        cur = conn.cursor()
        try:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur
        finally:
            with contextlib.suppress(Exception):
                cur.execute("ROLLBACK")
            with contextlib.suppress(Exception):
                cur.close()

    @staticmethod
    def _store_error(error: Exception, conn: Any, name: str) -> Exception:
        if is_unavailable(error) and not alive(conn):
            return unavailable()
        if sqlstate(error) == "42P07":  # another upload of the same name won the race
            return Conflict(f"table {name} already exists; add ?overwrite=true to replace it")
        return InvalidRequest(f"could not store table {name}: {message(error)}")


def _batches(reader: pa.RecordBatchReader, conn: Any, seconds: float) -> Iterator[pa.RecordBatch]:
    started = time.monotonic()

    def failed(error: OSError) -> Exception:  # libpq's message, through Arrow's C stream
        if time.monotonic() - started >= seconds and "statement timeout" not in str(error):
            error = OSError(f"{error} (statement timeout)")  # the limit, whatever the wording
        return query_error(error, conn, seconds)

    return read_batches(reader, failed)


def plain_schema(schema: pa.Schema) -> tuple[pa.Schema, list[int]]:
    """``schema`` with PostgreSQL's ``numeric`` columns as doubles, and their positions.

    ADBC hands ``numeric`` over as text (an Arrow "opaque" type): pandas would see
    strings, where DuckDB's ``DECIMAL`` reaches a function as floats."""
    numeric = [i for i, f in enumerate(schema)
               if getattr(f.type, "type_name", None) == "numeric"
               and getattr(f.type, "vendor_name", None) == "PostgreSQL"]
    for i in numeric:
        schema = schema.set(i, schema.field(i).with_type(pa.float64()))
    return schema, numeric


def plain(batch: pa.RecordBatch, schema: pa.Schema, numeric: list[int]) -> pa.RecordBatch:
    if not numeric:
        return batch
    columns = list(batch.columns)
    for i in numeric:
        columns[i] = columns[i].storage.cast(pa.float64())
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def check_storable(table: pa.Table) -> pa.Table:
    """``table`` as PostgreSQL's ingest can store it: records refused with a message,
    unsigned 64-bit integers as ``bigint`` when they fit (ADBC would wrap them)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_struct(field.type) or pa.types.is_map(field.type) \
                or pa.types.is_union(field.type):
            raise InvalidRequest(f"column {field.name!r} holds records ({field.type}), which "
                                 "users' tables in PostgreSQL cannot store: flatten them "
                                 "into columns")
        if pa.types.is_uint64(field.type):
            try:
                column = table.column(i).cast(pa.int64())  # safe: refuses what overflows
            except pa.ArrowInvalid:
                raise InvalidRequest(f"column {field.name!r} holds integers above "
                                     f"{2**63 - 1}, more than PostgreSQL's bigint "
                                     "holds") from None
            table = table.set_column(i, field.name, column)
    return table


def find_table(cur: Any, schema: str, name: str) -> str | None:
    """The stored spelling of table ``name`` in ``schema``, matched ignoring case (an
    exact match first: PostgreSQL may hold both ``t`` and ``T``), or None."""
    cur.execute(_TABLES + " AND lower(c.relname) = lower($2)", parameters=(schema, name))
    found = sorted(row[0] for row in cur.fetchall())
    if not found:
        return None
    return name if name in found else str(found[0])


def existing_table(cur: Any, schema: str, name: str) -> str:
    found = find_table(cur, schema, name)
    if found is None:
        raise NotFound(f"no such table {name}")
    return found


def table_info(cur: Any, schema: str, name: str) -> TableInfo:
    cur.execute(_COLUMNS, parameters=(schema, name))
    columns = [ColumnInfo(str(n), duckdb_type(t, shown, category))
               for n, t, shown, category in cur.fetchall()]
    cur.execute(f"SELECT count(*) FROM {quote(schema)}.{quote(name)}")
    [(count,)] = cur.fetchall()
    return TableInfo(name, int(count), columns)


def duckdb_type(typname: str, shown: str, category: str) -> str:
    """DuckDB's name for a PostgreSQL column type (``shown`` is ``format_type``'s)."""
    if category == "A" and typname.startswith("_"):  # an array: its element's name, then []
        element = shown.removesuffix("[]")
        return duckdb_type(typname[1:], element, "") + "[]"
    if typname == "numeric":
        found = _NUMERIC.fullmatch(shown)
        return "DECIMAL" + (found.group(1) or "" if found else "")
    return _DUCKDB_TYPES.get(typname, shown.upper())
