"""User administration (docs/api.md#users): admin only."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, ServicesDep
from epe.api.jobs import JobsDep
from epe.api.responses import json_response
from epe.core.requests import UserCreate
from epe.errors import InvalidRequest, NotFound
from epe.users import create_user, normalize_name

router = APIRouter(prefix="/omlusers/api/v1/users", tags=["users"])


@router.post("", status_code=201)
def add_user(body: UserCreate, _admin: AdminDep, services: ServicesDep) -> Response:
    user = create_user(services.store, body.username, body.password, body.admin)
    return json_response({"result": {"username": user.name, "admin": user.is_admin}}, 201)


@router.delete("/{name}")
async def delete_user(name: str, admin: AdminDep, services: ServicesDep,
                      jobs: JobsDep) -> Response:
    """Delete a user and everything they own: jobs (running ones stopped), tables,
    datastores, scripts and grants."""
    upper = normalize_name(name, check=False)
    if upper == admin.name:
        raise InvalidRequest("you cannot delete your own account")
    if services.store.get_user(upper) is None:
        raise NotFound(f"no such user {upper}")
    await jobs.delete_all(upper)
    await asyncio.to_thread(_drop_tables, services, upper)
    services.store.delete_user(upper)
    return json_response({"result": f"user {upper} deleted"})


def _drop_tables(services: ServicesDep, owner: str) -> None:
    for table in services.catalog.tables(owner):
        services.catalog.drop(owner, table.name)
