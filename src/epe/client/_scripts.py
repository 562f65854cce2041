"""``oml.script``: the script repository (docs/api.md#scripts) with OML4Py's signatures."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from epe.client._connection import Connection, current, segment
from epe.client._functions import stored_source
from epe.errors import NotFound

__all__ = ["Script", "create", "dir", "drop", "load"]

GLOBAL_OWNER = "PYQSYS"
SCTYPES = ("user", "global", "granted", "grant", "all")


class Source(str):
    """A script's source text; ``read()`` gives it too (OML's notebooks use both)."""

    def read(self) -> str:
        return str(self)


class Script:
    """A stored script, as ``oml.script.load`` returns it.

    Pass it as ``func`` to run it by name on the server; call it to run its source
    here, in this process.
    """

    def __init__(self, name: str, owner: str, source: str, description: str = "",
                 date: str | None = None, is_global: bool = False) -> None:
        self.name = name
        self.owner = owner
        self.source = source
        self.description = description
        self.date = date
        self.is_global = is_global
        self.__epe_script__ = (name, owner)

    def __repr__(self) -> str:
        return f"<oml script {self.name} of {self.owner}>"

    def __str__(self) -> str:
        return self.source

    def get_source(self) -> Source:
        """The script's source: a string that also ``read()``s, as OML's does."""
        return Source(self.source)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the script's entry point locally."""
        from epe.core.scripts import parse_script, pick_entry

        namespace: dict[str, Any] = {"__name__": f"oml_script_{self.name}"}
        candidates = parse_script(self.source)
        exec(compile(self.source, f"<script {self.name}>", "exec"), namespace)
        return pick_entry(candidates, namespace)(*args, **kwargs)


def post_script(connection: Connection, name: str, source: str, is_global: bool = False,
                overwrite: bool = False, description: str = "") -> dict[str, Any]:
    """``POST /scripts``; the script as stored."""
    result: dict[str, Any] = connection.post_json(
        "/scripts", {"name": name, "script": source, "isGlobal": bool(is_global),
                     "overwrite": bool(overwrite), "description": description})
    return result


def create(name: str, func: Any, is_global: bool = False, overwrite: bool = False,
           description: str = "") -> None:
    """Store ``func`` (a function, or a string holding a function definition) as script
    ``name``: private unless ``is_global``; an existing one is replaced only with
    ``overwrite=True``.

    A function whose source cannot be stored on its own (a lambda, a closure, one
    using names of its session) is stored as a cloudpickle that the worker opens.
    """
    post_script(current(), name, stored_source(func), is_global, overwrite, description)


def listing(connection: Connection) -> list[dict[str, Any]]:
    """Every script the caller may run (``GET /scripts``)."""
    scripts: list[dict[str, Any]] = connection.get_json("/scripts")
    return scripts


def fetch(connection: Connection, name: str, owner: str | None = None) -> dict[str, Any]:
    """``GET /scripts/{name}[/{owner}]``: the script with its source."""
    path = f"/scripts/{segment(name)}" + (f"/{segment(owner)}" if owner else "")
    script: dict[str, Any] = connection.get_json(path)
    return script


def _of_type(script: dict[str, Any], sctype: str, user: str) -> bool:
    if sctype == "user":
        return bool(script["owner"] == user)
    if sctype == "global":
        return bool(script.get("isGlobal"))
    if sctype == "granted":
        return script["owner"] not in (user, GLOBAL_OWNER)
    if sctype == "grant":
        return bool(script.get("grantees"))
    return True


def dir(name: str | None = None, regex_match: bool = False, sctype: str = "user") -> pd.DataFrame:
    """Scripts as OML lists them: name, script, description, date (``owner`` first for
    ``all`` and ``granted``); name and grantee for ``grant``. A missing description is
    None.

    ``sctype``: ``user`` (your private scripts), ``global`` (global scripts),
    ``granted`` (others' scripts granted to you), ``grant`` (your scripts you granted,
    one row per grantee), ``all`` (every script you may run). ``name`` filters by
    name, or by regular expression with ``regex_match``.
    """
    if sctype not in SCTYPES:
        raise ValueError(f"sctype must be one of {', '.join(SCTYPES)}")
    connection = current()
    chosen = []
    for s in listing(connection):
        if not _of_type(s, sctype, connection.user):
            continue
        if name is not None and not (re.search(name, s["name"]) if regex_match
                                     else s["name"] == name):
            continue
        chosen.append(s)
    if sctype == "grant":
        rows = [{"name": s["name"], "grantee": g} for s in chosen for g in s["grantees"]]
        return _frame(rows, ["name", "grantee"])
    rows = [{"owner": s["owner"], "name": s["name"],
             "script": fetch(connection, s["name"], s["owner"])["script"],
             "description": s.get("description") or None, "date": s.get("date")}
            for s in chosen]
    columns = ["name", "script", "description", "date"]
    if sctype in ("all", "granted"):
        columns.insert(0, "owner")
    return _frame(rows, columns)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Text columns keep None for what is missing; ``date`` is a timestamp."""
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object)
                          for c in columns}, columns=columns)
    if "date" in frame:
        frame["date"] = pd.to_datetime(frame["date"], utc=True).dt.tz_localize(None)
    return frame


def load(name: str, owner: str | None = None) -> Script:
    """The script ``name`` (yours first, then a global one, unless ``owner`` is given)."""
    info = fetch(current(), name, owner)
    return Script(info["name"], info["owner"], info["script"], info.get("description", ""),
                  info.get("date"), bool(info.get("isGlobal")))


def drop(name: str, is_global: bool = False, silent: bool = False) -> None:
    """Delete script ``name`` (the global one with ``is_global=True``); a missing
    script is an error unless ``silent``."""
    try:
        current().delete(f"/scripts/{segment(name)}",
                         params={"isGlobal": "true"} if is_global else None)
    except NotFound:
        if not silent:
            raise
