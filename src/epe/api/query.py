"""Read-only queries (docs/tables.md): the rows of ``input`` as the caller sees them."""

from __future__ import annotations

import asyncio

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import result_response
from epe.core.assemble import check_size
from epe.core.requests import QueryRequest
from epe.core.results import to_json

router = APIRouter(tags=["tables"])

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


@router.post("/query")
async def query(body: QueryRequest, request: Request, caller: CallerDep,
                services: ServicesDep) -> Response:
    """The rows as JSON records, or as an Arrow IPC stream when the request's
    ``Accept`` is ``application/vnd.apache.arrow.stream``."""
    table = await asyncio.to_thread(services.catalog.query, caller.name, body.input)
    limit = services.settings.output_limit
    if ARROW_STREAM in request.headers.get("accept", ""):
        data = check_size(await asyncio.to_thread(arrow_stream, table), limit)
        return Response(data, media_type=ARROW_STREAM)
    records = await asyncio.to_thread(lambda: to_json(table.to_pylist(), limit))
    return result_response(records)
