"""User administration: admins only, but for a caller's own account (docs/api.md, users)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, CallerDep, JobsDep, ServicesDep
from epe.api.responses import json_response
from epe.core.limits import parse_changes
from epe.core.names import ADMIN_GROUP, iso_date, normalize_user
from epe.core.requests import UserChange, UserCreate
from epe.errors import NotFound
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.service.users import create_user, delete_user
from epe.store import UserRecord

router = APIRouter(prefix="/omlusers/api/v1/users", tags=["users"])


def _shown(user: UserRecord) -> dict[str, object]:
    return {"username": user.name, "admin": user.is_admin,
            "createdDate": iso_date(user.created), "source": user.source}


def _account(services: Services, user: UserRecord) -> dict[str, Any]:
    """The user with their limits and what they hold now (blocking)."""
    return {**_shown(user), **services.limits.shown(user.name)}


def _user(services: Services, name: str) -> UserRecord:
    user = services.store.get_user(normalize_user(name, check=False))
    if user is None:
        raise NotFound(f"no such user {name}")
    return user


def _me(services: Services, caller: Caller) -> dict[str, Any]:
    """The caller's account, the groups they are in (ADMIN for an admin) and how they
    signed in (blocking)."""
    groups = sorted(services.store.identity.groups_of(caller.name)
                    | ({ADMIN_GROUP} if caller.user.is_admin else set()))
    return {"username": caller.name, "admin": caller.user.is_admin, "groups": groups,
            "source": caller.user.source, "via": caller.claims.via,
            "scope": caller.claims.scope, **services.limits.shown(caller.name)}


@router.get("")
async def list_users(_admin: AdminDep, services: ServicesDep) -> Response:
    """Every user, by name."""
    users = await asyncio.to_thread(services.store.users)
    return json_response({"result": [_shown(user) for user in users]})


@router.get("/me")
async def whoami(caller: CallerDep, services: ServicesDep) -> Response:
    """The caller's own account: what the console shows and which controls it offers,
    the groups they are in (ADMIN for an admin), how they signed in, and their limits
    and what they hold now."""
    return json_response({"result": await asyncio.to_thread(_me, services, caller)})


@router.get("/{name}")
async def show_user(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    """A user with their limits and what they hold now: admins, or the user themselves."""
    if normalize_user(name, check=False) != caller.name:
        caller.require_admin()
    user = await asyncio.to_thread(_user, services, name)
    return json_response({"result": await asyncio.to_thread(_account, services, user)})


@router.patch("/{name}")
async def change_user(name: str, body: UserChange, admin: AdminDep,
                      services: ServicesDep) -> Response:
    """Set a user's limits (a number), or take them back to the defaults (null)."""
    changes = parse_changes(body.limits)
    user = await asyncio.to_thread(_user, services, name)
    await asyncio.to_thread(services.limits.change, user.name, changes)
    services.audit.record("user", "limits", admin.name, name=user.name,
                          limits=body.limits)
    return json_response({"result": await asyncio.to_thread(_account, services, user)})


@router.post("", status_code=201)
def add_user(body: UserCreate, admin: AdminDep, services: ServicesDep) -> Response:
    user = create_user(services.store, services.audit, services.catalog, name=body.username,
                       password=body.password, admin=body.admin, by=admin.name)
    if services.isolated:
        # The worker uid given now, as at a directory user's first sign-in: a write the
        # user's first run no longer makes (a burst of new users' first runs made them
        # all at once, one after another on SQLite's lock).
        services.tenant(user.name)
    return json_response({"result": _shown(user)}, 201)


@router.delete("/{name}")
async def remove_user(name: str, admin: AdminDep, services: ServicesDep,
                      jobs: JobsDep) -> Response:
    """Delete a user and everything they own: jobs (running ones stopped), tables,
    datastores, scripts and grants."""
    upper = await delete_user(services.store, services.audit, services.catalog, jobs,
                              name=name, admin=admin)
    return json_response({"result": f"user {upper} deleted"})
