"""Who belongs to which group, and the automation tokens users made.

Admins are the group ``ADMIN``: its members are the users whose ``is_admin`` is set,
so that the role and the group never disagree. Every other membership is a row of
``user_groups``. Lookups are cached briefly, like users (``epe.store.cache``); a change
made here drops what it touches at once and tells the store (``on_change``), whose
cached script lookups depend on membership.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, insert, select, update

from epe.core.names import ADMIN_GROUP
from epe.errors import Conflict
from epe.store import schema
from epe.store.cache import TTLCache
from epe.store.engine import writing

_UG, _T, _U = schema.user_groups, schema.api_tokens, schema.users


@dataclass(frozen=True)
class ApiToken:
    id: str
    owner: str
    name: str
    secret_hash: str
    scope: str  # run | read
    created: float
    expires: float | None


class IdentityStore:
    def __init__(self, engine: Engine, cache_ttl: float,
                 on_change: Callable[[str], None]) -> None:
        self.engine = engine
        self._groups: TTLCache[frozenset[str]] = TTLCache(cache_ttl)
        self._tokens: TTLCache[ApiToken] = TTLCache(cache_ttl)
        self._on_change = on_change

    def forget(self, user: str) -> None:
        self._groups.drop(user)

    # -- groups ------------------------------------------------------------------------

    def groups_of(self, user: str) -> frozenset[str]:
        """The groups ``user`` is a member of, ADMIN aside (that is ``is_admin``)."""
        if (cached := self._groups.get(user)) is not None:
            return cached
        with self.engine.connect() as conn:
            found = frozenset(conn.execute(select(_UG.c.group_name)
                                           .where(_UG.c.user_name == user)).scalars())
        self._groups.put(user, found)
        return found

    def set_membership(self, user: str, groups: Iterable[str], admin: bool) -> bool:
        """Make ``user``'s groups exactly ``groups`` and their admin role ``admin`` (what
        the directory or the provider says); whether anything changed."""
        wanted = frozenset(groups) - {ADMIN_GROUP}
        with writing(self.engine) as conn:
            had = set(conn.execute(select(_UG.c.group_name)
                                   .where(_UG.c.user_name == user)).scalars())
            was_admin = conn.execute(select(_U.c.is_admin).where(_U.c.name == user)).scalar()
            if had == wanted and bool(was_admin) == admin:
                return False
            if had - wanted:
                conn.execute(delete(_UG).where(and_(_UG.c.user_name == user,
                                                    _UG.c.group_name.in_(had - wanted))))
            for group in sorted(wanted - had):
                conn.execute(insert(_UG).values(user_name=user, group_name=group))
            conn.execute(update(_U).where(_U.c.name == user).values(is_admin=admin))
        self._changed(user)
        return True

    def add_member(self, group: str, user: str) -> bool:
        """Whether ``user`` was not a member of ``group`` before (ADMIN: the role)."""
        with writing(self.engine) as conn:
            if group == ADMIN_GROUP:
                added = conn.execute(update(_U).where(and_(_U.c.name == user,
                                                           _U.c.is_admin.is_(False)))
                                     .values(is_admin=True)).rowcount
            else:
                exists = conn.execute(select(_UG.c.user_name).where(and_(
                    _UG.c.user_name == user, _UG.c.group_name == group))).first()
                added = 0 if exists else conn.execute(
                    insert(_UG).values(user_name=user, group_name=group)).rowcount
        self._changed(user)
        return bool(added)

    def remove_member(self, group: str, user: str) -> bool:
        """Whether ``user`` was a member of ``group``."""
        with writing(self.engine) as conn:
            if group == ADMIN_GROUP:
                gone = conn.execute(update(_U).where(and_(_U.c.name == user,
                                                          _U.c.is_admin.is_(True)))
                                    .values(is_admin=False)).rowcount
            else:
                gone = conn.execute(delete(_UG).where(and_(
                    _UG.c.user_name == user, _UG.c.group_name == group))).rowcount
        self._changed(user)
        return bool(gone)

    def groups(self) -> dict[str, list[str]]:
        """Every group with its members, by name (ADMIN: the admins)."""
        found: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            admins = conn.execute(select(_U.c.name).where(_U.c.is_admin.is_(True))
                                  .order_by(_U.c.name)).scalars().all()
            rows = conn.execute(select(_UG.c.group_name, _UG.c.user_name)
                                .order_by(_UG.c.group_name, _UG.c.user_name)).all()
        if admins:
            found[ADMIN_GROUP] = list(admins)
        for group, user in rows:
            found.setdefault(group, []).append(user)
        return found

    def _changed(self, user: str) -> None:
        self._groups.drop(user)
        self._on_change(user)

    # -- automation tokens ---------------------------------------------------------------

    def add_token(self, token: ApiToken) -> None:
        """Conflict if the owner has a token of that name already."""
        with writing(self.engine) as conn:
            taken = conn.execute(select(_T.c.id).where(and_(
                _T.c.owner == token.owner, _T.c.name == token.name))).first()
            if taken:
                raise Conflict(f"you have a token named {token.name} already; revoke it "
                               "first or choose another name")
            conn.execute(insert(_T).values(**vars(token)))

    def token(self, token_id: str) -> ApiToken | None:
        if (cached := self._tokens.get(token_id)) is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(select(_T).where(_T.c.id == token_id)).first()
        if row is None:
            return None
        found = ApiToken(**row._mapping)
        self._tokens.put(token_id, found)
        return found

    def tokens(self, owner: str | None) -> list[ApiToken]:
        """``owner``'s tokens (None: everyone's), newest first."""
        query = select(_T).order_by(_T.c.created.desc(), _T.c.id)
        if owner is not None:
            query = query.where(_T.c.owner == owner)
        with self.engine.connect() as conn:
            return [ApiToken(**row._mapping) for row in conn.execute(query)]

    def delete_token(self, token_id: str) -> bool:
        with writing(self.engine) as conn:
            gone = conn.execute(delete(_T).where(_T.c.id == token_id)).rowcount
        self._tokens.drop(token_id)
        return bool(gone)
