"""epe's Python client, shaped like OML4Py: ``from epe import oml`` (docs/client.md).

An OML4Py notebook ports by changing its import and its connect line::

    from epe import oml
    oml.connect("http://127.0.0.1:8080", "OMLUSER", password)

    IRIS = oml.sync(table="IRIS")
    mod = oml.table_apply(data=IRIS, func=build_lm_1)  # a fitted model comes back

What is here:

- ``connect``, ``isconnected``, ``disconnect``: one session per process; tokens are
  refreshed silently, and after the refresh chain ends the session logs in again.
- Data proxies (``DataFrame`` and its columns ``Float``, ``String``, ``Boolean``,
  ``Bytes``, ``Datetime``): ``sync``, ``create``, ``push``, ``drop``, ``dir``. A proxy
  is lazy: selections, filters, joins, statistics, ``crosstab``, ``split``... build SQL
  that runs in the database as the user (Ibis compiles it); rows come back on
  ``.pull()``, ``.head()`` shown, or a statistic.
- ``do_eval``, ``table_apply``, ``row_apply``, ``group_apply``, ``index_apply``:
  ``func`` is a function, a stored script's name, or a string holding a
  definition; keyword arguments may be any Python objects; values come back as
  the objects the function returned. ``graphics=True`` gives a ``DataImage``;
  ``oml_async_flag=True`` gives a ``Job``.
- ``script`` (create, dir, load, drop), ``ds`` (save, load, dir, describe,
  delete), ``grant`` and ``revoke``.
- ``models``: models as scoring endpoints (docs/models.md): ``models.deploy(clf,
  "iris")`` stores a fitted model and deploys it in one call; ``score``, ``dir``,
  ``endpoints``, ``schedule`` (batch scoring jobs) and the rest.

Errors are the server's own classes from ``epe.errors`` (``ScriptFailed``,
``NotFound``, ...), carrying its message, ``errorCode`` and traceback.
See docs/client.md.
"""

from __future__ import annotations

from types import SimpleNamespace

from epe.client import _datastores as ds
from epe.client import _graphics as graphics
from epe.client import _models as models
from epe.client import _scripts as script
from epe.client._algorithms import IN_DATABASE, automl
from epe.client._connection import Connection, connect_from, current, has_current, set_current
from epe.client._datastores import grant, revoke
from epe.client._embed import do_eval, group_apply, index_apply, row_apply, table_apply
from epe.client._frame import Boolean, Bytes, Datetime, Float, String
from epe.client._jobs import Job
from epe.client._proxy import (  # noqa: F401 -- _proxy_from_state: how proxies unpickle
    DataFrame,
    _proxy_from_state,
    create,
    dir,
    drop,
    push,
    sync,
)
from epe.client._results import DataImage
from epe.client._roles import check_role as _check_role

__all__ = [
    "Boolean",
    "Bytes",
    "DataFrame",
    "DataImage",
    "Datetime",
    "Float",
    "Job",
    "String",
    "automl",
    "connect",
    "create",
    "dir",
    "disconnect",
    "do_eval",
    "drop",
    "ds",
    "grant",
    "graphics",
    "group_apply",
    "index_apply",
    "isconnected",
    "models",
    "push",
    "revoke",
    "row_apply",
    "script",
    "sync",
    "table_apply",
]


globals().update(IN_DATABASE)  # oml.glm, oml.rf, ...: each says why epe has none

# OML's private ``oml.core`` holds one function its sample notebooks call; only that one.
core = SimpleNamespace(methods=SimpleNamespace(__checkRole=_check_role))


def connect(url: str | None = None, user: str | None = None,
            password: str | None = None) -> None:
    """Log in to the epe server at ``url`` as ``user``.

    Missing arguments come from ``EPE_URL``, ``EPE_USER`` and ``EPE_PASSWORD``. A
    session already open is closed once the new one is (as ``disconnect()`` does).
    """
    connection = connect_from(url, user, password)
    if has_current():
        disconnect()
    set_current(connection)


def isconnected() -> bool:
    """Whether ``connect`` succeeded and ``disconnect`` has not been called since."""
    return has_current()


def disconnect(cleanup: bool = True) -> None:
    """Close the session: drop the tables ``push`` made (unless ``cleanup=False``) and
    revoke the token."""
    if not has_current():
        return
    connection: Connection = current()
    if cleanup:
        from epe.client._proxy import drop_table

        for name in sorted(connection.temp_tables):
            try:
                drop_table(connection, name)
            except Exception:  # gone already; the session ends anyway
                connection.temp_tables.discard(name)
    connection.close()
    set_current(None)
