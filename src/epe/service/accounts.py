"""Accounts as the directory and the provider vouch for them: created at first sign-in
(a place for their tables, a worker uid), their groups and admin role made what the
directory or provider says at each sign-in and refresh (docs/sign-in.md).

A name that belongs to a local account is never taken over: a directory or provider
user of the same name is refused, so that whoever controls a name at the provider
cannot become a local admin.
"""

from __future__ import annotations

from collections.abc import Iterable

from epe.core.names import ADMIN_GROUP, normalize_group, user_name_from
from epe.data import Catalog
from epe.errors import Conflict, EpeError, Unauthorized
from epe.service.audit import AuditTrail
from epe.service.services import Services
from epe.store import Store, UserRecord


def add_account(store: Store, audit: AuditTrail, catalog: Catalog, *, name: str,
                password_hash: str, admin: bool, by: str | None, source: str = "local",
                external_id: str | None = None, db_role: str | None = None) -> UserRecord:
    """A new user and the place of their tables (with PostgreSQL, a role and a schema, or
    the binding to the existing role ``db_role``); ``by`` is the admin who asks (None:
    the command line, or a first sign-in)."""
    user = store.add_user(name, password_hash, admin, source, external_id)
    try:
        catalog.add_owner(user.name, db_role)
    except BaseException:
        store.delete_user(user.name)  # no user without a place for their tables
        raise
    via = None if by else ("command line" if source == "local" else f"first sign-in ({source})")
    audit.record("user", "create", by, name=user.name, admin=admin, via=via,
                 **({"db_role": db_role} if db_role is not None else {}))
    return user


def epe_name(external: str, what: str) -> str:
    name = user_name_from(external)
    if name is None:
        raise Unauthorized(f"{what} {external!r} cannot be an epe user name: it must start "
                           "with a letter")
    return name


def vouched(services: Services, *, name: str, source: str, external_id: str,
            groups: Iterable[str], admin: bool) -> UserRecord:
    """The user ``source`` (ldap, oidc) vouches for, created if new, with exactly these
    groups and this admin role."""
    user = services.store.get_user(name)
    if user is None:
        try:
            user = add_account(services.store, services.audit, services.catalog, name=name,
                               password_hash="", admin=admin, by=None, source=source,
                               external_id=external_id)
        except Conflict:  # a concurrent first sign-in made it
            user = services.store.get_user(name)
        if user is not None and services.isolated:
            services.tenant(user.name)  # the worker uid, given now
    if user is None or user.local:
        raise Unauthorized(f"the name {name} belongs to a local account of this server; "
                           "ask an admin")
    wanted = frozenset(_groups(groups))
    if wanted != services.store.identity.groups_of(name) or admin != user.is_admin:
        services.store.identity.set_membership(name, wanted, admin)
        services.audit.record("group", "membership", name, groups=sorted(wanted), admin=admin,
                              via=source)
        user = services.store.get_user(name) or user
    return user


def _groups(names: Iterable[str]) -> Iterable[str]:
    """The directory's or provider's group names as epe's; ADMIN is epe's own (the admin
    role, from the admin group setting alone), and a name epe cannot carry in a path is
    no group here."""
    for name in names:
        try:
            group = normalize_group(name)
        except EpeError:
            continue
        if group != ADMIN_GROUP:
            yield group
