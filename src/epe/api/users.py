"""User administration: admins only, but for a caller's own account (docs/api.md, users)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, CallerDep, JobsDep, ServicesDep
from epe.api.responses import json_response
from epe.core.names import ADMIN_GROUP, iso_date
from epe.core.requests import UserCreate
from epe.service.users import create_user, delete_user
from epe.store import UserRecord

router = APIRouter(prefix="/omlusers/api/v1/users", tags=["users"])


def _shown(user: UserRecord) -> dict[str, object]:
    return {"username": user.name, "admin": user.is_admin,
            "createdDate": iso_date(user.created), "source": user.source}


@router.get("")
async def list_users(_admin: AdminDep, services: ServicesDep) -> Response:
    """Every user, by name."""
    users = await asyncio.to_thread(services.store.users)
    return json_response({"result": [_shown(user) for user in users]})


@router.get("/me")
def whoami(caller: CallerDep, services: ServicesDep) -> Response:
    """The caller's own account: what the console shows and which controls it offers,
    the groups they are in (ADMIN for an admin), and how they signed in."""
    groups = sorted(services.store.identity.groups_of(caller.name)
                    | ({ADMIN_GROUP} if caller.user.is_admin else set()))
    return json_response({"result": {"username": caller.name, "admin": caller.user.is_admin,
                                     "groups": groups, "source": caller.user.source,
                                     "via": caller.claims.via, "scope": caller.claims.scope}})


@router.post("", status_code=201)
def add_user(body: UserCreate, admin: AdminDep, services: ServicesDep) -> Response:
    user = create_user(services.store, services.audit, services.catalog, name=body.username,
                       password=body.password, admin=body.admin, by=admin.name)
    return json_response({"result": _shown(user)}, 201)


@router.delete("/{name}")
async def remove_user(name: str, admin: AdminDep, services: ServicesDep,
                      jobs: JobsDep) -> Response:
    """Delete a user and everything they own: jobs (running ones stopped), tables,
    datastores, scripts and grants."""
    upper = await delete_user(services.store, services.audit, services.catalog, jobs,
                              name=name, admin=admin)
    return json_response({"result": f"user {upper} deleted"})
