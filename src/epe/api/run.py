"""The run endpoints (CONTRACT A3, A4, B8): a request becomes a task for the executor."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import Caller, CallerDep, Services, ServicesDep
from epe.api.responses import result_response
from epe.api.scripts import find
from epe.core.params import parse_parameters
from epe.core.requests import DoEvalRequest, RunRequest
from epe.core.scripts import parse_script
from epe.errors import InvalidRequest
from epe.runner.executor import Kind, Task

router = APIRouter(tags=["run"])


def script_key(source: str) -> str:
    # The source's hash: a new version of a script is a new key, so workers'
    # compiled-script caches can never serve a stale version.
    return hashlib.sha256(source.encode()).hexdigest()


def resolve_source(services: Services, caller: Caller, body: RunRequest,
                   name: str | None, owner: str | None) -> str:
    if name is None:
        if body.script is None:
            raise InvalidRequest("give a script name in the path, or the function's source "
                                 "as \"script\" in the body")
        parse_script(body.script)
        return body.script
    return find(services, caller.name, name, owner).source


def run_timeout(services: Services, body: RunRequest) -> int:
    limit = services.settings.max_timeout
    if body.timeout is not None and body.timeout > limit:
        raise InvalidRequest(f"timeout {body.timeout} is over this server's maximum of {limit} "
                             "seconds")
    return body.timeout or services.settings.default_timeout


def check_supported(services: Services, body: RunRequest) -> None:
    """Refuse, clearly, what this server cannot do yet rather than ignore it."""
    if body.env_name is not None:
        raise InvalidRequest(f"unknown environment {body.env_name!r}")
    if body.async_flag:
        raise InvalidRequest("asynchronous runs (asyncFlag) are not available on this server "
                             "yet")
    if body.pickled_parameters is not None or body.result_format != "json":
        raise InvalidRequest("pickledParameters and resultFormat=pickle are not available on "
                             "this server yet")


async def execute(services: Services, caller: Caller, kind: Kind, body: RunRequest,
                  name: str | None, owner: str | None) -> Response:
    source = resolve_source(services, caller, body, name, owner)
    kwargs, controls = parse_parameters(body.parameters)
    if controls.async_:
        body = body.model_copy(update={"async_flag": True})
    check_supported(services, body)
    task = Task(kind=kind, source=source, script_key=script_key(source), kwargs=kwargs,
                graphics=bool(body.graphics_flag or controls.graphics))
    result = await services.executor.run(task, run_timeout(services, body))
    return result_response(result.payload)


@router.post("/do-eval/{scriptName}")
async def do_eval(scriptName: str, caller: CallerDep, services: ServicesDep,
                  body: DoEvalRequest | None = None) -> Response:
    """Run a stored function with no input data: ``f(**parameters)``."""
    return await execute(services, caller, "do_eval", body or DoEvalRequest(), scriptName, None)


@router.post("/do-eval/{scriptName}/{ownerName}")
async def do_eval_owned(scriptName: str, ownerName: str, caller: CallerDep,
                        services: ServicesDep, body: DoEvalRequest | None = None) -> Response:
    """Run another user's (granted) or a global (``PYQSYS``) function."""
    return await execute(services, caller, "do_eval", body or DoEvalRequest(), scriptName,
                         ownerName)


@router.post("/do-eval")
async def do_eval_inline(body: DoEvalRequest, caller: CallerDep,
                         services: ServicesDep) -> Response:
    """Run a function given inline as ``"script"`` (CONTRACT B8)."""
    return await execute(services, caller, "do_eval", body, None, None)
