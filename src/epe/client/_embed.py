"""The five embedded-execution functions, and the run request body (docs/client.md).

Keyword arguments go pickled (``pickledParameters``), so any Python value can be
passed; the ``oml_*`` control arguments go where the REST API reads them. Results
are asked for as pickles (``resultFormat: pickle``) and come back as the Python
objects the function returned.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pandas as pd

from epe.client._connection import Connection, current, segment
from epe.client._functions import Shipped, pickled_parameters, ship
from epe.client._jobs import Job
from epe.client._proxy import DataFrame, columns_of, push_frame
from epe.client._results import DataImage, decode
from epe.core.operations import Kind, operation

# Control arguments that become fields of the request body; the others (oml_input_type,
# oml_na_omit, ...) travel inside "parameters", where the server reads them.
_BODY_CONTROLS = {"oml_async_flag": "asyncFlag", "oml_graphics_flag": "graphicsFlag",
                  "oml_parallel_flag": "parallelFlag", "oml_service_level": "service",
                  "oml_env_name": "envName", "oml_timeout": "timeout"}


def run_path(kind: str, shipped: Shipped) -> str:
    """``/{op}``, ``/{op}/{name}`` or ``/{op}/{name}/{owner}`` (docs/api.md)."""
    path = "/" + operation(kind).path
    if shipped.name is not None:
        path += "/" + segment(shipped.name)
        if shipped.owner is not None:
            path += "/" + segment(shipped.owner)
    return path


def parallel_fields(parallel: Any) -> dict[str, Any]:
    """OML4Py's ``parallel``: an int >= 1 is that degree, True the service level's,
    None/False/0 none."""
    if parallel is None or parallel is False or parallel == 0:
        return {}
    if parallel is True:
        return {"parallelFlag": True}
    if isinstance(parallel, int) and parallel > 0:
        return {"parallelFlag": True, "parallel": parallel}
    raise ValueError(f"parallel must be a positive int, True, False or None; got {parallel!r}")


def run_body(shipped: Shipped, fields: dict[str, Any], parameters: dict[str, Any] | None = None,
             pickled: str | None = None, result_format: str = "json") -> dict[str, Any]:
    """A run request's body, for the client and the CLI alike: the operation's and the
    control fields (``None`` left out), ``parameters`` as the JSON string OML wants, the
    inline source and the pickled keyword arguments."""
    body: dict[str, Any] = {**fields, "resultFormat": result_format}
    if parameters:
        body["parameters"] = orjson.dumps(parameters).decode()
    if shipped.script is not None:
        body["script"] = shipped.script
    if pickled is not None:
        body["pickledParameters"] = pickled
    return {k: v for k, v in body.items() if v is not None}


def request_body(shipped: Shipped, kwargs: dict[str, Any], graphics: bool,
                 result_format: str = "pickle") -> dict[str, Any]:
    """The body fields every operation shares, from ``func`` and the keyword arguments."""
    controls = {k: v for k, v in kwargs.items() if k.startswith("oml_")}
    user_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("oml_")}
    fields: dict[str, Any] = {}
    for key, field in _BODY_CONTROLS.items():
        value = controls.pop(key, None)
        if value is not None:
            fields[field] = value.upper() if field == "service" and isinstance(value, str) \
                else value
    if graphics:
        fields["graphicsFlag"] = True
    return run_body(shipped, fields, controls, pickled_parameters(user_kwargs, shipped),
                    result_format)


def submit(connection: Connection, kind: Kind, func: Any, func_owner: str | None,
           graphics: bool, kwargs: dict[str, Any], fields: dict[str, Any],
           keep: Any = None) -> Any:
    """Send one run request; the decoded value, or a ``Job`` for an async run.

    ``func_value`` (OML's prototype of the result) is not an argument of the function:
    it shapes the value into one table (``results.as_table``).
    """
    prototype = kwargs.pop("func_value", None)
    shape = None if prototype is None else partial(as_table, connection, prototype)
    shipped = ship(func, func_owner)
    body = request_body(shipped, kwargs, graphics)
    body.update(fields)
    if "input" in body and keep is not None and not keep.native:
        body.pop("dialect", None)
    elif "input" in body:
        body["dialect"] = "native"  # the proxy's SQL is compiled for the backend
    graphics = bool(body.get("graphicsFlag"))
    r = connection.request("POST", run_path(kind, shipped), json=body)
    if r.status_code == 201:
        job_id = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        return Job(job_id, connection, kind, graphics, pickled=True, keep=keep, shape=shape)
    value = decode(kind, r.json()["result"], graphics)
    return value if shape is None else shape(value)


def as_table(connection: Connection, prototype: Any, value: Any) -> DataFrame:
    """The value as one table with ``func_value``'s columns, kept in the database as a
    pushed table (OML returns an ``oml.DataFrame``): every DataFrame of a row-apply's
    chunks, a group-apply's groups (in group order) or an index-apply's invocations,
    one after the other; their columns named and typed as the prototype's."""
    if not isinstance(prototype, pd.DataFrame):
        raise TypeError("func_value must be a pandas DataFrame: the prototype of the "
                        "result's columns")
    parts = list(value.values()) if isinstance(value, dict) else \
        value if isinstance(value, list) else [value]
    parts = [p.dat if isinstance(p, DataImage) else p for p in parts]
    frames = []
    for part in parts:
        if isinstance(part, pd.Series):
            part = part.to_frame().T
        if not isinstance(part, pd.DataFrame):
            raise TypeError(f"with func_value the function must return a DataFrame, not "
                            f"{type(part).__name__}")
        if len(part.columns) != len(prototype.columns):
            raise ValueError(f"the function returned {len(part.columns)} columns where "
                             f"func_value has {len(prototype.columns)} "
                             f"({', '.join(map(str, prototype.columns))})")
        frames.append(part.set_axis(prototype.columns, axis=1))
    table = pd.concat(frames, ignore_index=True) if frames else prototype.iloc[:0]
    for name, dtype in prototype.dtypes.items():
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            table[name] = pd.to_numeric(table[name])
        elif pd.api.types.is_bool_dtype(dtype):
            table[name] = table[name].astype(bool)
    return push_frame(connection, table)


def _input(data: Any) -> DataFrame:
    if not isinstance(data, DataFrame):
        raise TypeError(f"data must be an oml.DataFrame (from oml.sync, oml.create or oml.push), "
                        f"not {type(data).__name__}")
    return data


def do_eval(func: Any, func_owner: str | None = None, graphics: bool = False,
            **kwargs: Any) -> Any:
    """Run ``func(**kwargs)`` on the server and return its value.

    ``func`` is a function, a stored script's name, or a string holding a function
    definition; ``func_owner`` names the owner of a stored script. Keyword arguments
    may be any Python objects; ``oml_*`` ones are control arguments (e.g.
    ``oml_async_flag=True`` returns a ``Job``). With ``graphics=True`` the answer is
    a ``DataImage`` (``.dat`` the value, ``.img`` the PNGs).
    """
    return submit(current(), "do_eval", func, func_owner, graphics, kwargs, {})


def table_apply(data: DataFrame, func: Any, func_owner: str | None = None,
                graphics: bool = False, **kwargs: Any) -> Any:
    """Run ``func(df, **kwargs)`` once on all the rows of the proxy ``data``."""
    data = _input(data)
    return submit(data._connection, "table_apply", func, func_owner, graphics, kwargs,
                  {"input": data.sql}, keep=data)


def row_apply(data: DataFrame, func: Any, func_owner: str | None = None, rows: int = 1,
              parallel: Any = None, graphics: bool = False, **kwargs: Any) -> Any:
    """Run ``func(chunk, **kwargs)`` on each chunk of ``rows`` rows of ``data``.

    When every chunk returns a DataFrame the answer is one DataFrame, the chunks'
    rows in order; otherwise a list with one value per chunk.
    """
    data = _input(data)
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int; got {rows!r}")
    return submit(data._connection, "row_apply", func, func_owner, graphics, kwargs,
                  {"input": data.sql, "rows": rows, **parallel_fields(parallel)}, keep=data)


def group_apply(data: DataFrame, index: Any, func: Any, func_owner: str | None = None,
                parallel: Any = None, orderby: Any = None, graphics: bool = False,
                **kwargs: Any) -> Any:
    """Run ``func(group, **kwargs)`` once per group of the ``index`` columns of ``data``;
    a dict keyed by group value (several columns: the values joined with ``_``).

    ``index`` and ``orderby`` are proxies of columns (``oml.DataFrame(IRIS['SPECIES'])``),
    column names, or lists of names.
    """
    data = _input(data)
    fields: dict[str, Any] = {"input": data.sql,
                              "groupBy": ",".join(columns_of(index, "index")),
                              **parallel_fields(parallel)}
    if orderby is not None:
        fields["orderBy"] = ",".join(columns_of(orderby, "orderby"))
    return submit(data._connection, "group_apply", func, func_owner, graphics, kwargs, fields,
                  keep=data)


def index_apply(times: int, func: Any, func_owner: str | None = None, parallel: Any = None,
                graphics: bool = False, **kwargs: Any) -> Any:
    """Run ``func(i, **kwargs)`` for i = 1..times; a list of the values, in order."""
    if not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be a positive int; got {times!r}")
    return submit(current(), "index_apply", func, func_owner, graphics, kwargs,
                  {"times": times, **parallel_fields(parallel)})
