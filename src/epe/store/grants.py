"""Grants: who may run a private script or read a datastore besides its owner.

One table for both kinds of object; a grantee of ``PUBLIC`` is everyone. The
rules about *who may grant what* live in ``epe.service.grants``; here is only
how grants are kept and looked up.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, delete, or_, select

from epe.core.names import PUBLIC
from epe.store import schema
from epe.store.engine import upsert, writing

ObjectType = Literal["pyqscript", "datastore"]
# A grant's grantee: a user name, or None for everyone (OML's PUBLIC).
Grantee = str | None

_G = schema.grants


def matching(object_type: str, owner: Any, name: Any, user: str) -> Any:
    """The condition "this object is granted to ``user``, or to everyone": one lookup
    shared by every query that asks it (SQL columns or plain values)."""
    return and_(_G.c.object_type == object_type, _G.c.owner == owner, _G.c.name == name,
                _G.c.grantee.in_([user, PUBLIC]))


class GrantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def grant(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee) -> None:
        """Grant (once: a second grant of the same, concurrent or not, is no change)."""
        with writing(self.engine) as conn:
            conn.execute(upsert(conn, _G).values(
                object_type=object_type, owner=owner, name=name, grantee=grantee or PUBLIC)
                .on_conflict_do_nothing(index_elements=[_G.c.object_type, _G.c.owner,
                                                        _G.c.name, _G.c.grantee]))

    def revoke(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee) -> bool:
        """Whether there was such a grant to take back."""
        with writing(self.engine) as conn:
            gone = conn.execute(delete(_G).where(_exact(object_type, owner, name,
                                                        grantee or PUBLIC)))
        return bool(gone.rowcount)

    def is_granted(self, object_type: ObjectType, owner: str, name: str, user: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_G.c.id).where(
                matching(object_type, owner, name, user))).first() is not None

    def grantees(self, object_type: ObjectType, owner: str) -> dict[str, list[str]]:
        """Whom each of ``owner``'s objects of this type is granted to (PUBLIC: everyone)."""
        query = select(_G.c.name, _G.c.grantee).where(and_(
            _G.c.object_type == object_type, _G.c.owner == owner)).order_by(_G.c.name,
                                                                            _G.c.grantee)
        found: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for name, grantee in conn.execute(query):
                found.setdefault(name, []).append(grantee)
        return found


def drop_object_grants(conn: Connection, object_type: ObjectType, owner: str,
                       name: str) -> None:
    """Every grant of one object, inside the transaction that deletes it."""
    conn.execute(delete(_G).where(and_(_G.c.object_type == object_type, _G.c.owner == owner,
                                       _G.c.name == name)))


def drop_user_grants(conn: Connection, user: str) -> None:
    """Every grant by or to ``user``, inside the transaction that deletes the user."""
    conn.execute(delete(_G).where(or_(_G.c.owner == user, _G.c.grantee == user)))


def _exact(object_type: str, owner: str, name: str, grantee: str) -> Any:
    return and_(_G.c.object_type == object_type, _G.c.owner == owner, _G.c.name == name,
                _G.c.grantee == grantee)
