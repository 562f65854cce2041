"""Grants: who may run a private script, read a datastore or score a model besides
its owner.

One table for every kind of object (a model is named by its id); a grantee is a user,
``PUBLIC`` (everyone), or a group, whose members are looked up in the same statement
(``user_groups``, and the admins for the group ADMIN), so a membership that ends ends
the grant at once. The rules about *who may grant what* live in
``epe.service.grants``; here is only how grants are kept and looked up.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, delete, literal, or_, select, union_all

from epe.core.names import ADMIN_GROUP, PUBLIC
from epe.store import schema
from epe.store.engine import upsert, writing

ObjectType = Literal["pyqscript", "datastore", "model"]
GranteeType = Literal["user", "group"]
# A grant's grantee: a user or group name, or None for everyone (OML's PUBLIC).
Grantee = str | None

_G, _UG, _U = schema.grants, schema.user_groups, schema.users


def groups_of(user: str) -> Any:
    """The groups ``user`` is a member of, as a subquery (ADMIN for an admin)."""
    return union_all(select(_UG.c.group_name).where(_UG.c.user_name == user),
                     select(literal(ADMIN_GROUP)).where(and_(_U.c.name == user,
                                                             _U.c.is_admin.is_(True))))


def matching(object_type: str, owner: Any, name: Any, user: str) -> Any:
    """The condition "this object is granted to ``user``, to a group of theirs, or to
    everyone": one lookup shared by every query that asks it (SQL columns or plain
    values)."""
    to_user = and_(_G.c.grantee_type == "user", _G.c.grantee.in_([user, PUBLIC]))
    to_group = and_(_G.c.grantee_type == "group", _G.c.grantee.in_(groups_of(user)))
    return and_(_G.c.object_type == object_type, _G.c.owner == owner, _G.c.name == name,
                or_(to_user, to_group))


class GrantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def grant(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee,
              grantee_type: GranteeType = "user") -> None:
        """Grant (once: a second grant of the same, concurrent or not, is no change)."""
        with writing(self.engine) as conn:
            conn.execute(upsert(conn, _G).values(
                object_type=object_type, owner=owner, name=name, grantee=grantee or PUBLIC,
                grantee_type=grantee_type)
                .on_conflict_do_nothing(index_elements=[_G.c.object_type, _G.c.owner,
                                                        _G.c.name, _G.c.grantee_type,
                                                        _G.c.grantee]))

    def revoke(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee,
               grantee_type: GranteeType = "user") -> bool:
        """Whether there was such a grant to take back."""
        with writing(self.engine) as conn:
            gone = conn.execute(delete(_G).where(_exact(object_type, owner, name,
                                                        grantee or PUBLIC, grantee_type)))
        return bool(gone.rowcount)

    def is_granted(self, object_type: ObjectType, owner: str, name: str, user: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_G.c.id).where(
                matching(object_type, owner, name, user))).first() is not None

    def grantees(self, object_type: ObjectType, owner: str,
                 grantee_type: GranteeType = "user") -> dict[str, list[str]]:
        """Which users (PUBLIC: everyone), or which groups, each of ``owner``'s objects of
        this type is granted to."""
        query = select(_G.c.name, _G.c.grantee).where(and_(
            _G.c.object_type == object_type, _G.c.owner == owner,
            _G.c.grantee_type == grantee_type)).order_by(_G.c.name, _G.c.grantee)
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
    conn.execute(delete(_G).where(or_(_G.c.owner == user, and_(_G.c.grantee == user,
                                                               _G.c.grantee_type == "user"))))


def _exact(object_type: str, owner: str, name: str, grantee: str, grantee_type: str) -> Any:
    return and_(_G.c.object_type == object_type, _G.c.owner == owner, _G.c.name == name,
                _G.c.grantee == grantee, _G.c.grantee_type == grantee_type)
