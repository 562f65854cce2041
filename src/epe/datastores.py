"""Datastores and grants as a user sees them (docs/api.md#datastores; OML4Py's ``oml.ds``).

Shared by the REST routes and by the calls functions make through ``import
oml``: the same owner rules either way. Listings carry OML4Py's column names.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from epe.errors import Forbidden, InvalidRequest, NotFound
from epe.store import Store
from epe.store.datastores import DatastoreInfo, StoredObject
from epe.store.store import PUBLIC
from epe.users import normalize_name

_NAME = re.compile(r"[A-Za-z0-9_.$#-]{1,128}")
DS_TYPES = ("user", "private", "grantable", "all", "granted", "grant")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid datastore name {name!r}: use letters, digits, _ . $ # - "
                             "(at most 128)")
    return name


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


class Datastores:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.ds = store.datastores

    def save(self, caller: str, name: str, objects: list[StoredObject], description: str,
             grantable: bool, overwrite: bool, append: bool) -> None:
        if not objects:
            raise InvalidRequest("objs must name at least one object to save")
        self.ds.save(caller, check_name(name), objects, description, grantable, overwrite,
                     append)

    def load(self, caller: str, name: str, names: list[str] | None,
             owner: str | None) -> list[StoredObject]:
        info = self.ds.readable(caller, check_name(name), self._owner(owner))
        found = self.ds.objects(info, names, with_data=True)
        missing = sorted(set(names or []) - {o.name for o in found})
        if missing:
            raise NotFound(f"datastore {name} holds no object named {', '.join(missing)}")
        return found

    def dir(self, caller: str, name: str | None, regex: bool,
            dstype: str) -> list[dict[str, Any]]:
        if dstype not in DS_TYPES:
            raise InvalidRequest(f"dstype must be one of {', '.join(DS_TYPES)}")
        rows = []
        for info in self._of_type(caller, dstype):
            if name is not None and not (re.search(name, info.name) if regex
                                         else info.name == name):
                continue
            rows += self._rows(caller, info, dstype)
        return rows

    def _of_type(self, caller: str, dstype: str) -> list[DatastoreInfo]:
        own = self.ds.matching(owner=caller)
        if dstype == "granted":
            return self.ds.granted_to(caller)
        if dstype == "all":
            return own + self.ds.granted_to(caller)
        if dstype == "grantable":
            return [d for d in own if d.grantable]
        if dstype == "private":
            return [d for d in own if not self.ds.grantees(caller, d.name)]
        if dstype == "grant":
            return [d for d in own if self.ds.grantees(caller, d.name)]
        return own

    def _rows(self, caller: str, info: DatastoreInfo, dstype: str) -> list[dict[str, Any]]:
        base = {"datastore_name": info.name, "object_count": info.object_count,
                "size": info.size, "date": _date(info.updated),
                "description": info.description}
        if dstype in ("all", "granted"):
            return [{**base, "owner": info.owner}]
        if dstype == "grant":
            return [{**base, "grantee": g} for g in self.ds.grantees(caller, info.name)]
        return [base]

    def describe(self, caller: str, name: str, owner: str | None) -> list[dict[str, Any]]:
        info = self.ds.readable(caller, check_name(name), self._owner(owner))
        return [{"object_name": o.name, "class": o.class_name, "size": o.size,
                 "length": o.length, "row_count": o.row_count, "col_count": o.col_count}
                for o in self.ds.objects(info)]

    def info(self, caller: str, name: str, owner: str | None) -> DatastoreInfo:
        return self.ds.readable(caller, check_name(name), self._owner(owner))

    def delete(self, caller: str, name: str, objs: list[str] | None,
               regex: bool) -> list[str]:
        names = self.ds.names_matching(caller, name, regex) if regex else [check_name(name)]
        if not names:
            raise NotFound(f"no datastore matches {name!r}")
        for each in names:
            self.ds.delete(caller, each, objs)
        return names

    def grant(self, caller: str, name: str, typ: str, user: str | None) -> None:
        self._grant_target(caller, name, typ)
        self.store.grant(_object_type(typ), caller, name, self._grantee(user))

    def revoke(self, caller: str, name: str, typ: str, user: str | None) -> None:
        self._grant_target(caller, name, typ)
        if not self.store.revoke(_object_type(typ), caller, name, self._grantee(user)):
            raise NotFound(f"{typ} {name} is not granted to {user or PUBLIC}")

    def _grant_target(self, caller: str, name: str, typ: str) -> None:
        if _object_type(typ) == "pyqscript":
            if self.store.get_script(caller, name) is None:
                raise NotFound(f"you have no private script named {name}")
            return
        info = self.ds.find(caller, check_name(name))
        if info is None:
            raise NotFound(f"you have no datastore named {name}")
        if not info.grantable:
            raise Forbidden(f"datastore {name} was saved with grantable=False; save it with "
                            "grantable=True to share it")

    def _grantee(self, user: str | None) -> str | None:
        if user is None or user.upper() == PUBLIC:
            return None
        name = normalize_name(user, check=False)
        if self.store.get_user(name) is None:
            raise NotFound(f"no such user {name}")
        return name

    @staticmethod
    def _owner(owner: str | None) -> str | None:
        return None if owner is None else normalize_name(owner, check=False)


def _object_type(typ: str) -> Literal["datastore", "pyqscript"]:
    if typ not in ("datastore", "pyqscript"):
        raise InvalidRequest("typ must be 'datastore' or 'pyqscript'")
    return "datastore" if typ == "datastore" else "pyqscript"
