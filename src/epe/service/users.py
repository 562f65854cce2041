"""User accounts: created and deleted the same way by the API and the CLI.

Deleting a user takes everything they own with them (jobs, running ones
stopped; tables; datastores; scripts; grants), so that a new user given the
same name later inherits none of it.
"""

from __future__ import annotations

import asyncio

from epe.auth.passwords import hash_password
from epe.core.names import normalize_user
from epe.data import Catalog
from epe.errors import InvalidRequest, NotFound
from epe.service.accounts import add_account
from epe.service.audit import AuditTrail
from epe.service.jobs import JobManager
from epe.service.sessions import Caller
from epe.store import Store, UserRecord


def create_user(store: Store, audit: AuditTrail, catalog: Catalog, *, name: str, password: str,
                admin: bool = False, db_role: str | None = None,
                by: str | None = None) -> UserRecord:
    """Create a user, and the place of their tables (with PostgreSQL, a role and a
    schema, or the binding to the existing role ``db_role``); ``by`` is the admin who
    asks (``None``: the command line)."""
    if not password:
        raise InvalidRequest("the password must not be empty")
    return add_account(store, audit, catalog, name=normalize_user(name),
                       password_hash=hash_password(password), admin=admin, by=by,
                       db_role=db_role)


async def delete_user(store: Store, audit: AuditTrail, catalog: Catalog, jobs: JobManager, *,
                      name: str, admin: Caller) -> str:
    """Delete a user and everything they own; the name as stored."""
    upper = normalize_user(name, check=False)
    if upper == admin.name:
        raise InvalidRequest("you cannot delete your own account")
    if await asyncio.to_thread(store.get_user, upper) is None:
        raise NotFound(f"no such user {upper}")
    await jobs.delete_all(upper)
    await asyncio.to_thread(catalog.drop_owner, upper)
    await asyncio.to_thread(store.delete_user, upper)
    audit.record("user", "delete", admin.name, name=upper)
    return upper
