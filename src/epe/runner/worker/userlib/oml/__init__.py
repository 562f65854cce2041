"""OML4Py's ``oml`` module, as functions run by epe see it (docs/api.md#datastores).

``oml.ds`` keeps Python objects in datastores; ``oml.grant``/``oml.revoke``
share datastores and scripts; ``oml.sync`` reads a table or query. Every call
goes to the server and is checked there as the user the function runs for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from epe.runner.worker.channel import CallRefused, call

from . import ds

__all__ = ["DataFrame", "ds", "grant", "revoke", "sync"]


def grant(name: str, typ: str = "datastore", user: str | None = None, *,
          group: str | None = None) -> None:
    """Let ``user`` (None: everyone), or the members of ``group``, read a datastore or
    run a script of yours."""
    _checked(call, "grant", {"name": name, "typ": typ, "user": user, "group": group})


def revoke(name: str, typ: str = "datastore", user: str | None = None, *,
           group: str | None = None) -> None:
    """Take back what ``grant`` gave."""
    _checked(call, "revoke", {"name": name, "typ": typ, "user": user, "group": group})


class DataFrame:
    """A read-only proxy for a table or query; ``pull()`` brings its rows as pandas.

    Pickled (in a datastore, or as a function's value) it travels as OML's proxies do:
    by its SQL, and comes back as a proxy in the Python client too.
    """

    def __init__(self, table: str | None = None, query: str | None = None,
                 columns: list[list[str]] | None = None) -> None:
        self._args = {"table": table, "query": query}
        self._columns = columns

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        table, query = self._args["table"], self._args["query"]
        return _proxy_from_state, ({"table": table, "columns": self._columns,
                                    "sql": query or f'SELECT * FROM "{table}"'},)

    def pull(self) -> pd.DataFrame:
        _header, data = _checked(call, "sync", self._args)
        with pa.ipc.open_stream(data) as reader:
            return reader.read_all().to_pandas()

    def __repr__(self) -> str:
        what = self._args["table"] or self._args["query"]
        return f"oml.DataFrame({what!r})"


def _proxy_from_state(state: dict[str, Any]) -> DataFrame:
    """A proxy pickled by the Python client or by a worker, as this worker's proxy."""
    if state.get("table"):
        return DataFrame(table=state["table"], columns=state.get("columns"))
    return DataFrame(query=state["sql"], columns=state.get("columns"))


def sync(schema: str | None = None, regex_match: bool = False, table: str | None = None,
         view: str | None = None, query: str | None = None) -> DataFrame:
    """A proxy for one table (or view) or one query, as the calling user sees it."""
    if schema is not None or regex_match:
        raise ValueError("schema and regex_match are not supported: each user sees their "
                         "own tables by plain name")
    if sum(x is not None for x in (table, view, query)) != 1:
        raise ValueError("give exactly one of table, view or query")
    return DataFrame(table=table or view, query=query)


def _checked(fn: Any, *args: Any) -> Any:
    """Server refusals raise ValueError, as OML4Py's do."""
    try:
        return fn(*args)
    except CallRefused as e:
        raise ValueError(str(e)) from None
