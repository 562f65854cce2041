"""Dependencies every router shares: the services, the job manager, and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from epe.errors import Unauthorized
from epe.service.jobs import JobManager
from epe.service.services import Services
from epe.service.sessions import Caller, authenticate


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]


# Everything that answers without a token (docs/api.md#authentication): the token
# endpoint, liveness and readiness, the web console's page and assets, and the API
# reference. Every other route takes ``CallerDep`` or ``AdminDep`` (revoking reads the
# bearer token itself); the OpenAPI document marks them from this list, and
# tests/acceptance/test_tokens.py asks every path of the document without a token.
TOKEN_FREE = (
    "/omlusers/api/oauth2/v1/token", "/health", "/health/ready",
    "/", "/console", "/console/assets/", "/openapi.json", "/docs", "/docs/oauth2-redirect",
    "/redoc",
)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    return token.strip()


# Dependencies are ``async`` on purpose: FastAPI runs plain ``def`` ones in its
# threadpool, a hop that costs more than the (cached) lookups themselves.
async def current_caller(request: Request, services: ServicesDep) -> Caller:
    return authenticate(services, bearer_token(request))


CallerDep = Annotated[Caller, Depends(current_caller)]


async def admin_caller(caller: CallerDep) -> Caller:
    return caller.require_admin()


AdminDep = Annotated[Caller, Depends(admin_caller)]
