"""Data proxies (``oml.DataFrame``): a SQL query over the user's tables, run on demand.

A proxy holds the SQL that run requests send as ``input``; nothing is fetched
until it is needed. Column selection builds a new proxy whose SQL projects the
columns, quoted and checked against the proxy's own. ``.shape`` and ``.pull()``
go through ``POST /query`` (docs/tables.md), the rows as an Arrow stream.
"""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Literal, overload

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from epe.client._connection import Connection, current, segment
from epe.core.names import TABLE_NAME

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
_REPR_ROWS = 10


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes."""
    return '"' + identifier.replace('"', '""') + '"'


def table_sql(name: str) -> str:
    """The query of all of a table's rows."""
    return f"SELECT * FROM {quote(name)}"


class _TempTable:
    """A table made by ``oml.push``: dropped when no proxy refers to it any more."""

    def __init__(self, connection: Connection, name: str) -> None:
        self.name = name
        connection.temp_tables.add(name)
        weakref.finalize(self, _drop_quietly, weakref.ref(connection), name)


def _drop_quietly(connection_ref: weakref.ref[Connection], name: str) -> None:
    connection = connection_ref()
    if connection is None or connection.closed or name not in connection.temp_tables:
        return
    connection.temp_tables.discard(name)
    # At exit, or after the server went away, there is nothing more to do.
    with contextlib.suppress(Exception):
        connection.request("DELETE", f"/tables/{segment(name)}")


