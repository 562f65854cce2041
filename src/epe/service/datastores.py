"""Datastores as a user sees them (OML4Py's ``oml.ds``; docs/api.md).

Shared by the REST routes and by the calls functions make through ``import
oml``: the same owner rules either way, and the same storage quota
(docs/operations.md#storage): a save that would cross it saves nothing. Listings
carry OML4Py's column names; grants go through ``epe.service.grants``.
"""

from __future__ import annotations

import re
from typing import Any

from epe.core.names import check_object_name, iso_date, normalize_user
from epe.errors import InvalidRequest, NotFound
from epe.service.limits import UserLimits
from epe.store import Store
from epe.store.datastores import DatastoreInfo, StoredObject

DS_TYPES = ("user", "private", "grantable", "all", "granted", "grant")


def check_name(name: str) -> str:
    return check_object_name(name, "datastore")


class Datastores:
    def __init__(self, store: Store, limits: UserLimits) -> None:
        self.store = store
        self.ds = store.datastores
        self.limits = limits

    def save(self, caller: str, name: str, objects: list[StoredObject], *, description: str = "",
             grantable: bool = False, overwrite: bool = False, append: bool = False) -> None:
        if not objects:
            raise InvalidRequest("objs must name at least one object to save")
        if overwrite and append:
            raise InvalidRequest("overwrite and append cannot both be true")
        self.ds.save(caller, check_name(name), objects, description=description,
                     grantable=grantable, overwrite=overwrite, append=append,
                     quota=self.limits.for_user(caller).storage)

    def load(self, caller: str, name: str, names: list[str] | None,
             owner: str | None) -> list[StoredObject]:
        info = self.info(caller, name, owner)
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
                "size": info.size, "date": iso_date(info.updated),
                "description": info.description}
        if dstype in ("all", "granted"):
            return [{**base, "owner": info.owner}]
        if dstype == "grant":
            return [{**base, "grantee": g} for g in self.ds.grantees(caller, info.name)]
        return [base]

    def describe(self, caller: str, name: str, owner: str | None) -> list[dict[str, Any]]:
        info = self.info(caller, name, owner)
        return [{"object_name": o.name, "class": o.class_name, "size": o.size,
                 "length": o.length, "row_count": o.row_count, "col_count": o.col_count}
                for o in self.ds.objects(info)]

    def info(self, caller: str, name: str, owner: str | None) -> DatastoreInfo:
        """The datastore ``caller`` may read; a forbidden one looks missing."""
        owner = self._owner(owner)
        info = self.ds.readable(caller, check_name(name), owner)
        if info is None:
            whose = f" of {owner}" if owner and owner != caller else ""
            raise NotFound(f"no datastore named {name}{whose} that you may read")
        return info

    def whole(self, caller: str, name: str,
              owner: str | None) -> tuple[DatastoreInfo, list[StoredObject]]:
        """The datastore and its objects' descriptions, from one snapshot."""
        found = self.ds.whole(self.info(caller, name, owner))
        if found is None:
            raise NotFound(f"no datastore named {name}")
        return found

    def visible(self, caller: str) -> list[DatastoreInfo]:
        """The caller's datastores, then those others granted to them."""
        return self.ds.matching(owner=caller) + self.ds.granted_to(caller)

    def delete(self, caller: str, name: str, *, objs: list[str] | None = None,
               regex: bool = False) -> list[str]:
        names = self.ds.names_matching(caller, name, regex) if regex else [check_name(name)]
        if not names:
            raise NotFound(f"no datastore matches {name!r}")
        for each in names:
            if self.ds.delete(caller, each, objs) is None:
                raise NotFound(f"no datastore named {each}")
        return names

    @staticmethod
    def _owner(owner: str | None) -> str | None:
        return None if owner is None else normalize_user(owner, check=False)
