"""The host uid each user's sandboxed workers run as: given once, never given again.

A user keeps their uid for as long as they exist; when they are deleted the row
loses its owner but stays, so the uid never goes to anyone else (files or processes
of the old user can never be taken for the new one's).
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from epe.errors import InternalError
from epe.store import schema
from epe.store.engine import writing

_U = schema.worker_uids


class UidStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[str, int] = {}

    def known(self, owner: str) -> int | None:
        """``owner``'s uid if this process has seen it already (no database access)."""
        return self._known.get(owner)

    def uid_of(self, owner: str, first: int, count: int) -> int:
        """``owner``'s uid, given now (the lowest never given in the range) if new."""
        if (known := self._known.get(owner)) is not None:
            return known
        for _ in range(5):  # another process may give the same uid first: take the next
            with self.engine.connect() as conn:
                found = conn.execute(select(_U.c.uid).where(_U.c.owner == owner)).first()
            if found is not None:
                self._known[owner] = int(found[0])
                return int(found[0])
            try:
                return self._assign(owner, first, count)
            except IntegrityError:
                continue
        raise InternalError(f"could not give a worker uid to {owner}")

    def _assign(self, owner: str, first: int, count: int) -> int:
        with writing(self.engine) as conn:
            highest = conn.execute(select(func.max(_U.c.uid))).scalar()
            uid = first if highest is None else max(first, int(highest) + 1)
            if uid >= first + count:
                raise InternalError(f"every worker uid from {first} to {first + count - 1} "
                                    "has been given: raise EPE_WORKER_UID_COUNT")
            conn.execute(insert(_U).values(uid=uid, owner=owner, assigned=time.time()))
        self._known[owner] = uid
        return uid

    def forget(self, owner: str) -> None:
        """Drop what this process remembers of ``owner`` (deleting a user retires the uid,
        in the same transaction: ``Store.delete_user``)."""
        self._known.pop(owner, None)
