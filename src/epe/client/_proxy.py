"""Data proxies: making them (``oml.sync``, ``create``, ``push``), tables, and how a
proxy travels pickled (docs/client.md#what-a-proxy-does).

The proxy itself, lazy and on Ibis, is ``_frame.DataFrame``; what it computes in the
database is ``_summary``. A proxy starts as an unbound Ibis table named like the user's
table, typed from the Arrow schema ``POST /query`` answers for ``LIMIT 0``.
"""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import weakref
from typing import Any, Literal, overload

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from epe.client._connection import Connection, current, segment
from epe.client._frame import DataFrame, Lazy, Series
from epe.client._sql import Sources, fetch, ibis, ibis_schema, quote
from epe.core.names import TABLE_NAME

__all__ = ["DataFrame", "Series", "quote"]

PARQUET = "application/vnd.apache.parquet"


def table_sql(name: str) -> str:
    """The query of all of a table's rows."""
    return f"SELECT * FROM {quote(name)}"


class _TempTable:
    """A table made by ``oml.push``: dropped when no proxy refers to it any more, unless
    a proxy of it was saved in a datastore (then it stays, as OML keeps it)."""

    def __init__(self, connection: Connection, name: str) -> None:
        self.name = name
        connection.temp_tables.add(name)
        self._finalizer = weakref.finalize(self, _drop_quietly, weakref.ref(connection), name)

    def keep(self, connection: Connection) -> None:
        """Never drop it: a datastore refers to it."""
        self._finalizer.detach()
        connection.temp_tables.discard(self.name)


def _drop_quietly(connection_ref: weakref.ref[Connection], name: str) -> None:
    connection = connection_ref()
    if connection is None or connection.closed or name not in connection.temp_tables:
        return
    connection.temp_tables.discard(name)
    # At exit, or after the server went away, there is nothing more to do.
    with contextlib.suppress(Exception):
        connection.request("DELETE", f"/tables/{segment(name)}")


def _schema_of(connection: Connection, sql: str) -> pa.Schema:
    return fetch(connection, f"SELECT * FROM ({sql}) AS t LIMIT 0").table.schema


def table_proxy(connection: Connection, name: str, keep: _TempTable | None = None,
                schema: pa.Schema | None = None) -> DataFrame:
    """A proxy of all of table ``name`` (as stored)."""
    schema = schema if schema is not None else _schema_of(connection, table_sql(name))
    rel = ibis().table(ibis_schema(schema), name=name)
    return DataFrame._of(connection, rel, keep=(keep,) if keep else (), table=name)


def query_proxy(connection: Connection, sql: str, schema: pa.Schema | None = None) -> DataFrame:
    """A proxy of a user's query: an unbound table that the compiled SQL defines."""
    schema = schema if schema is not None else _schema_of(connection, sql)
    name = "__epe_query_" + secrets.token_hex(6)
    rel = ibis().table(ibis_schema(schema), name=name)
    return DataFrame._of(connection, rel, sources=Sources({name: sql}))


def columns_of(value: Any, what: str) -> list[str]:
    """Column names given as a proxy, a column, a name, or a list of names (``index``,
    ``orderby``)."""
    if isinstance(value, DataFrame):
        return value.columns
    if isinstance(value, Series) and value.name is not None:
        return [value.name]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{what} must be an oml.DataFrame of columns, a column name, or a list of "
                    "them")


# -- how a proxy travels pickled ---------------------------------------------------------


def state_of(proxy: DataFrame) -> dict[str, Any]:
    """What a pickled proxy holds: its SQL (the server's dialect), its columns and types,
    and its table when it is a whole one; never a connection."""
    return {"sql": proxy.sql, "table": proxy.table,
            "columns": [[c, str(v.type())] for c, v in proxy._cols.items()]}


def _proxy_from_state(state: dict[str, Any]) -> DataFrame:
    """A proxy again, in this session (``oml.ds.load``, a function's result)."""
    connection = current()
    columns = state.get("columns")
    schema = None if columns is None else ibis().schema(dict(columns))
    if state.get("table"):
        rel_schema = schema or ibis_schema(_schema_of(connection, table_sql(state["table"])))
        rel = ibis().table(rel_schema, name=state["table"])
        return DataFrame._of(connection, rel, table=state["table"])
    name = "__epe_query_" + secrets.token_hex(6)
    rel_schema = schema or ibis_schema(_schema_of(connection, state["sql"]))
    rel = ibis().table(rel_schema, name=name)
    return DataFrame._of(connection, rel, sources=Sources({name: state["sql"]}))


# Pickled by reference as ``oml._proxy_from_state``: in this client that is the function
# above (``import oml`` is ``epe.oml``); inside a worker it is the worker's own, which
# makes the worker's proxy. So a proxy saved in a datastore comes back as a proxy
# wherever it is loaded.
_proxy_from_state.__module__ = "oml"


def _reduce(proxy: DataFrame) -> tuple[Any, tuple[dict[str, Any]]]:
    return _proxy_from_state, (state_of(proxy),)


DataFrame.__reduce__ = _reduce  # type: ignore[assignment,method-assign]


def keep_tables(objs: dict[str, Any]) -> None:
    """Pushed tables that proxies in ``objs`` read are kept from now on (a datastore is
    about to refer to them)."""
    for value in objs.values():
        if isinstance(value, Lazy):
            for kept in value._keep:
                if isinstance(kept, _TempTable):
                    kept.keep(value._connection)


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
    return table_proxy(connection, describe_table(connection, name)["name"])


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
        return query_proxy(connection, query)  # checks the query now, as OML4Py does
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
    return table_proxy(connection, info["name"], keep)


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
    return push_frame(current(), x)


def push_frame(connection: Connection, x: pd.DataFrame) -> DataFrame:
    """``oml.push`` in this session: a temporary table and its proxy."""
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

