"""Granting and revoking one of the caller's objects: the same two routes under
``/scripts`` and ``/datastores`` (docs/api.md), over ``epe.service.grants``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import json_response
from epe.core.requests import GrantRequest
from epe.store.grants import ObjectType


def add_grant_routes(router: APIRouter, kind: ObjectType, granted: str) -> None:
    """``POST /{name}/grants``, ``DELETE /{name}/grants/group/{group}`` and
    ``DELETE /{name}/grants/{user}`` for objects of ``kind``; ``granted``: what a grant
    lets a user do, for the API docs."""

    def grant(name: str, body: GrantRequest, caller: CallerDep,
              services: ServicesDep) -> Response:
        if body.group is not None:
            group = services.grants.grant_group(caller.name, kind, name, body.group)
            return json_response({"result": {"name": name, "group": group}})
        grantee = services.grants.grant(caller.name, kind, name, body.user)
        return json_response({"result": {"name": name, "user": grantee}})

    def revoke_group(name: str, group: str, caller: CallerDep,
                     services: ServicesDep) -> Response:
        shown = services.grants.revoke_group(caller.name, kind, name, group)
        return json_response({"result": {"name": name, "group": shown, "revoked": True}})

    def revoke(name: str, user: str, caller: CallerDep, services: ServicesDep) -> Response:
        grantee = services.grants.revoke(caller.name, kind, name, user)
        return json_response({"result": {"name": name, "user": grantee, "revoked": True}})

    grant.__doc__ = f"Let a user (``null``: everyone), or the members of a group, {granted}."
    router.add_api_route("/{name}/grants", grant, methods=["POST"])
    router.add_api_route("/{name}/grants/group/{group}", revoke_group, methods=["DELETE"])
    router.add_api_route("/{name}/grants/{user}", revoke, methods=["DELETE"])
