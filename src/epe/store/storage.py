"""The bytes each user stores, counted where one transaction can check a write against
their quota (docs/operations.md#storage).

A user's storage is the sum of three things, all in the metadata database: their
datastores' objects (the pickles' sizes), their kept job results (each job's answer and
log, ``jobs.result_bytes``) and their tables (the Arrow size of each as it was stored
through epe, ``table_sizes``: the tables themselves live in another database, DuckDB's
files or PostgreSQL's schemas, that cannot take part in the transaction).

A write that counts takes its owner's lock first (``lock_owner``: the user's row, ``FOR
UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transaction already holds the whole
database), so two writes of one user, through one server or two, are checked one after
the other and cannot both slip under the quota.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from epe.core.limits import over_quota
from epe.store import schema
from epe.store.engine import upsert, writing

_S, _DS, _OBJ, _J = (schema.table_sizes, schema.datastores, schema.datastore_objects,
                     schema.jobs)


@dataclass(frozen=True)
class Stored:
    """What one user stores, in bytes."""

    tables: int = 0
    datastores: int = 0
    job_results: int = 0

    @property
    def total(self) -> int:
        return self.tables + self.datastores + self.job_results


def lock_owner(conn: Connection, owner: str) -> None:
    """Hold ``owner``'s storage until the transaction ends (see the module's docstring);
    on SQLite the write transaction already holds the whole database."""
    if conn.dialect.name != "sqlite":
        conn.execute(select(schema.users.c.name).where(schema.users.c.name == owner)
                     .with_for_update())


def stored(conn: Connection, owner: str) -> Stored:
    tables = select(func.coalesce(func.sum(_S.c.bytes), 0)).where(_S.c.owner == owner)
    datastores = select(func.coalesce(func.sum(_OBJ.c.size), 0)).select_from(
        _OBJ.join(_DS, _DS.c.id == _OBJ.c.datastore_id)).where(_DS.c.owner == owner)
    results = select(func.coalesce(func.sum(_J.c.result_bytes), 0)).where(_J.c.owner == owner)
    row = conn.execute(select(tables.scalar_subquery(), datastores.scalar_subquery(),
                              results.scalar_subquery())).one()
    return Stored(*(int(v) for v in row))


def check_quota(conn: Connection, owner: str, *, what: str, size: int, used: int,
                quota: int) -> None:
    """Refuse, inside a transaction that holds the owner since it measured ``used`` and
    has made its write of ``size`` bytes since, a write that took the owner's storage up
    and past ``quota`` (one that frees space is never refused)."""
    after = stored(conn, owner).total
    if after > used and after > quota:
        raise over_quota(what, size, used, after, quota)


class StorageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def stored(self, owner: str) -> Stored:
        with self.engine.connect() as conn:
            return stored(conn, owner)

    def check(self, owner: str, what: str, adding: int, quota: int) -> None:
        """Refuse a write of ``adding`` bytes that would take ``owner`` past ``quota``: for
        a job's answer, kept in a file or written in the transaction that ends the job, so
        that the check and the write cannot share a transaction (and the check takes no
        lock: a job's answer is written once, by the one server that ran it)."""
        used = self.stored(owner).total
        if adding > 0 and used + adding > quota:
            raise over_quota(what, adding, used, used + adding, quota)

    # -- tables: their sizes, kept here -----------------------------------------------------

    def reserve_table(self, owner: str, name: str, size: int, quota: int) -> int | None:
        """Count table ``name`` as ``size`` bytes from now on, if that fits ``quota`` with
        everything else the owner stores (a table it replaces no longer counts); the size
        it counted before (None: none), for ``restore_table`` if storing it fails."""
        key = name.lower()
        with writing(self.engine) as conn:
            lock_owner(conn, owner)
            used = stored(conn, owner).total
            before: Any = conn.execute(select(_S.c.bytes).where(
                _S.c.owner == owner, _S.c.name == key)).scalar()
            conn.execute(upsert(conn, _S).values(owner=owner, name=key, bytes=size)
                         .on_conflict_do_update(index_elements=[_S.c.owner, _S.c.name],
                                                set_={"bytes": size}))
            check_quota(conn, owner, what=f"storing table {name}", size=size, used=used,
                        quota=quota)
        return None if before is None else int(before)

    def restore_table(self, owner: str, name: str, size: int | None) -> None:
        """Count table ``name`` as it was before ``reserve_table`` (its store failed)."""
        if size is None:
            self.drop_table(owner, name)
            return
        with writing(self.engine) as conn:
            conn.execute(_S.update().where(_S.c.owner == owner, _S.c.name == name.lower())
                         .values(bytes=size))

    def drop_table(self, owner: str, name: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(delete(_S).where(_S.c.owner == owner, _S.c.name == name.lower()))
