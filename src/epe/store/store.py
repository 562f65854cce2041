"""The metadata store behind a narrow interface.

SQLAlchemy Core with visible SQL; SQLite in WAL mode by default so that
``epe user add`` can write while the server runs. Only this module knows the
tables; callers get plain records. Owner checks that depend on more than one
row (lookup order, grants) live here too, so that every caller applies the
same rule.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from epe.store import schema
from epe.store.cache import TTLCache
from epe.store.engine import sqlite_engine, writing
from epe.store.jobs import JobStore
from epe.store.migrate import upgrade

GLOBAL_OWNER = "PYQSYS"
CACHE_TTL = 2.0  # seconds a looked-up user, unrevoked token or script is trusted
PUBLIC = "PUBLIC"
RESERVED_USERS = frozenset({GLOBAL_OWNER, PUBLIC})

# A grant's grantee: a user name, or None for everyone (OML's PUBLIC).
Grantee = str | None


@dataclass(frozen=True)
class UserRecord:
    name: str
    password_hash: str
    is_admin: bool
    created: float


@dataclass(frozen=True)
class ScriptRecord:
    id: int
    owner: str
    name: str
    source: str
    description: str
    is_global: bool
    created_by: str
    created: float
    updated: float


class Store:
    """Users, revoked tokens, scripts and grants; jobs in ``self.jobs``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._users: TTLCache[UserRecord] = TTLCache(CACHE_TTL)
        self._unrevoked: TTLCache[bool] = TTLCache(CACHE_TTL)
        self._scripts: TTLCache[ScriptRecord] = TTLCache(CACHE_TTL)
        self.jobs = JobStore(engine)
        from epe.store.datastores import DatastoreStore  # it imports this module

        self.datastores = DatastoreStore(engine)

    @classmethod
    def open_sqlite(cls, path: Path) -> Store:
        """Open (creating and migrating if needed) the SQLite store at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sqlite_engine(path)
        upgrade(engine)
        # Users, tokens and datastores are in here: the server's user alone reads it.
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if part.exists():
                os.chmod(part, 0o600)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- users -----------------------------------------------------------------

    def add_user(self, name: str, password_hash: str, is_admin: bool) -> UserRecord | None:
        """Insert a user; ``name`` must already be normalised. ``None`` if it exists."""
        user = UserRecord(name, password_hash, is_admin, time.time())
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(schema.users).values(**vars(user)))
        except IntegrityError:
            return None
        self._users.drop(name)
        return user

    def get_user(self, name: str) -> UserRecord | None:
        if (cached := self._users.get(name)) is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.users).where(schema.users.c.name == name)).first()
        if row is None:
            return None
        user = UserRecord(**row._mapping)
        self._users.put(name, user)
        return user

    def set_password(self, name: str, password_hash: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(schema.users).where(schema.users.c.name == name)
                         .values(password_hash=password_hash))
        self._users.drop(name)

    def delete_user(self, name: str) -> bool:
        """Delete a user with everything they own here: scripts, grants, jobs, datastores.

        A new user given the same name later must inherit none of it.
        """
        with writing(self.engine) as conn:
            gone = conn.execute(delete(schema.users).where(schema.users.c.name == name)).rowcount
            conn.execute(delete(schema.scripts).where(schema.scripts.c.owner == name))
            conn.execute(delete(schema.jobs).where(schema.jobs.c.owner == name))
            conn.execute(delete(schema.datastores).where(schema.datastores.c.owner == name))
            conn.execute(delete(schema.grants).where(
                or_(schema.grants.c.owner == name, schema.grants.c.grantee == name)))
        self._users.drop(name)
        self._scripts.clear()
        return bool(gone)

    # -- revoked tokens ----------------------------------------------------------

    def revoke_token(self, jti: str, expires: float) -> None:
        with writing(self.engine) as conn:
            conn.execute(delete(schema.revoked_tokens)
                         .where(schema.revoked_tokens.c.expires < time.time()))
            exists = conn.execute(select(schema.revoked_tokens.c.jti)
                                  .where(schema.revoked_tokens.c.jti == jti)).first()
            if not exists:
                conn.execute(insert(schema.revoked_tokens).values(jti=jti, expires=expires))
        self._unrevoked.drop(jti)

    def is_revoked(self, jti: str) -> bool:
        if self._unrevoked.get(jti):
            return False
        with self.engine.connect() as conn:
            revoked = conn.execute(select(schema.revoked_tokens.c.jti)
                                   .where(schema.revoked_tokens.c.jti == jti)).first() is not None
        if not revoked:
            self._unrevoked.put(jti, True)
        return revoked

    # -- scripts -----------------------------------------------------------------

    def put_script(self, *, owner: str, name: str, source: str, description: str,
                   is_global: bool, created_by: str, overwrite: bool) -> ScriptRecord | None:
        """Create or (with ``overwrite``) replace a script; ``None`` if it exists already."""
        now = time.time()
        values = {"source": source, "description": description, "is_global": is_global,
                  "created_by": created_by, "updated": now}
        t = schema.scripts
        with writing(self.engine) as conn:
            where = and_(t.c.owner == owner, t.c.name == name)
            if conn.execute(select(t.c.id).where(where)).first():
                if not overwrite:
                    return None
                conn.execute(update(t).where(where).values(**values))
            else:
                try:
                    conn.execute(insert(t).values(owner=owner, name=name, created=now, **values))
                except IntegrityError:  # a concurrent create won the race
                    return None
            row = conn.execute(select(t).where(where)).one()
        self._scripts.clear()
        return ScriptRecord(**row._mapping)

    def get_script(self, owner: str, name: str) -> ScriptRecord | None:
        t = schema.scripts
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(and_(t.c.owner == owner, t.c.name == name))).first()
        return ScriptRecord(**row._mapping) if row else None

    def delete_script(self, owner: str, name: str) -> bool:
        t = schema.scripts
        with writing(self.engine) as conn:
            gone = conn.execute(delete(t).where(and_(t.c.owner == owner, t.c.name == name)))
            self._drop_grants(conn, "pyqscript", owner, name)
        self._scripts.clear()
        return bool(gone.rowcount)

    def find_script(self, caller: str, name: str, owner: str | None) -> ScriptRecord | None:
        """The script ``caller`` means by ``name`` (and ``owner``), if they may run it.

        Without an owner: the caller's own script first, then the global one (OML).
        With an owner: that user's script if it is the caller's, global, or granted.
        """
        key = (caller, name, owner)
        if (cached := self._scripts.get(key)) is not None:
            return cached
        found = self._find_script(caller, name, owner)
        if found is not None:
            self._scripts.put(key, found)
        return found

    def _find_script(self, caller: str, name: str, owner: str | None) -> ScriptRecord | None:
        if owner is None:
            return self.get_script(caller, name) or self.get_script(GLOBAL_OWNER, name)
        script = self.get_script(owner, name)
        if script is None or owner in (caller, GLOBAL_OWNER):
            return script
        return script if self.is_granted("pyqscript", owner, name, caller) else None

    def visible_scripts(self, caller: str) -> list[ScriptRecord]:
        """Scripts the caller may run: their own, global ones, and those granted to them."""
        s, g = schema.scripts, schema.grants
        granted = select(g.c.id).where(and_(
            g.c.object_type == "pyqscript", g.c.grantee.in_([caller, PUBLIC]),
            g.c.owner == s.c.owner, g.c.name == s.c.name)).exists()
        query = select(s).where(or_(s.c.owner.in_([caller, GLOBAL_OWNER]), granted)) \
            .order_by(s.c.owner, s.c.name)
        with self.engine.connect() as conn:
            return [ScriptRecord(**r._mapping) for r in conn.execute(query)]

    # -- grants ------------------------------------------------------------------

    def grant(self, object_type: str, owner: str, name: str, grantee: Grantee) -> None:
        who = grantee or PUBLIC
        g = schema.grants
        with writing(self.engine) as conn:
            if not conn.execute(select(g.c.id).where(self._grant_match(object_type, owner, name,
                                                                       who))).first():
                conn.execute(insert(g).values(object_type=object_type, owner=owner, name=name,
                                              grantee=who))
        self._scripts.clear()

    def revoke(self, object_type: str, owner: str, name: str, grantee: Grantee) -> bool:
        with writing(self.engine) as conn:
            gone = conn.execute(delete(schema.grants).where(
                self._grant_match(object_type, owner, name, grantee or PUBLIC)))
        self._scripts.clear()
        return bool(gone.rowcount)

    def is_granted(self, object_type: str, owner: str, name: str, user: str) -> bool:
        g = schema.grants
        query = select(g.c.id).where(and_(
            g.c.object_type == object_type, g.c.owner == owner, g.c.name == name,
            g.c.grantee.in_([user, PUBLIC])))
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def grantees(self, object_type: str, owner: str) -> dict[str, list[str]]:
        """Whom each of ``owner``'s objects of this type is granted to (PUBLIC: everyone)."""
        g = schema.grants
        query = select(g.c.name, g.c.grantee).where(and_(
            g.c.object_type == object_type, g.c.owner == owner)).order_by(g.c.name, g.c.grantee)
        found: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for name, grantee in conn.execute(query):
                found.setdefault(name, []).append(grantee)
        return found

    @staticmethod
    def _grant_match(object_type: str, owner: str, name: str, grantee: str) -> Any:
        g = schema.grants
        return and_(g.c.object_type == object_type, g.c.owner == owner, g.c.name == name,
                    g.c.grantee == grantee)

    @staticmethod
    def _drop_grants(conn: Any, object_type: str, owner: str, name: str) -> None:
        g = schema.grants
        conn.execute(delete(g).where(and_(g.c.object_type == object_type, g.c.owner == owner,
                                          g.c.name == name)))
