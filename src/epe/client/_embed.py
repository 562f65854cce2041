"""The five embedded-execution functions (docs/client.md#running-functions).

Keyword arguments go pickled (``pickledParameters``), so any Python value can be
passed; the ``oml_*`` control arguments go where the REST API reads them. Results
are asked for as pickles (``resultFormat: pickle``) and come back as the Python
objects the function returned.
"""

from __future__ import annotations

from typing import Any

import orjson

from epe.client._connection import Connection, current, segment
from epe.client._functions import Shipped, pickled_parameters, ship
from epe.client._jobs import Job
from epe.client._proxy import DataFrame, columns_of
from epe.client._results import Kind, decode

# Control arguments that become fields of the request body; the others (oml_input_type,
# oml_na_omit, ...) travel inside "parameters", where the server reads them.
_BODY_CONTROLS = {"oml_async_flag": "asyncFlag", "oml_graphics_flag": "graphicsFlag",
                  "oml_parallel_flag": "parallelFlag", "oml_service_level": "service",
                  "oml_env_name": "envName", "oml_timeout": "timeout"}


def run_path(kind: str, shipped: Shipped) -> str:
    """``/{op}``, ``/{op}/{name}`` or ``/{op}/{name}/{owner}`` (docs/api.md#running-functions)."""
    path = "/" + kind.replace("_", "-")
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


def request_body(shipped: Shipped, kwargs: dict[str, Any], graphics: bool,
                 result_format: str = "pickle") -> dict[str, Any]:
    """The body fields every operation shares, from ``func`` and the keyword arguments."""
    controls = {k: v for k, v in kwargs.items() if k.startswith("oml_")}
    user_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("oml_")}
    body: dict[str, Any] = {"resultFormat": result_format}
    for key, field in _BODY_CONTROLS.items():
        if key in controls and controls[key] is not None:
            value = controls.pop(key)
            body[field] = value.upper() if field == "service" and isinstance(value, str) \
                else value
        controls.pop(key, None)
    if graphics:
        body["graphicsFlag"] = True
    if controls:
        body["parameters"] = orjson.dumps(controls).decode()
    if shipped.script is not None:
        body["script"] = shipped.script
    pickled = pickled_parameters(user_kwargs, shipped)
    if pickled is not None:
        body["pickledParameters"] = pickled
    return body


def submit(connection: Connection, kind: Kind, func: Any, func_owner: str | None,
           graphics: bool, kwargs: dict[str, Any], fields: dict[str, Any],
           keep: Any = None) -> Any:
    """Send one run request; the decoded value, or a ``Job`` for an async run."""
    shipped = ship(func, func_owner)
    body = request_body(shipped, kwargs, graphics)
    body.update(fields)
    graphics = bool(body.get("graphicsFlag"))
    r = connection.request("POST", run_path(kind, shipped), json=body)
    if r.status_code == 201:
        job_id = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        return Job(job_id, connection, kind, graphics, pickled=True, keep=keep)
    return decode(kind, r.json()["result"], graphics)


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
