"""``oml.ds``: datastores with OML4Py's signatures and semantics.

Objects are pickled here with cloudpickle, together with the Python and
library versions that made them; loading warns when those differ and says so
when unpickling fails.
"""

from __future__ import annotations

import platform
import sys
import warnings
import zlib
from typing import Any

import cloudpickle
import orjson
import pandas as pd

from epe.core.datastores import check_save
from epe.runner.worker.channel import CallRefused, call

_LIBRARIES = ("cloudpickle", "numpy", "pandas", "sklearn", "scipy")


def _versions(obj: Any, compressed: bool) -> str:
    modules = {*_LIBRARIES, type(obj).__module__.split(".")[0]}
    found = {m: str(getattr(sys.modules[m], "__version__", "")) for m in sorted(modules)
             if m in sys.modules and getattr(sys.modules[m], "__version__", None)}
    return orjson.dumps({"python": platform.python_version(), "libraries": found,
                         "compressed": compressed}).decode()


def _shape(obj: Any) -> tuple[int, int, int]:
    """(length, row_count, col_count) as OML4Py defines them for ``oml.ds.describe`` and
    the ALL_PYQ_DATASTORE_CONTENTS view: a list's or dict's length is len(obj), its
    columns len(obj) too; a DataFrame's length and rows are len(df), its columns
    len(df.columns); every other object counts 1, 1, 1."""
    if isinstance(obj, pd.DataFrame):
        return len(obj), len(obj), len(obj.columns)
    if isinstance(obj, list | dict):
        return len(obj), 1, len(obj)
    return 1, 1, 1


def _request(op: str, args: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
    try:
        return call(op, args, payload)
    except CallRefused as e:
        raise ValueError(str(e)) from None


def save(objs: dict[str, Any], name: str, description: str = " ",
         grantable: bool | None = None, overwrite: bool = False, append: bool = False,
         compression: bool = False) -> None:
    """Save the objects of ``objs`` (name -> object) in datastore ``name``."""
    check_save(objs, overwrite, append)
    metas, blobs = [], []
    for key, obj in objs.items():
        data = cloudpickle.dumps(obj)
        data = zlib.compress(data) if compression else data
        length, rows, cols = _shape(obj)
        metas.append({"name": str(key), "class_name": type(obj).__name__, "size": len(data),
                      "length": length, "row_count": rows, "col_count": cols,
                      "versions": _versions(obj, compression)})
        blobs.append(data)
    _request("ds.save", {"name": name, "description": description,
                         "grantable": bool(grantable), "overwrite": overwrite,
                         "append": append, "objects": metas}, b"".join(blobs))


def load(name: str, objs: list[str] | None = None, owner: str | None = None,
         to_globals: bool = True) -> list[str] | dict[str, Any]:
    """Load objects; into the caller's globals (returning their names) or as a dict."""
    header, data = _request("ds.load", {"name": name, "objs": objs, "owner": owner})
    loaded, offset = {}, 0
    for meta in header["objects"]:
        blob = data[offset:offset + meta["size"]]
        offset += meta["size"]
        loaded[meta["name"]] = _unpickle(meta["name"], blob, meta["versions"])
    if not to_globals:
        return loaded
    sys._getframe(1).f_globals.update(loaded)
    return list(loaded)


def _unpickle(name: str, blob: bytes, versions_json: str) -> Any:
    saved = orjson.loads(versions_json)
    now = orjson.loads(_versions(None, False))
    differ = {lib: (v, now["libraries"].get(lib)) for lib, v in saved["libraries"].items()
              if now["libraries"].get(lib) not in (None, v)}
    if saved["python"].rsplit(".", 1)[0] != now["python"].rsplit(".", 1)[0]:
        differ["python"] = (saved["python"], now["python"])
    if saved.get("compressed"):
        blob = zlib.decompress(blob)
    try:
        obj = cloudpickle.loads(blob)
    except Exception as e:
        said = "; ".join(f"{k} {a} then, {b} now" for k, (a, b) in differ.items())
        raise RuntimeError(f"object {name!r} could not be loaded: {type(e).__name__}: {e}"
                           + (f" (it was saved under other versions: {said})" if said
                              else "")) from None
    if differ:
        said = ", ".join(f"{k} {a} (now {b})" for k, (a, b) in differ.items())
        warnings.warn(f"object {name!r} was saved under other versions: {said}",
                      stacklevel=3)
    return obj


def dir(name: str | None = None, regex_match: bool = False,
        dstype: str = "user") -> pd.DataFrame:
    """Datastores as OML lists them: datastore_name, object_count, size, date,
    description; ``owner`` first for ``all`` and ``granted``; datastore_name and grantee
    for ``grant``. A missing description is None."""
    header, _ = _request("ds.dir", {"name": name, "regex_match": regex_match,
                                    "dstype": dstype})
    columns = ["datastore_name", "object_count", "size", "date", "description"]
    if dstype in ("all", "granted"):
        columns.insert(0, "owner")
    if dstype == "grant":
        columns = ["datastore_name", "grantee"]
    return listing(header["rows"], columns)


def listing(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame whose text columns keep None (not NaN) for what is missing,
    and whose ``date`` is a timestamp, as OML's listings show them."""
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object)
                          for c in columns}, columns=columns)
    for c in ("object_count", "size", "length", "row_count", "col_count"):
        if c in frame:
            frame[c] = frame[c].astype("int64")
    if "date" in frame:
        frame["date"] = pd.to_datetime(frame["date"], utc=True).dt.tz_localize(None)
    return frame


def describe(name: str, owner: str | None = None) -> pd.DataFrame:
    """The datastore's objects: object_name, class, size, length, row_count, col_count."""
    header, _ = _request("ds.describe", {"name": name, "owner": owner})
    return listing(header["rows"], ["object_name", "class", "size", "length", "row_count",
                                    "col_count"])


def delete(name: str, objs: list[str] | None = None, regex_match: bool = False) -> Any:
    """Delete a datastore (or some of its objects); returns what was deleted."""
    header, _ = _request("ds.delete", {"name": name, "objs": objs,
                                       "regex_match": regex_match})
    deleted = header["deleted"]
    return deleted[0] if len(deleted) == 1 and not regex_match else deleted
