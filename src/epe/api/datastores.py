"""Datastores over REST: list, describe, delete, grants (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.grants import add_grant_routes
from epe.api.responses import json_response
from epe.core.names import iso_date
from epe.store.datastores import DatastoreInfo

router = APIRouter(prefix="/datastores", tags=["datastores"])


def summary(info: DatastoreInfo) -> dict[str, object]:
    return {"name": info.name, "owner": info.owner, "objectCount": info.object_count,
            "size": info.size, "date": iso_date(info.updated), "description": info.description,
            "grantable": info.grantable}


@router.get("")
def list_datastores(caller: CallerDep, services: ServicesDep) -> Response:
    """The caller's datastores, and those others granted to them."""
    return json_response({"result": [summary(d)
                                     for d in services.datastores.visible(caller.name)]})


def _describe(services: ServicesDep, caller: str, name: str, owner: str | None) -> Response:
    info, stored = services.datastores.whole(caller, name, owner)
    objects = [{"name": o.name, "class": o.class_name, "size": o.size, "length": o.length,
                "rowCount": o.row_count, "colCount": o.col_count} for o in stored]
    return json_response({"result": {**summary(info), "objects": objects}})


@router.get("/{name}")
def describe_datastore(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    """A datastore's objects with their class and size."""
    return _describe(services, caller.name, name, None)


@router.get("/{name}/{owner}")
def describe_owned_datastore(name: str, owner: str, caller: CallerDep,
                             services: ServicesDep) -> Response:
    """Another user's datastore, if it was granted to the caller."""
    return _describe(services, caller.name, name, owner)


@router.delete("/{name}")
def delete_datastore(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    services.datastores.delete(caller.name, name)
    return json_response({"result": f"datastore {name} deleted"})


add_grant_routes(router, "datastore", "use one of the caller's grantable datastores")
