"""``oml.ds`` from the client, and ``oml.grant``/``oml.revoke`` (docs/client.md).

The REST API has no routes that save or load datastore objects (docs/api.md#datastores:
it lists, describes and deletes them), and the server never unpickles. So these
functions run the worker's own ``oml.ds`` through do-eval: the objects travel
pickled in ``pickledParameters`` and come back as a pickled result, and the
worker's ``oml.ds`` gives exactly the semantics functions see. A refusal by the
server comes back by its error class and is raised here as that class.

``oml.grant``/``oml.revoke`` use the REST grant routes of datastores and scripts.
"""

from __future__ import annotations

import base64
import sys
import warnings
from typing import Any

import pandas as pd

from epe.client._connection import Connection, current, segment
from epe.client._errors import error_from_refusal
from epe.client._functions import dumps
from epe.client._proxy import keep_tables
from epe.client._results import unpickle
from epe.core.datastores import check_save
from epe.errors import NotFound

__all__ = ["delete", "describe", "dir", "load", "save"]

# Run in a worker, where ``oml`` is the worker's module (src/epe/runner/userlib/oml).
# Its refusals are ValueErrors raised from the channel's CallRefused, which names the
# server's error class: that name is sent back instead of a failure.
WORKER_SCRIPT = '''\
def _epe_client_datastore(op, args):
    """oml.ds for epe's Python client: call it here, report a refusal by its class."""
    import oml

    try:
        return {"value": getattr(oml.ds, op)(**args)}
    except ValueError as e:
        refused = e.__context__
        if type(refused).__name__ != "CallRefused":
            raise
        return {"refused": getattr(refused, "kind", "EpeError"), "message": str(refused)}
'''


def call(connection: Connection, op: str, args: dict[str, Any]) -> Any:
    """``oml.ds.<op>(**args)`` in a worker, acting as the connected user."""
    pickled = base64.b64encode(dumps({"op": op, "args": args})).decode("ascii")
    r = connection.request("POST", "/do-eval", json={
        "script": WORKER_SCRIPT, "pickledParameters": pickled, "resultFormat": "pickle"})
    answer = unpickle(r.json()["result"])
    if "refused" in answer:
        raise error_from_refusal(str(answer["refused"]), str(answer["message"]))
    return answer["value"]


def save(objs: dict[str, Any], name: str, description: str = " ",
         grantable: bool | None = None, overwrite: bool = False, append: bool = False,
         compression: bool = False) -> None:
    """Save the objects of ``objs`` (name -> object) in datastore ``name``."""
    check_save(objs, overwrite, append)
    keep_tables(objs)  # a pushed table a saved proxy reads lives on, as in OML
    call(current(), "save", {"objs": objs, "name": name, "description": description,
                             "grantable": grantable, "overwrite": overwrite, "append": append,
                             "compression": compression})


def load(name: str, objs: list[str] | None = None, owner: str | None = None,
         to_globals: bool = True) -> list[str] | dict[str, Any]:
    """Load the objects of datastore ``name`` (or only ``objs``); into the caller's
    globals, returning their names, or with ``to_globals=False`` as a dict."""
    loaded: dict[str, Any] = call(current(), "load", {"name": name, "objs": objs,
                                                      "owner": owner, "to_globals": False})
    if not to_globals:
        return loaded
    sys._getframe(1).f_globals.update(loaded)
    return list(loaded)


def dir(name: str | None = None, regex_match: bool = False,
        dstype: str = "user") -> pd.DataFrame:
    """Datastores: datastore_name, object_count, size, date, description (+owner for
    ``all``/``granted``, +grantee for ``grant``)."""
    listing: pd.DataFrame = call(current(), "dir", {"name": name, "regex_match": regex_match,
                                                    "dstype": dstype})
    return listing


def describe(name: str, owner: str | None = None) -> pd.DataFrame:
    """The datastore's objects: object_name, class, size, length, row_count, col_count."""
    objects: pd.DataFrame = call(current(), "describe", {"name": name, "owner": owner})
    return objects


def delete(name: str, objs: list[str] | None = None, regex_match: bool = False) -> Any:
    """Delete a datastore (or only some of its objects); returns what was deleted."""
    return call(current(), "delete", {"name": name, "objs": objs,
                                      "regex_match": regex_match})


_GRANT_ROOTS = {"datastore": "/datastores", "pyqscript": "/scripts"}


def _grant_root(typ: str) -> str:
    if typ not in _GRANT_ROOTS:
        raise ValueError("typ must be 'datastore' or 'pyqscript'")
    return _GRANT_ROOTS[typ]


def grant(name: str, typ: str = "datastore", user: str | None = None, *,
          group: str | None = None) -> None:
    """Let ``user`` (None: everyone), or the members of ``group``, read your datastore
    ``name`` (``typ='datastore'``) or run your script ``name`` (``typ='pyqscript'``)."""
    body = {"group": group} if group is not None else {"user": user}
    current().post_json(f"{_grant_root(typ)}/{segment(name)}/grants", body)


def revoke(name: str, typ: str = "datastore", user: str | None = None, *,
           group: str | None = None) -> None:
    """Take back what ``grant`` gave ``user`` (None: everyone) or ``group``. Revoking
    what was not granted is a ``UserWarning``, as in OML."""
    who = f"group/{segment(group)}" if group is not None else segment(user or "PUBLIC")
    try:
        current().delete(f"{_grant_root(typ)}/{segment(name)}/grants/{who}")
    except NotFound as e:
        if "not granted" not in e.message:
            raise
        warnings.warn(e.message, UserWarning, stacklevel=2)
