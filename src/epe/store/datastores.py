"""Datastores: named sets of pickled objects, one transaction per change.

A save writes the datastore's row and all its objects in one transaction that
holds the datastore (SQLite's IMMEDIATE lock, PostgreSQL's row lock): an
overwrite is seen whole or not at all, and parallel appends queue instead of
losing each other's objects. The pickles are opaque bytes here; only workers
unpickle them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update

from epe.errors import Conflict
from epe.store import schema
from epe.store.engine import snapshot, upsert, writing
from epe.store.grants import GrantStore, drop_object_grants, matching
from epe.store.storage import check_quota, lock_owner, stored

_DS, _OBJ, _G = schema.datastores, schema.datastore_objects, schema.grants


@dataclass(frozen=True)
class StoredObject:
    name: str
    class_name: str
    size: int
    length: int | None
    row_count: int | None
    col_count: int | None
    versions: str
    data: bytes = b""


@dataclass(frozen=True)
class DatastoreInfo:
    id: int
    owner: str
    name: str
    description: str
    grantable: bool
    created: float
    updated: float
    object_count: int
    size: int


def _matches(name: str, pattern: str | None, regex: bool) -> bool:
    if pattern is None:
        return True
    return re.search(pattern, name) is not None if regex else name == pattern


class DatastoreStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._grants = GrantStore(engine)

    def save(self, owner: str, name: str, objects: list[StoredObject], *, description: str = "",
             grantable: bool = False, overwrite: bool = False, append: bool = False,
             quota: int | None = None) -> None:
        """Create, overwrite or append to a datastore; Conflict where it exists and
        neither is asked, or an appended object's name is taken; StorageQuotaExceeded
        (nothing saved) where it would take the owner's storage past ``quota``.

        The row is inserted if missing (``ON CONFLICT DO NOTHING``) or else locked
        (``FOR UPDATE``) before it is changed: concurrent saves of one datastore
        queue on it, on PostgreSQL as on SQLite, and none is lost.
        """
        now = time.time()
        with writing(self.engine) as conn:
            if quota is not None:
                lock_owner(conn, owner)
                used = stored(conn, owner).total
            ds_id: int | None = None
            while ds_id is None:  # again only if it was deleted between the two statements
                ds_id = conn.execute(upsert(conn, _DS).values(
                    owner=owner, name=name, description=description, grantable=grantable,
                    created=now, updated=now).on_conflict_do_nothing(
                        index_elements=[_DS.c.owner, _DS.c.name]).returning(_DS.c.id)).scalar()
                if ds_id is None:
                    ds_id = self._change(conn, owner, name, objects, description=description,
                                         grantable=grantable, overwrite=overwrite,
                                         append=append, now=now)
            conn.execute(insert(_OBJ), [{"datastore_id": ds_id, **vars(o)} for o in objects])
            if quota is not None:
                check_quota(conn, owner, what=f"saving datastore {name}",
                            size=sum(o.size for o in objects), used=used, quota=quota)

    def _change(self, conn: Any, owner: str, name: str, objects: list[StoredObject], *,
                description: str, grantable: bool, overwrite: bool, append: bool,
                now: float) -> int | None:
        """The existing datastore's id, locked, and overwritten or ready for appending;
        None if it is gone."""
        if not (overwrite or append):
            raise Conflict(f"datastore {name} already exists; use overwrite=True or "
                           "append=True")
        ds_id: int | None = conn.execute(select(_DS.c.id).where(
            and_(_DS.c.owner == owner, _DS.c.name == name)).with_for_update()).scalar()
        if ds_id is None:
            return None
        changes: dict[str, Any] = {"updated": now}
        if overwrite:
            changes |= {"description": description, "grantable": grantable}
            conn.execute(delete(_OBJ).where(_OBJ.c.datastore_id == ds_id))
        else:
            self._refuse_duplicates(conn, ds_id, name, objects)
        conn.execute(update(_DS).where(_DS.c.id == ds_id).values(**changes))
        return ds_id

    @staticmethod
    def _refuse_duplicates(conn: Any, ds_id: int, name: str,
                           objects: list[StoredObject]) -> None:
        names = [o.name for o in objects]
        clash = conn.execute(select(_OBJ.c.name).where(and_(
            _OBJ.c.datastore_id == ds_id, _OBJ.c.name.in_(names)))).scalars().all()
        if clash:
            raise Conflict(f"datastore {name} already holds {', '.join(sorted(clash))}; "
                           "append adds new objects only")

    def find(self, owner: str, name: str) -> DatastoreInfo | None:
        found = self.matching(owner=owner, pattern=name)
        return found[0] if found else None

    def readable(self, caller: str, name: str, owner: str | None) -> DatastoreInfo | None:
        """The datastore ``caller`` may read: their own, or one granted to them."""
        info = self.find(owner or caller, name)
        if info is None or (info.owner != caller and
                            not self._grants.is_granted("datastore", info.owner, info.name,
                                                        caller)):
            return None
        return info

    def matching(self, owner: str | None = None, pattern: str | None = None, regex: bool = False,
             ids: list[int] | None = None) -> list[DatastoreInfo]:
        query = select(_DS)
        if owner is not None:
            query = query.where(_DS.c.owner == owner)
        if ids is not None:
            query = query.where(_DS.c.id.in_(ids))
        with snapshot(self.engine) as conn:
            rows = [r for r in conn.execute(query.order_by(_DS.c.owner, _DS.c.name))
                    if _matches(r.name, pattern, regex)]
            return [self._info(conn, r) for r in rows]

    def granted_to(self, user: str) -> list[DatastoreInfo]:
        """Other users' datastores that ``user`` may read."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(_DS.c.id).join(
                _G, matching("datastore", _DS.c.owner, _DS.c.name, user)).where(
                    _DS.c.owner != user)).scalars().all()
        return self.matching(ids=list(set(ids)))

    def grantees(self, owner: str, name: str) -> list[str]:
        return self._grants.grantees("datastore", owner).get(name, [])

    @staticmethod
    def _info(conn: Any, row: Any) -> DatastoreInfo:
        count, size = conn.execute(select(
            func.count(), func.sum(_OBJ.c.size)).where(
                _OBJ.c.datastore_id == row.id)).one()
        return DatastoreInfo(row.id, row.owner, row.name, row.description, row.grantable,
                             row.created, row.updated, int(count or 0), int(size or 0))

    def whole(self, info: DatastoreInfo) -> tuple[DatastoreInfo, list[StoredObject]] | None:
        """The datastore and its objects (without data) from one snapshot: never the
        summary of one version with the objects of another. None if it is gone."""
        columns = [c for c in _OBJ.c if c.name not in ("datastore_id", "data")]
        with snapshot(self.engine) as conn:
            row = conn.execute(select(_DS).where(_DS.c.id == info.id)).first()
            if row is None:
                return None
            found = conn.execute(select(*columns).where(_OBJ.c.datastore_id == info.id)
                                 .order_by(_OBJ.c.name))
            objects = [StoredObject(**r._mapping) for r in found]
            return self._info(conn, row), objects

    def objects(self, info: DatastoreInfo, names: list[str] | None = None,
                with_data: bool = False) -> list[StoredObject]:
        columns = [c for c in _OBJ.c if c.name != "datastore_id" and
                   (with_data or c.name != "data")]
        query = select(*columns).where(_OBJ.c.datastore_id == info.id)
        if names is not None:
            query = query.where(_OBJ.c.name.in_(names))
        with self.engine.connect() as conn:
            return [StoredObject(**r._mapping) for r in conn.execute(query.order_by(_OBJ.c.name))]

    def delete(self, owner: str, name: str, objects: list[str] | None = None) -> int | None:
        """Delete the datastore (``objects`` None) or some of its objects: how many went,
        or None if there is no such datastore."""
        with writing(self.engine) as conn:
            row = conn.execute(select(_DS.c.id).where(
                and_(_DS.c.owner == owner, _DS.c.name == name))).first()
            if row is None:
                return None
            if objects is None:
                conn.execute(delete(_OBJ).where(_OBJ.c.datastore_id == row.id))
                conn.execute(delete(_DS).where(_DS.c.id == row.id))
                drop_object_grants(conn, "datastore", owner, name)
                return 1
            gone = conn.execute(delete(_OBJ).where(and_(
                _OBJ.c.datastore_id == row.id, _OBJ.c.name.in_(objects)))).rowcount
            conn.execute(update(_DS).where(_DS.c.id == row.id).values(updated=time.time()))
            return int(gone)

    def names_matching(self, owner: str, pattern: str, regex: bool) -> list[str]:
        return [d.name for d in self.matching(owner=owner, pattern=pattern, regex=regex)]

