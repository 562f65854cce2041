"""The run endpoints: thin routes over ``epe.service.runs``, one set per operation.

Each operation of ``core.operations`` (its own, and those plugins register) answers
at ``/{op}/{scriptName}``, ``/{op}/{scriptName}/{ownerName}`` and, for inline
functions, ``/{op}`` with ``"script"`` in the body (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from epe.api.deps import CallerDep, get_jobs, services_of
from epe.api.jobs import job_url
from epe.api.responses import result_response
from epe.core.operations import OPERATIONS, Operation
from epe.core.requests import RunRequest
from epe.errors import InvalidRequest
from epe.service.pyq import TableFunctions
from epe.service.runs import prepare, run
from epe.service.services import Services
from epe.service.sessions import Caller

Endpoint = Callable[..., Awaitable[Response]]


async def respond(request: Request, services: Services, caller: Caller, op: Operation,
                  body: RunRequest, *, name: str | None = None,
                  owner: str | None = None) -> Response:
    """Run now and answer 200, or as a job and answer 201 with its ``Location``; 503 once
    the server is stopping."""
    services.drain.admit()
    prepared = prepare(services, caller, op, body, name=name, owner=owner)
    jobs = await get_jobs(request)
    if prepared.asynchronous:
        job = await jobs.submit(prepared, request.headers.get("idempotency-key"))
        return Response(status_code=201, headers={"Location": job_url(request, job.id)})
    # OML's table functions in the input run as in POST /query.
    functions = TableFunctions(services, caller, jobs, lambda job_id: job_url(request, job_id))
    return result_response(await services.drain.guard(run(services, prepared,
                                                          functions=functions)))


def _endpoints(op: Operation) -> list[tuple[str, Endpoint]]:
    """The three routes of one operation, with its request model as their typed body.

    The body may be left out where every field has a default (do-eval).
    """
    model, doc = op.request, op.summary

    def given(body: RunRequest | None) -> RunRequest:
        if body is not None:
            return body
        try:
            return model()
        except ValidationError:
            raise InvalidRequest("this request needs a JSON body; see the API docs at "
                                 "/docs") from None

    # The services come from the app rather than as a dependency: FastAPI resolves each
    # one per request, a cost every sync run would pay (docs/benchmarks.md#do-eval-latency).
    async def named(scriptName: str, request: Request, caller: CallerDep,
                    body: RunRequest | None = None) -> Response:
        return await respond(request, services_of(request), caller, op, given(body),
                             name=scriptName)

    async def owned(scriptName: str, ownerName: str, request: Request,
                    caller: CallerDep, body: RunRequest | None = None) -> Response:
        return await respond(request, services_of(request), caller, op, given(body),
                             name=scriptName, owner=ownerName)

    async def inline(request: Request, caller: CallerDep,
                     body: RunRequest | None = None) -> Response:
        return await respond(request, services_of(request), caller, op, given(body))

    for endpoint in (named, owned, inline):
        # FastAPI reads the body's model from the annotation: make it this operation's.
        endpoint.__annotations__["body"] = model | None
    named.__doc__ = doc
    owned.__doc__ = doc + " The script is the named owner's (granted, or global: PYQSYS)."
    inline.__doc__ = doc + " The function's source is the body's \"script\"."
    path = "/" + op.path
    return [(path + "/{scriptName}", named), (path + "/{scriptName}/{ownerName}", owned),
            (path, inline)]


def router() -> APIRouter:
    """The routes of every operation, those plugins registered included: made when the
    app is, after ``EPE_PLUGINS`` were imported."""
    made = APIRouter(tags=["run"])
    for op in OPERATIONS.values():
        for path, endpoint in _endpoints(op):
            made.add_api_route(path, endpoint, methods=["POST"],
                               name=f"{op.kind}:{path.count('/')}")
    return made
