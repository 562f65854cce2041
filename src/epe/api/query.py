"""Read-only queries: the rows of ``input`` as the caller sees them (docs/tables.md,
docs/sql.md: Oracle's dialect, OML's PYQ views and table functions)."""

from __future__ import annotations

import asyncio
import base64
from functools import partial

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from epe.api.deps import CallerDep, JobsDep, ServicesDep
from epe.api.jobs import job_url
from epe.api.responses import result_response
from epe.core.assemble import check_size
from epe.core.requests import QueryRequest
from epe.core.results import arrow_stream, to_json
from epe.service import sql
from epe.service.pyq import TableFunctions

router = APIRouter(tags=["tables"])

ARROW_STREAM = "application/vnd.apache.arrow.stream"
# The data backend's SQL dialect, for clients that write their own SQL for it (the
# Python client's proxies compile theirs with Ibis): "duckdb" or "postgres".
DIALECT_HEADER = "Epe-Sql-Dialect"


@router.post("/query")
async def query(body: QueryRequest, request: Request, caller: CallerDep,
                services: ServicesDep, jobs: JobsDep) -> Response:
    """The rows as JSON records, or as an Arrow IPC stream when the request's
    ``Accept`` is ``application/vnd.apache.arrow.stream``. Binary columns (the images
    of ``pyq*Eval`` with ``out_fmt => 'PNG'``) are base64 in JSON."""
    functions = TableFunctions(services, caller, jobs, partial(job_url, request))
    table = await sql.query(services, caller, body.input, body.dialect, functions)
    limit = services.settings.output_limit
    dialect = {DIALECT_HEADER: services.catalog.dialect}
    if ARROW_STREAM in request.headers.get("accept", ""):
        data = check_size(await asyncio.to_thread(arrow_stream, table), limit)
        return Response(data, media_type=ARROW_STREAM, headers=dialect)
    records = await asyncio.to_thread(lambda: to_json(json_ready(table).to_pylist(), limit))
    answer = result_response(records)
    answer.headers.update(dialect)
    return answer


def json_ready(table: pa.Table) -> pa.Table:
    """Binary columns as base64 text, as OML's REST API sends images."""
    for i, f in enumerate(table.schema):
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            text = [None if v is None else base64.b64encode(v).decode()
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(text, pa.string()))
    return table
