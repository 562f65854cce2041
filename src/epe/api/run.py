"""The run endpoints (docs/api.md#running-functions): thin routes over ``epe.execution``.

Each operation answers at ``/{op}/{scriptName}``, ``/{op}/{scriptName}/{ownerName}``
and, for inline functions, ``/{op}`` with ``"script"`` in the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from epe.api.deps import Caller, CallerDep, Services, ServicesDep
from epe.api.jobs import get_jobs, job_url
from epe.api.responses import result_response
from epe.core.requests import (
    DoEvalRequest,
    GroupApplyRequest,
    IndexApplyRequest,
    RowApplyRequest,
    RunRequest,
    TableApplyRequest,
)
from epe.errors import InvalidRequest
from epe.execution import prepare, run
from epe.runner.executor import Kind

router = APIRouter(tags=["run"])

Endpoint = Callable[..., Awaitable[Response]]


async def respond(request: Request, services: Services, caller: Caller, kind: Kind,
                  body: RunRequest, name: str | None, owner: str | None) -> Response:
    """Run now and answer 200, or as a job and answer 201 with its ``Location``."""
    prepared = prepare(services, caller, kind, body, name, owner)
    if prepared.asynchronous:
        job = (await get_jobs(request)).submit(prepared, request.headers.get("idempotency-key"))
        return Response(status_code=201, headers={"Location": job_url(request, job.id)})
    return result_response(await run(services, prepared))


def _endpoints(kind: Kind, model: type[RunRequest], doc: str) -> list[tuple[str, Endpoint]]:
    """The three routes of one operation, with ``model`` as their typed body.

    The body may be left out where every field has a default (do-eval).
    """

    def given(body: RunRequest | None) -> RunRequest:
        if body is not None:
            return body
        try:
            return model()
        except ValidationError:
            raise InvalidRequest("this request needs a JSON body; see the API docs at "
                                 "/docs") from None

    async def named(scriptName: str, request: Request, caller: CallerDep,
                    services: ServicesDep, body: RunRequest | None = None) -> Response:
        return await respond(request, services, caller, kind, given(body), scriptName, None)

    async def owned(scriptName: str, ownerName: str, request: Request,
                    caller: CallerDep, services: ServicesDep,
                    body: RunRequest | None = None) -> Response:
        return await respond(request, services, caller, kind, given(body), scriptName,
                             ownerName)

    async def inline(request: Request, caller: CallerDep, services: ServicesDep,
                     body: RunRequest | None = None) -> Response:
        return await respond(request, services, caller, kind, given(body), None, None)

    for endpoint in (named, owned, inline):
        # FastAPI reads the body's model from the annotation: make it this operation's.
        endpoint.__annotations__["body"] = model | None
    named.__doc__ = doc
    owned.__doc__ = doc + " The script is the named owner's (granted, or global: PYQSYS)."
    inline.__doc__ = doc + " The function's source is the body's \"script\"."
    path = "/" + kind.replace("_", "-")
    return [(path + "/{scriptName}", named), (path + "/{scriptName}/{ownerName}", owned),
            (path, inline)]


OPERATIONS: list[tuple[Kind, type[RunRequest], str]] = [
    ("do_eval", DoEvalRequest, "Run a function with no input: f(**parameters)."),
    ("table_apply", TableApplyRequest, "Run a function once on the whole input query result."),
    ("row_apply", RowApplyRequest, "Run a function on chunks of `rows` rows of the input."),
    ("group_apply", GroupApplyRequest, "Run a function once per group of `groupBy`."),
    ("index_apply", IndexApplyRequest, "Run a function `times` times: f(i) for i = 1..times."),
]

for _kind, _model, _doc in OPERATIONS:
    for _path, _endpoint in _endpoints(_kind, _model, _doc):
        router.add_api_route(_path, _endpoint, methods=["POST"],
                             name=f"{_kind}:{_path.count('/')}")
