"""Groups: who is in which (admins); members kept by epe for local users
(docs/api.md#groups). The directory's and the provider's users get theirs from there."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, ServicesDep
from epe.api.responses import json_response
from epe.service import groups

router = APIRouter(prefix="/omlusers/api/v1/groups", tags=["groups"])


@router.get("")
async def list_groups(_admin: AdminDep, services: ServicesDep) -> Response:
    """Every group with its members (ADMIN: the admins)."""
    found = await asyncio.to_thread(services.store.identity.groups)
    return json_response({"items": [{"name": name, "members": members}
                                    for name, members in found.items()]})


@router.put("/{group}/members/{user}")
def add_member(group: str, user: str, admin: AdminDep, services: ServicesDep) -> Response:
    """Make a local user a member of a group (ADMIN: give them the admin role)."""
    shown, name = groups.add_member(services, admin, group, user)
    return json_response({"result": {"group": shown, "user": name}})


@router.delete("/{group}/members/{user}")
def remove_member(group: str, user: str, admin: AdminDep, services: ServicesDep) -> Response:
    shown, name = groups.remove_member(services, admin, group, user)
    return json_response({"result": {"group": shown, "user": name, "removed": True}})
