"""User tables: upload, list, describe, drop (docs/tables.md).

The body of ``PUT`` is the file itself; its ``Content-Type`` says how to read
it. Catalog work blocks, so it runs in the threadpool, never on the event loop.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import json_response
from epe.data import TableInfo
from epe.service import tables

router = APIRouter(prefix="/tables", tags=["tables"])


def table_json(info: TableInfo) -> dict[str, Any]:
    return asdict(info)


@router.put("/{name}", status_code=201)
async def put_table(name: str, request: Request, caller: CallerDep, services: ServicesDep,
                    overwrite: bool = False) -> Response:
    """Create table ``name`` from the body; 201 whether it was new or replaced. Refused,
    and nothing kept, where it would take the caller past their storage quota."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    info = await run_in_threadpool(partial(
        tables.upload, services.catalog, services.store, services.limits, owner=caller.name,
        name=name, body=body, content_type=content_type, overwrite=overwrite))
    return json_response({"result": table_json(info)}, 201)


@router.get("")
def list_tables(caller: CallerDep, services: ServicesDep) -> Response:
    return json_response({"result": [table_json(t)
                                     for t in services.catalog.tables(caller.name)]})


@router.get("/{name}")
def describe_table(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    return json_response({"result": table_json(services.catalog.describe(caller.name, name))})


@router.delete("/{name}")
def drop_table(name: str, caller: CallerDep, services: ServicesDep) -> Response:
    tables.drop(services.catalog, services.store, caller.name, name)
    return json_response({"result": f"table {name} deleted"})