class DataFrame:
    """A proxy for rows on the server: a table, a query, or columns of another proxy.

    ``oml.DataFrame(proxy["COL"])`` makes a proxy of the column(s), as OML4Py's
    constructor does; that is the ``index`` of ``oml.group_apply``.
    """

    _connection: Connection
    _sql: str
    _columns: list[str] | None
    _table: str | None
    _keep: _TempTable | None

    def __init__(self, other: DataFrame) -> None:
        if not isinstance(other, DataFrame):
            raise TypeError("oml.DataFrame(x) takes another proxy (e.g. proxy['COL']); use "
                            "oml.push(df) or oml.create(df, table=...) for a pandas DataFrame")
        self._connection = other._connection
        self._sql = other._sql
        self._columns = other._columns
        self._table = other._table
        self._keep = other._keep

    @classmethod
    def _make(cls, connection: Connection, sql: str, columns: list[str] | None = None,
              table: str | None = None, keep: _TempTable | None = None) -> DataFrame:
        proxy = cls.__new__(cls)
        proxy._connection = connection
        proxy._sql = sql
        proxy._columns = columns
        proxy._table = table
        proxy._keep = keep
        return proxy

    def _derived(self, sql: str, columns: list[str] | None) -> DataFrame:
        return DataFrame._make(self._connection, sql, columns, None, self._keep)

    # -- what it is ----------------------------------------------------------------------

    @property
    def sql(self) -> str:
        """The query whose rows this proxy stands for (the ``input`` of run requests)."""
        return self._sql

    @property
    def table(self) -> str | None:
        """The table's name when the proxy is a whole table, else None."""
        return self._table

    def _schema(self) -> pa.Schema:
        return _arrow(self._connection, f"SELECT * FROM ({self._sql}) AS t LIMIT 0").schema

    @property
    def columns(self) -> list[str]:
        """The column names, as the query returns them."""
        if self._columns is None:
            self._columns = list(self._schema().names)
        return list(self._columns)

    @property
    def dtypes(self) -> pd.Series:
        """The pandas dtype each column has once pulled."""
        return self._schema().empty_table().to_pandas().dtypes

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns); the rows are counted on the server."""
        rows = self._connection.post_json(
            "/query", {"input": f"SELECT count(*) AS n FROM ({self._sql}) AS t"})
        return int(rows[0]["n"]), len(self.columns)

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self) -> Iterator[str]:
        """The column names, as iterating a pandas DataFrame gives."""
        return iter(self.columns)

    # -- rows ----------------------------------------------------------------------------

    def pull(self) -> pd.DataFrame:
        """All the rows, as a pandas DataFrame (through an Arrow stream)."""
        return _arrow(self._connection, self._sql).to_pandas()

    def head(self, n: int = 5) -> DataFrame:
        """A proxy of the first ``n`` rows; ``.pull()`` it, or just show it."""
        return self._derived(f"SELECT * FROM ({self._sql}) AS t LIMIT {int(n)}",
                             self._columns)

    # -- columns -------------------------------------------------------------------------

    def _resolve(self, names: Sequence[str]) -> list[str]:
        """The columns as the proxy spells them; matched ignoring case, as SQL does."""
        by_lower = {c.lower(): c for c in self.columns}
        missing = [n for n in names if not isinstance(n, str) or n.lower() not in by_lower]
        if missing:
            raise KeyError(f"no column {', '.join(map(repr, missing))} in this proxy; its "
                           f"columns are {', '.join(self.columns)}")
        return [by_lower[n.lower()] for n in names]

    def select(self, names: Sequence[str]) -> DataFrame:
        """A proxy of some of the columns, in the order given."""
        if isinstance(names, str):
            names = [names]
        columns = self._resolve(list(names))
        if not columns:
            raise ValueError("select at least one column")
        listed = ", ".join(quote(c) for c in columns)
        return self._derived(f"SELECT {listed} FROM ({self._sql}) AS t", columns)

    def __getitem__(self, key: Any) -> DataFrame:
        """``proxy["COL"]``, ``proxy[["A", "B"]]`` and ``proxy[:, ["A", "B"]]``."""
        if isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None):
            key = key[1]
        if isinstance(key, str):
            return self.select([key])
        if isinstance(key, list | tuple) and all(isinstance(k, str) for k in key):
            return self.select(list(key))
        raise TypeError("select columns with proxy['COL'], proxy[['A', 'B']] or "
                        "proxy[:, ['A', 'B']]; filter rows with oml.sync(query=...)")

    # -- display -------------------------------------------------------------------------

    def _preview(self) -> tuple[pd.DataFrame, int] | None:
        try:
            return self.head(_REPR_ROWS).pull(), self.shape[0]
        except Exception:
            return None

    def __repr__(self) -> str:
        preview = self._preview()
        if preview is None:
            return f"oml.DataFrame({self._sql!r})"
        frame, rows = preview
        more = f"\n... ({rows} rows in all)" if rows > len(frame) else ""
        return f"{frame!r}{more}\n[oml.DataFrame: {rows} rows x {len(frame.columns)} columns]"

    def _repr_html_(self) -> str:
        preview = self._preview()
        if preview is None:
            return f"<pre>oml.DataFrame({self._sql!r})</pre>"
        frame, rows = preview
        return (frame.to_html(index=False)
                + f"<p>oml.DataFrame: {rows} rows &times; {len(frame.columns)} columns</p>")


def _arrow(connection: Connection, sql: str) -> pa.Table:
    r = connection.request("POST", "/query", json={"input": sql},
                           headers={"Accept": ARROW_STREAM})
    with pa.ipc.open_stream(r.content) as reader:
        return reader.read_all()


def columns_of(value: Any, what: str) -> list[str]:
    """Column names given as a proxy, a name, or a list of names (``index``, ``orderby``)."""
    if isinstance(value, DataFrame):
        return value.columns
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{what} must be an oml.DataFrame of columns, a column name, or a list of "
                    "them")


# -- oml.sync, create, push, drop, dir -----------------------------------------------------


def _check_table(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        raise ValueError(f"invalid table name {name!r}: use a letter or _ followed by letters, "
                         "digits or _ (at most 128)")
    return name


def describe_table(connection: Connection, name: str) -> dict[str, Any]:
    """``GET /tables/{name}``: name as stored, rows, columns and types."""
    info: dict[str, Any] = connection.get_json(f"/tables/{segment(_check_table(name))}")
    return info


def sync_table(connection: Connection, name: str) -> DataFrame:
    """A proxy for a table, which must exist."""
    info = describe_table(connection, name)
    return DataFrame._make(connection, table_sql(info["name"]),
                           [c["name"] for c in info["columns"]], info["name"])


@overload
def sync(schema: str | None = None, regex_match: Literal[False] = False,
         table: str | None = None, view: str | None = None,
         query: str | None = None) -> DataFrame: ...


@overload
def sync(schema: str | None = None, *, regex_match: Literal[True], table: str | None = None,
         view: str | None = None, query: str | None = None) -> dict[str, DataFrame]: ...


def sync(schema: str | None = None, regex_match: bool = False, table: str | None = None,
         view: str | None = None, query: str | None = None) -> DataFrame | dict[str, DataFrame]:
    """A proxy for one of your tables (``table=`` or ``view=``) or for a query (``query=``).

    With ``regex_match=True``, ``table`` is a regular expression and the answer is a
    dict of table name -> proxy, as in OML4Py. ``schema`` is not supported: each
    user sees their own tables by their plain names.
    """
    connection = current()
    if schema is not None:
        raise ValueError("schema is not supported: each user sees their own tables by plain "
                         "name")
    if sum(x is not None for x in (table, view, query)) != 1:
        raise ValueError("give exactly one of table, view or query")
    if query is not None:
        if regex_match:
            raise ValueError("regex_match applies to table names, not to a query")
        proxy = DataFrame._make(connection, query)
        proxy._columns = list(proxy._schema().names)  # checks the query now, as OML4Py does
        return proxy
    name = table if table is not None else view
    assert name is not None
    if regex_match:
        pattern = re.compile(name)
        return {t: sync_table(connection, t) for t in table_names(connection)
                if pattern.search(t)}
    return sync_table(connection, name)


def _parquet(x: Any) -> bytes:
    if isinstance(x, pd.DataFrame):
        frame = x.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
    elif isinstance(x, pa.Table):
        arrow = x
    else:
        raise TypeError(f"expected a pandas DataFrame, got {type(x).__name__}")
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    return buffer.getvalue()


def upload(connection: Connection, name: str, body: bytes, content_type: str,
           overwrite: bool = False) -> dict[str, Any]:
    """``PUT /tables/{name}``: the table as stored, ``{"name","rows","columns"}``."""
    r = connection.request("PUT", f"/tables/{segment(_check_table(name))}", content=body,
                           headers={"Content-Type": content_type},
                           params={"overwrite": "true"} if overwrite else None)
    info: dict[str, Any] = r.json()["result"]
    return info


def _proxy_of(connection: Connection, info: dict[str, Any],
              keep: _TempTable | None = None) -> DataFrame:
    return DataFrame._make(connection, table_sql(info["name"]),
                           [c["name"] for c in info["columns"]], info["name"], keep)


def create(x: pd.DataFrame, table: str, oranumber: bool = True, dbtypes: Any = None,
           append: bool = False) -> DataFrame:
    """Store a pandas DataFrame as table ``table`` and return a proxy for it.

    The table keeps pandas' column types (it travels as Parquet). An existing
    table is an error (``Conflict``), as in OML4Py; drop it first.
    ``oranumber`` and ``dbtypes`` are accepted for OML4Py's sake and have no
    effect here; ``append`` is not supported.
    """
    if append:
        raise ValueError("append is not supported by epe: upload the whole table again with "
                         "oml.drop and oml.create")
    connection = current()
    return _proxy_of(connection, upload(connection, table, _parquet(x), PARQUET))


def push(x: pd.DataFrame, oranumber: bool = True, dbtypes: Any = None) -> DataFrame:
    """Store a pandas DataFrame as a temporary table and return a proxy for it.

    The table is dropped once no proxy refers to it any more, or at
    ``oml.disconnect()``. ``oranumber`` and ``dbtypes`` have no effect here.
    """
    connection = current()
    name = "OML_PUSH_" + secrets.token_hex(8).upper()
    info = upload(connection, name, _parquet(x), PARQUET)
    return _proxy_of(connection, info, _TempTable(connection, info["name"]))


def drop_table(connection: Connection, name: str) -> None:
    """``DELETE /tables/{name}``."""
    connection.delete(f"/tables/{segment(_check_table(name))}")
    connection.temp_tables.discard(name)


def drop(table: str | None = None, view: str | None = None, model: str | None = None) -> None:
    """Drop one of your tables (``view=`` is the same thing here)."""
    if model is not None:
        raise ValueError("epe keeps no in-database models: save models with oml.ds.save")
    if (table is None) == (view is None):
        raise ValueError("give exactly one of table or view")
    name = table if table is not None else view
    assert name is not None
    drop_table(current(), name)


def table_names(connection: Connection) -> list[str]:
    """The names of the caller's tables."""
    return [str(t["name"]) for t in connection.get_json("/tables")]


def list_tables(connection: Connection) -> list[dict[str, Any]]:
    """``GET /tables``: each table's name, rows and columns."""
    tables: list[dict[str, Any]] = connection.get_json("/tables")
    return tables


def dir(name: str | None = None, regex_match: bool = False) -> list[str]:
    """The names of your tables (those matching ``name``: equal, or a regular expression
    with ``regex_match=True``)."""
    names = table_names(current())
    if name is None:
        return names
    if regex_match:
        return [n for n in names if re.search(name, n)]
    return [n for n in names if n.lower() == name.lower()]

