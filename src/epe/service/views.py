"""OML's PYQ views as Arrow tables, each computed for one caller (docs/sql.md).

Columns and their order as OML4Py's views have them; rows are what the caller may
see through the REST and Python APIs (``epe.service.scripts``, ``Datastores``): the
same owner and grant rules, read from the metadata store, never from the pickles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import pyarrow as pa

from epe.errors import InvalidRequest
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.datastores import DatastoreInfo, StoredObject

_DATE = pa.timestamp("s")  # Oracle's DATE: no time zone; ours are UTC


def _date(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).replace(tzinfo=None)


_SCRIPT_FIELDS = [("NAME", pa.string()), ("SCRIPT", pa.string()),
                  ("DESCRIPTION", pa.string()), ("DATE", _DATE)]
_DS_FIELDS = [("DSNAME", pa.string()), ("NOBJ", pa.int64()), ("DSSIZE", pa.int64()),
              ("CDATE", _DATE), ("DESCRIPTION", pa.string()), ("GRANTABLE", pa.string())]
_CONTENT_FIELDS = [("DSOWNER", pa.string()), ("DSNAME", pa.string()),
                   ("OBJNAME", pa.string()), ("CLASS", pa.string()),
                   ("OBJSIZE", pa.int64()), ("LENGTH", pa.int64()), ("NROW", pa.int64()),
                   ("NCOL", pa.int64())]


def _table(fields: list[tuple[str, pa.DataType]], rows: Sequence[Sequence[object]]) -> pa.Table:
    schema = pa.schema(fields)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    return pa.table([pa.array(list(c), type=t) for c, (_, t) in
                     zip(columns, fields, strict=True)], schema=schema)


def user_scripts(services: Services, caller: Caller) -> pa.Table:
    """USER_PYQ_SCRIPTS(NAME, SCRIPT, DESCRIPTION, DATE): the caller's own scripts."""
    rows = [(s.name, s.source, s.description, _date(s.updated))
            for s in services.store.visible_scripts(caller.name) if s.owner == caller.name]
    return _table(_SCRIPT_FIELDS, rows)


def all_scripts(services: Services, caller: Caller) -> pa.Table:
    """ALL_PYQ_SCRIPTS(OWNER, NAME, SCRIPT, DESCRIPTION, DATE): every script the caller
    may run: their own, global ones (owner PYQSYS), and those granted to them."""
    rows = [(s.owner, s.name, s.source, s.description, _date(s.updated))
            for s in services.store.visible_scripts(caller.name)]
    return _table([("OWNER", pa.string()), *_SCRIPT_FIELDS], rows)


def _ds_row(info: DatastoreInfo) -> tuple[object, ...]:
    return (info.name, info.object_count, info.size, _date(info.created), info.description,
            "T" if info.grantable else "F")


def user_datastores(services: Services, caller: Caller) -> pa.Table:
    """USER_PYQ_DATASTORES(DSNAME, NOBJ, DSSIZE, CDATE, DESCRIPTION, GRANTABLE)."""
    own = services.datastores.ds.matching(owner=caller.name)
    return _table(_DS_FIELDS, [_ds_row(d) for d in own])


def all_datastores(services: Services, caller: Caller) -> pa.Table:
    """ALL_PYQ_DATASTORES(DSOWNER, ...): the caller's, then those granted to them."""
    rows = [(d.owner, *_ds_row(d)) for d in services.datastores.visible(caller.name)]
    return _table([("DSOWNER", pa.string()), *_DS_FIELDS], rows)


def _shape(o: StoredObject) -> tuple[int, int, int]:
    """LENGTH, NROW, NCOL as OML defines them (1 for an object that is not a list, dict
    or DataFrame); the worker measures them as it saves (``oml.ds.save``)."""
    return (1 if o.length is None else o.length, 1 if o.row_count is None else o.row_count,
            1 if o.col_count is None else o.col_count)


def datastore_contents(services: Services, caller: Caller) -> pa.Table:
    """ALL_PYQ_DATASTORE_CONTENTS(DSOWNER, DSNAME, OBJNAME, CLASS, OBJSIZE, LENGTH, NROW,
    NCOL): one row per object of every datastore the caller may read."""
    rows = []
    for info in services.datastores.visible(caller.name):
        found = services.datastores.ds.whole(info)
        if found is None:  # deleted meanwhile
            continue
        for o in found[1]:
            rows.append((info.owner, info.name, o.name, o.class_name, o.size, *_shape(o)))
    return _table(_CONTENT_FIELDS, rows)


VIEWS: dict[str, Callable[[Services, Caller], pa.Table]] = {
    "USER_PYQ_SCRIPTS": user_scripts,
    "ALL_PYQ_SCRIPTS": all_scripts,
    "USER_PYQ_DATASTORES": user_datastores,
    "ALL_PYQ_DATASTORES": all_datastores,
    "ALL_PYQ_DATASTORE_CONTENTS": datastore_contents,
}


def view(services: Services, caller: Caller, name: str) -> pa.Table:
    """One view's rows as ``caller`` sees them (blocking: reads the metadata store)."""
    compute = VIEWS.get(name.upper())
    if compute is None:
        raise InvalidRequest(f"no view {name}")
    return compute(services, caller)
