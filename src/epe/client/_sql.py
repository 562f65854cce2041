"""Proxies' SQL: Ibis expressions compiled for the server's data backend, run through
``POST /query`` as the user (docs/client.md#how-proxies-run).

The client holds no database connection. Ibis only compiles: a proxy's expression is
built over unbound tables named like the user's tables, turned into DuckDB's or
PostgreSQL's SQL (whichever the server's ``/query`` answers say it speaks), and sent
as a read-only query; the answer comes back as an Arrow stream. A proxy made from a
user's own query (``oml.sync(query=...)``) stands on an unbound table of a made-up
name, which the compiled SQL defines in a ``WITH`` clause.

Ibis is the ``client`` extra; it is imported here, on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pyarrow as pa

from epe.client._connection import Connection

ARROW_STREAM = "application/vnd.apache.arrow.stream"
DIALECT_HEADER = "epe-sql-dialect"
DIALECTS = ("duckdb", "postgres")
POSITION = "__epe_pos"  # a row's place in its relation's order, for ties (as pandas keeps)


@functools.cache
def ibis() -> ModuleType:
    """Ibis, imported on first use; a clear error when the extra is missing."""
    try:
        import ibis as module
    except ImportError:
        raise ImportError("epe's data proxies need Ibis: pip install 'epe[client]'") from None
    return module


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Answer:
    """The rows of a query, and the dialect the server's data backend speaks."""

    table: pa.Table
    dialect: str | None


def fetch(connection: Connection, sql: str, native: bool = False) -> Answer:
    """Run ``sql`` through ``POST /query`` as the connected user; the rows as Arrow.

    ``native``: the SQL is the backend's own (compiled by Ibis), never read as Oracle's.
    """
    body: dict[str, Any] = {"input": sql}
    if native:
        body["dialect"] = "native"
    r = connection.request("POST", "/query", json=body, headers={"Accept": ARROW_STREAM})
    with pa.ipc.open_stream(r.content) as reader:
        table = reader.read_all()
    dialect = r.headers.get(DIALECT_HEADER)
    if dialect in DIALECTS:
        connection.sql_dialect = dialect
    return Answer(table, dialect)


def dialect_of(connection: Connection) -> str:
    """The data backend's dialect, learned from a ``/query`` answer (asked once if need be)."""
    if connection.sql_dialect is None:
        fetch(connection, "SELECT 1 AS one")
    if connection.sql_dialect is None:
        raise RuntimeError("this epe server does not say which SQL its data backend speaks "
                           "(the Epe-Sql-Dialect header of POST /query): it is older than "
                           "this client; upgrade the server")
    return connection.sql_dialect


# -- types ------------------------------------------------------------------------------


def ibis_type(arrow: pa.DataType) -> str:
    """The Ibis type of an Arrow column type, as the backends' answers carry them."""
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_integer(arrow):
        return "int64"
    if pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return "float64"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return "binary"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_time(arrow):
        return "time"
    if pa.types.is_duration(arrow):
        return "interval('us')"
    if pa.types.is_dictionary(arrow):
        return ibis_type(arrow.value_type)
    return "string"  # anything else is read as text (JSON, UUID, intervals of months)


def ibis_schema(schema: pa.Schema) -> Any:
    return ibis().schema({f.name: ibis_type(f.type) for f in schema})


# -- what a proxy's SQL stands on ---------------------------------------------------------


@dataclass
class Sources:
    """The users' queries a proxy's expression reads, by the made-up table name that
    stands for each; empty when it reads only tables."""

    queries: dict[str, str] = field(default_factory=dict)

    def __or__(self, other: Sources) -> Sources:
        return Sources({**self.queries, **other.queries})


def compile_sql(expr: Any, dialect: str, sources: Sources) -> str:
    """The SQL of an Ibis table expression, its query sources defined in ``WITH``."""
    sql = str(ibis().to_sql(expr, dialect=dialect, pretty=False))
    if not sources.queries:
        return sql
    defined = ", ".join(f"{quote(name)} AS ({text})" for name, text in sources.queries.items())
    if sql[:5].upper() == "WITH ":
        return f"WITH {defined}, {sql[5:]}"
    return f"WITH {defined} {sql}"


@functools.cache
def md5() -> Any:
    """SQL's ``md5(text)``, which DuckDB and PostgreSQL both have (Ibis compiles
    ``hexdigest`` for DuckDB only)."""

    @ibis().udf.scalar.builtin(name="md5")
    def _md5(text: str) -> str: ...  # type: ignore[empty-body]

    return _md5
