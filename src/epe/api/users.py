"""User administration: admin only (docs/api.md, users)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, JobsDep, ServicesDep
from epe.api.responses import json_response
from epe.core.requests import UserCreate
from epe.service.users import create_user, delete_user

router = APIRouter(prefix="/omlusers/api/v1/users", tags=["users"])


@router.post("", status_code=201)
def add_user(body: UserCreate, admin: AdminDep, services: ServicesDep) -> Response:
    user = create_user(services.store, services.audit, services.catalog, admin.name,
                       body.username, body.password, body.admin)
    return json_response({"result": {"username": user.name, "admin": user.is_admin}}, 201)


@router.delete("/{name}")
async def remove_user(name: str, admin: AdminDep, services: ServicesDep,
                      jobs: JobsDep) -> Response:
    """Delete a user and everything they own: jobs (running ones stopped), tables,
    datastores, scripts and grants."""
    upper = await delete_user(services.store, services.audit, services.catalog, jobs, admin,
                              name)
    return json_response({"result": f"user {upper} deleted"})
