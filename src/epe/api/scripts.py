"""The script repository (docs/api.md#scripts)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import json_response
from epe.core.requests import GrantRequest, ScriptCreate
from epe.core.scripts import parse_script
from epe.errors import Conflict, InvalidRequest, NotFound
from epe.store import ScriptRecord
from epe.store.store import GLOBAL_OWNER
from epe.users import normalize_name

router = APIRouter(prefix="/scripts", tags=["scripts"])

# Script names travel in URL paths: keep them to characters that need no escaping.
_NAME = re.compile(r"[A-Za-z0-9_.$#-]{1,128}")


def check_script_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid script name {name!r}: use letters, digits, _ . $ # - "
                             "(at most 128)")
    return name


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def describe(script: ScriptRecord, with_source: bool = False) -> dict[str, Any]:
    info: dict[str, Any] = {"name": script.name, "owner": script.owner,
                            "description": script.description, "date": iso(script.updated),
                            "isGlobal": script.is_global}
    if with_source:
        info["script"] = script.source
    return info


@router.get("")
def list_scripts(caller: CallerDep, services: ServicesDep) -> Response:
    """Scripts the caller may run: their own, global ones, and those granted to them.
    The caller's own private scripts also say whom they are granted to."""
    granted = services.store.grantees("pyqscript", caller.name)
    listed = []
    for script in services.store.visible_scripts(caller.name):
        info = describe(script)
        if script.owner == caller.name:
            info["grantees"] = granted.get(script.name, [])
        listed.append(info)
    return json_response({"result": listed})


@router.post("", status_code=201)
def create_script(body: ScriptCreate, caller: CallerDep, services: ServicesDep) -> Response:
    parse_script(body.script)
    owner = GLOBAL_OWNER if body.is_global else caller.name
    existing = services.store.get_script(owner, check_script_name(body.name))
    if existing and body.is_global and existing.created_by != caller.name \
            and not caller.user.is_admin:
        raise Conflict(f"a global script {body.name} exists and belongs to another user")
    script = services.store.put_script(owner=owner, name=body.name, source=body.script,
                                       description=body.description, is_global=body.is_global,
                                       created_by=caller.name, overwrite=body.overwrite)
    if script is None:
        raise Conflict(f"script {body.name} already exists; send \"overwrite\": true to "
                       "replace it")
    return json_response({"result": describe(script)}, 201)


@router.get("/{name}")
def get_script(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    return json_response({"result": describe(find(services, caller.name, name, None), True)})


@router.get("/{name}/{owner}")
def get_owned_script(name: str, owner: str, caller: CallerDep,
                     services: ServicesDep) -> Response:
    return json_response({"result": describe(find(services, caller.name, name, owner), True)})


@router.delete("/{name}")
def delete_script(name: str, caller: CallerDep, services: ServicesDep,
                  isGlobal: bool = False) -> Response:
    owner = GLOBAL_OWNER if isGlobal else caller.name
    script = services.store.get_script(owner, name)
    if script is None or (isGlobal and script.created_by != caller.name
                          and not caller.user.is_admin):
        raise NotFound(f"no such script {name}" + (" (global)" if isGlobal else ""))
    services.store.delete_script(owner, name)
    return json_response({"result": f"script {name} deleted"})


@router.post("/{name}/grants")
def grant(name: str, body: GrantRequest, caller: CallerDep, services: ServicesDep) -> Response:
    """Let a user (``null``: everyone) run one of the caller's private scripts."""
    own(services, caller.name, name)
    grantee = None if body.user is None else existing_user(services, body.user)
    services.store.grant("pyqscript", caller.name, name, grantee)
    return json_response({"result": {"name": name, "user": grantee or "PUBLIC"}})


@router.delete("/{name}/grants/{user}")
def revoke(name: str, user: str, caller: CallerDep, services: ServicesDep) -> Response:
    own(services, caller.name, name)
    grantee = normalize_name(user, check=False)
    if not services.store.revoke("pyqscript", caller.name, name,
                                 None if grantee == "PUBLIC" else grantee):
        raise NotFound(f"script {name} is not granted to {grantee}")
    return json_response({"result": {"name": name, "user": grantee, "revoked": True}})


def find(services: ServicesDep, caller: str, name: str, owner: str | None) -> ScriptRecord:
    owner_name = None if owner is None else normalize_name(owner, check=False)
    script = services.store.find_script(caller, name, owner_name)
    if script is None:
        whose = f" of {owner_name}" if owner_name else ""
        raise NotFound(f"no script named {name}{whose} that you may run")
    return script


def own(services: ServicesDep, caller: str, name: str) -> ScriptRecord:
    script = services.store.get_script(caller, name)
    if script is None:
        raise NotFound(f"you have no private script named {name}")
    return script


def existing_user(services: ServicesDep, name: str) -> str:
    upper = normalize_name(name, check=False)
    if services.store.get_user(upper) is None:
        raise NotFound(f"no such user {upper}")
    return upper
