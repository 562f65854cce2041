"""The script repository over REST: list, create, read, delete, grants (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import json_response
from epe.core.requests import GrantRequest, ScriptCreate
from epe.service import scripts

router = APIRouter(prefix="/scripts", tags=["scripts"])


@router.get("")
def list_scripts(caller: CallerDep, services: ServicesDep) -> Response:
    """Scripts the caller may run: their own, global ones, and those granted to them.
    The caller's own private scripts also say whom they are granted to."""
    return json_response({"result": scripts.visible(services.store, caller)})


@router.post("", status_code=201)
def create_script(body: ScriptCreate, caller: CallerDep, services: ServicesDep) -> Response:
    script = scripts.create(services.store, services.audit, caller, body)
    return json_response({"result": scripts.describe(script)}, 201)


@router.get("/{name}")
def get_script(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    found = scripts.find(services.store, caller.name, name, None)
    return json_response({"result": scripts.describe(found, True)})


@router.get("/{name}/{owner}")
def get_owned_script(name: str, owner: str, caller: CallerDep,
                     services: ServicesDep) -> Response:
    found = scripts.find(services.store, caller.name, name, owner)
    return json_response({"result": scripts.describe(found, True)})


@router.delete("/{name}")
def delete_script(name: str, caller: CallerDep, services: ServicesDep,
                  isGlobal: bool = False) -> Response:
    scripts.delete(services.store, services.audit, caller, name, isGlobal)
    return json_response({"result": f"script {name} deleted"})


@router.post("/{name}/grants")
def grant(name: str, body: GrantRequest, caller: CallerDep, services: ServicesDep) -> Response:
    """Let a user (``null``: everyone), or the members of a group, use one of the caller's
    private scripts."""
    if body.group is not None:
        group = services.grants.grant_group(caller.name, "pyqscript", name, body.group)
        return json_response({"result": {"name": name, "group": group}})
    grantee = services.grants.grant(caller.name, "pyqscript", name, body.user)
    return json_response({"result": {"name": name, "user": grantee}})


@router.delete("/{name}/grants/group/{group}")
def revoke_group(name: str, group: str, caller: CallerDep, services: ServicesDep) -> Response:
    shown = services.grants.revoke_group(caller.name, "pyqscript", name, group)
    return json_response({"result": {"name": name, "group": shown, "revoked": True}})


@router.delete("/{name}/grants/{user}")
def revoke(name: str, user: str, caller: CallerDep, services: ServicesDep) -> Response:
    grantee = services.grants.revoke(caller.name, "pyqscript", name, user)
    return json_response({"result": {"name": name, "user": grantee, "revoked": True}})
