"""Answering the calls user code makes through ``import oml`` (docs/api.md, datastores).

Each task gets a handler bound to its caller: a function can do to datastores,
grants and tables exactly what its caller could over HTTP, no more. Object
pickles pass through as bytes; the server never unpickles them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from epe.core.results import arrow_stream
from epe.data.names import check_table_name, quote
from epe.errors import InvalidRequest
from epe.runner.executor import CallHandler
from epe.service import sql
from epe.service.grants import object_type
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.datastores import StoredObject

Reply = tuple[dict[str, Any], bytes]
Op = Callable[[Services, str, dict[str, Any], bytes], Reply]

_META = ("name", "class_name", "size", "length", "row_count", "col_count", "versions")


def handler(services: Services, caller: Caller,
            functions: sql.Functions | None = None) -> CallHandler:
    async def handle(call: dict[str, Any], payload: bytes) -> Reply:
        if call.get("call") == "sync":
            return await sync(services, caller, call, functions)
        op = _OPS.get(str(call.get("call")))
        if op is None:
            raise InvalidRequest(f"unknown call {call.get('call')!r}")
        return await asyncio.to_thread(op, services, caller.name, call, payload)

    return handle


def _objects(call: dict[str, Any], payload: bytes) -> list[StoredObject]:
    objects, offset = [], 0
    for meta in call.get("objects") or []:
        size = int(meta["size"])
        objects.append(StoredObject(**{k: meta.get(k) for k in _META},
                                    data=payload[offset:offset + size]))
        offset += size
    if offset != len(payload):
        raise InvalidRequest("the objects' sizes do not match the data sent")
    return objects


def ds_save(services: Services, user: str, call: dict[str, Any], payload: bytes) -> Reply:
    services.datastores.save(
        user, call["name"], _objects(call, payload),
        description=str(call.get("description", " ")), grantable=bool(call.get("grantable")),
        overwrite=bool(call.get("overwrite")), append=bool(call.get("append")))
    return {}, b""


def ds_load(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    found = services.datastores.load(user, call["name"], call.get("objs"),
                                            call.get("owner"))
    meta = [{k: getattr(o, k) for k in _META} for o in found]
    return {"objects": meta}, b"".join(o.data for o in found)


def ds_dir(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    rows = services.datastores.dir(user, call.get("name"), bool(call.get("regex_match")),
                                          str(call.get("dstype", "user")))
    return {"rows": rows}, b""


def ds_describe(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    rows = services.datastores.describe(user, call["name"], call.get("owner"))
    return {"rows": rows}, b""


def ds_delete(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    names = services.datastores.delete(user, call["name"], objs=call.get("objs"),
                                       regex=bool(call.get("regex_match")))
    return {"deleted": names}, b""


def grant(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    """``oml.grant``: the same rules as granting over REST (``epe.service.grants``)."""
    kind, name = object_type(str(call.get("typ", "datastore"))), str(call["name"])
    if call.get("group") is not None:
        services.grants.grant_group(user, kind, name, str(call["group"]))
    else:
        services.grants.grant(user, kind, name, call.get("user"))
    return {}, b""


def revoke(services: Services, user: str, call: dict[str, Any], _payload: bytes) -> Reply:
    kind, name = object_type(str(call.get("typ", "datastore"))), str(call["name"])
    if call.get("group") is not None:
        services.grants.revoke_group(user, kind, name, str(call["group"]))
    else:
        services.grants.revoke(user, kind, name, call.get("user"))
    return {}, b""


async def sync(services: Services, caller: Caller, call: dict[str, Any],
               functions: sql.Functions | None) -> Reply:
    """A table or query's rows, as an Arrow IPC stream the worker turns into pandas; a
    query is read as any other (docs/sql.md): OML's views and table functions too."""
    if call.get("table") is not None:
        # The stored spelling, matched ignoring case: PostgreSQL's quoted names are exact.
        stored = await asyncio.to_thread(services.catalog.describe, caller.name,
                                         check_table_name(str(call["table"])))
        table = await asyncio.to_thread(services.catalog.query, caller.name,
                                        f"SELECT * FROM {quote(stored.name)}")
    elif call.get("query") is not None:
        table = await sql.query(services, caller, str(call["query"]), None, functions)
    else:
        raise InvalidRequest("oml.sync needs table= or query=")
    return {"rows": table.num_rows}, await asyncio.to_thread(arrow_stream, table)


_OPS: dict[str, Op] = {
    "ds.save": ds_save, "ds.load": ds_load, "ds.dir": ds_dir, "ds.describe": ds_describe,
    "ds.delete": ds_delete, "grant": grant, "revoke": revoke,
}
