"""The script repository over REST: list, create, read, delete, grants (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.grants import add_grant_routes
from epe.api.responses import json_response
from epe.core.requests import ScriptCreate
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


add_grant_routes(router, "pyqscript", "use one of the caller's private scripts")
