"""The metadata store: users, revoked tokens and scripts; grants, jobs, datastores,
the audit trail, users' limits, storage and usage in the parts it holds (``grants``,
``jobs``, ``datastores``, ``audit``, ``limits``, ``storage``, ``usage``).

SQLAlchemy Core with visible SQL; SQLite in WAL mode by default so that
``epe user add`` can write while the server runs; PostgreSQL where several
servers share the metadata. Only this package knows the tables; callers get
plain records. Owner checks that depend on more than one row (lookup order,
grants) live here too, so that every caller applies the same rule. The error
convention of every part is in ``epe.store``'s docstring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from epe.core.names import GLOBAL_OWNER
from epe.errors import Conflict
from epe.store import schema
from epe.store.audit import AuditStore
from epe.store.cache import Snapshot, TTLCache
from epe.store.datastores import DatastoreStore
from epe.store.engine import upsert, writing
from epe.store.grants import (
    Grantee,
    GranteeType,
    GrantStore,
    ObjectType,
    drop_object_grants,
    drop_user_grants,
    matching,
)
from epe.store.identity import IdentityStore
from epe.store.jobs import JobStore
from epe.store.limits import LimitStore
from epe.store.models import ModelStore
from epe.store.schedules import ScheduleStore
from epe.store.storage import StorageStore
from epe.store.uids import UidStore
from epe.store.usage import UsageStore

CACHE_TTL = 2.0  # seconds a looked-up user, unrevoked token or script is trusted
# Where other servers share the database, a revoke or a user deletion made through one
# must hold on every other within a second: their caches forget sooner than that.
POSTGRESQL_CACHE_TTL = 0.5


@dataclass(frozen=True)
class UserRecord:
    name: str
    password_hash: str
    is_admin: bool
    created: float
    source: str = "local"  # local | ldap | oidc: who vouches for the password
    external_id: str | None = None  # the directory's name for the user, or the subject

    @property
    def local(self) -> bool:
        return self.source == "local"


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
    """Users, revoked tokens and scripts; ``grants``, ``jobs``, ``datastores``, ``audit``,
    ``limits``, ``storage``, ``usage``, ``models`` (and their endpoints) and ``schedules``
    (batch scoring jobs).

    Made by ``epe.store.open_store`` from a URL, on an engine already migrated.
    ``shared``: other servers may use the same database at once (PostgreSQL).
    """

    def __init__(self, engine: Engine, cache_ttl: float = CACHE_TTL,
                 shared: bool = False) -> None:
        self.engine = engine
        self.shared = shared
        self.cache_ttl = cache_ttl
        self._users: TTLCache[UserRecord] = TTLCache(cache_ttl)
        self._unrevoked: TTLCache[bool] = TTLCache(cache_ttl)
        # Every revoked token at once, so that a new token's first check needs no query
        # of its own (revocations are few: they end with their token's expiry).
        self._revoked: Snapshot[str, bool] = Snapshot(cache_ttl, self._revoked_now)
        self._scripts: TTLCache[ScriptRecord] = TTLCache(cache_ttl)
        self.grants = _GrantsDropCaches(engine, self._grants_changed)
        self.jobs = JobStore(engine)
        self.datastores = DatastoreStore(engine)
        self.uids = UidStore(engine)
        self.audit = AuditStore(engine)
        self.limits = LimitStore(engine)
        self.storage = StorageStore(engine)
        self.usage = UsageStore(engine)
        self.identity = IdentityStore(engine, cache_ttl, self._membership_changed)
        self.models = ModelStore(engine, cache_ttl)
        self.schedules = ScheduleStore(engine)

    def close(self) -> None:
        self.engine.dispose()

    def _grants_changed(self) -> None:
        """Cached lookups that depend on grants are made anew."""
        self._scripts.clear()
        self.models.forget_grants()

    def _membership_changed(self, name: str) -> None:
        """A user's groups or admin role changed: what they may run is looked up anew."""
        self._users.drop(name)
        self._grants_changed()

    def check(self) -> None:
        """Raise unless the database answers a query now (the readiness check)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- users -----------------------------------------------------------------

    def add_user(self, name: str, password_hash: str, is_admin: bool, source: str = "local",
                 external_id: str | None = None) -> UserRecord:
        """Insert a user; ``name`` must already be normalised. Conflict if it exists."""
        user = UserRecord(name, password_hash, is_admin, time.time(), source, external_id)
        try:
            with writing(self.engine) as conn:
                conn.execute(insert(schema.users).values(**vars(user)))
        except IntegrityError:
            raise Conflict(f"user {name} already exists") from None
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

    def users(self) -> list[UserRecord]:
        """Every user, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.users).order_by(schema.users.c.name))
            return [UserRecord(**row._mapping) for row in rows]

    def set_password(self, name: str, password_hash: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(schema.users).where(schema.users.c.name == name)
                         .values(password_hash=password_hash))
        self._users.drop(name)

    def delete_user(self, name: str) -> bool:
        """Delete a user with everything they own here: scripts, grants, jobs, datastores,
        models with their endpoints, scoring jobs, their limits, their tables' sizes and
        the usage of their runs.

        A new user given the same name later must inherit none of it.
        """
        with writing(self.engine) as conn:
            gone = conn.execute(delete(schema.users).where(schema.users.c.name == name)).rowcount
            conn.execute(delete(schema.scripts).where(schema.scripts.c.owner == name))
            conn.execute(delete(schema.jobs).where(schema.jobs.c.owner == name))
            conn.execute(delete(schema.datastores).where(schema.datastores.c.owner == name))
            conn.execute(delete(schema.user_groups).where(schema.user_groups.c.user_name == name))
            conn.execute(delete(schema.api_tokens).where(schema.api_tokens.c.owner == name))
            self.models.drop_owner(conn, name)
            drop_user_grants(conn, name)
            conn.execute(delete(schema.user_limits).where(schema.user_limits.c.user_name == name))
            conn.execute(delete(schema.table_sizes).where(schema.table_sizes.c.owner == name))
            conn.execute(delete(schema.run_usage).where(schema.run_usage.c.user_name == name))
            conn.execute(update(schema.worker_uids).where(schema.worker_uids.c.owner == name)
                         .values(owner=None))
        self._users.drop(name)
        self._grants_changed()
        self.uids.forget(name)
        self.identity.forget(name)
        return bool(gone)

    # -- revoked tokens ----------------------------------------------------------

    def revoke_token(self, jti: str, expires: float) -> None:
        t = schema.revoked_tokens
        with writing(self.engine) as conn:
            conn.execute(delete(t).where(t.c.expires < time.time()))
            conn.execute(upsert(conn, t).values(jti=jti, expires=expires)
                         .on_conflict_do_nothing(index_elements=[t.c.jti]))
        self._unrevoked.drop(jti)
        self._revoked.clear()

    def _revoked_now(self, limit: int) -> dict[str, bool]:
        """The tokens revoked (up to ``limit``): those not yet expired, and those expired
        since the last revocation, which removes them."""
        t = schema.revoked_tokens
        with self.engine.connect() as conn:
            return dict.fromkeys(conn.execute(select(t.c.jti).limit(limit)).scalars(), True)

    def is_revoked(self, jti: str) -> bool:
        if self._unrevoked.get(jti):
            return False
        if (every := self._revoked.get()) is not None:
            return jti in every
        with self.engine.connect() as conn:  # more revoked than is kept at hand
            revoked = conn.execute(select(schema.revoked_tokens.c.jti)
                                   .where(schema.revoked_tokens.c.jti == jti)).first() is not None
        if not revoked:
            self._unrevoked.put(jti, True)
        return revoked

    # -- scripts -----------------------------------------------------------------

    def put_script(self, *, owner: str, name: str, source: str, description: str,
                   is_global: bool, created_by: str, overwrite: bool,
                   replaced_only_by: str | None = None) -> ScriptRecord:
        """Create or (with ``overwrite``) replace a script; Conflict if it exists already,
        or, with ``replaced_only_by``, if it exists and another user created it.

        One statement (``INSERT ... ON CONFLICT``), so that concurrent creates of one
        name give one 201 and 409s, on PostgreSQL's READ COMMITTED as on SQLite.
        """
        now = time.time()
        values = {"source": source, "description": description, "is_global": is_global,
                  "created_by": created_by, "updated": now}
        t = schema.scripts
        with writing(self.engine) as conn:
            insert_ = upsert(conn, t).values(owner=owner, name=name, created=now, **values)
            key = [t.c.owner, t.c.name]
            if not overwrite:
                statement = insert_.on_conflict_do_nothing(index_elements=key)
            else:
                mine = None if replaced_only_by is None else t.c.created_by == replaced_only_by
                statement = insert_.on_conflict_do_update(index_elements=key, set_=values,
                                                          where=mine)
            row = conn.execute(statement.returning(*t.c)).first()
        if row is None:
            raise _script_exists(name) if not overwrite else Conflict(
                f"a global script {name} exists and belongs to another user")
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
            drop_object_grants(conn, "pyqscript", owner, name)
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
        return script if self.grants.is_granted("pyqscript", owner, name, caller) else None

    def visible_scripts(self, caller: str) -> list[ScriptRecord]:
        """Scripts the caller may run: their own, global ones, and those granted to them."""
        s, g = schema.scripts, schema.grants
        granted = select(g.c.id).where(matching("pyqscript", s.c.owner, s.c.name,
                                                caller)).exists()
        query = select(s).where(or_(s.c.owner.in_([caller, GLOBAL_OWNER]), granted)) \
            .order_by(s.c.owner, s.c.name)
        with self.engine.connect() as conn:
            return [ScriptRecord(**r._mapping) for r in conn.execute(query)]

    # -- shared secrets ------------------------------------------------------------

    def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The secret ``name`` every server on this database shares, made by the first
        to ask (concurrent first asks agree on one)."""
        t = schema.server_secrets
        with writing(self.engine) as conn:
            conn.execute(upsert(conn, t).values(name=name, value=make())
                         .on_conflict_do_nothing(index_elements=[t.c.name]))
            return bytes(conn.execute(select(t.c.value).where(t.c.name == name)).scalar_one())


def _script_exists(name: str) -> Conflict:
    return Conflict(f"script {name} already exists; send \"overwrite\": true to replace it")


class _GrantsDropCaches(GrantStore):
    """Grants; a change forgets cached lookups that depend on grants (scripts, models)."""

    def __init__(self, engine: Engine, changed: Callable[[], None]) -> None:
        super().__init__(engine)
        self._changed = changed

    def grant(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee,
              grantee_type: GranteeType = "user") -> None:
        super().grant(object_type, owner, name, grantee, grantee_type)
        self._changed()

    def revoke(self, object_type: ObjectType, owner: str, name: str, grantee: Grantee,
               grantee_type: GranteeType = "user") -> bool:
        gone = super().revoke(object_type, owner, name, grantee, grantee_type)
        self._changed()
        return gone
