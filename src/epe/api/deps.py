"""Dependencies every router shares: the services, the job manager, the models and
scoring jobs, and who is calling."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from epe.errors import Unauthorized
from epe.service.audit import VIA_TOKEN
from epe.service.jobs import JobManager
from epe.service.models import Models
from epe.service.schedules import ScoringJobs
from epe.service.services import Services
from epe.service.sessions import Caller, authenticate, needs_network


def services_of(request: Request) -> Services:
    return request.app.state.services


async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]


# Everything that answers without a token (docs/api.md#authentication): the token
# endpoint and the ways to sign in, liveness and readiness, the web console's page and
# assets, and the API reference. Every other route takes ``CallerDep`` or ``AdminDep``
# (revoking reads the bearer token itself); the OpenAPI document marks them from this
# list, and tests/acceptance/test_tokens.py asks every path of the document without one.
TOKEN_FREE = (
    "/omlusers/api/oauth2/v1/token", "/omlusers/api/v1/sign-in",
    "/omlusers/api/v1/sign-in/oidc", "/omlusers/api/v1/sign-in/oidc/callback",
    "/health", "/health/ready",
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
async def current_caller(request: Request) -> Caller:
    # The services straight from the app, not as a dependency of their own: each one
    # FastAPI resolves costs every request a few microseconds.
    services = services_of(request)
    token = bearer_token(request)
    if needs_network(services, token):  # the provider or the directory: not on the loop
        caller = await asyncio.to_thread(authenticate, services, token)
    else:
        caller = authenticate(services, token)
    if caller.token_name is not None:
        VIA_TOKEN.set(caller.token_name)  # every audit entry of this request names it
    return caller.may(request.method, request.scope["path"])


CallerDep = Annotated[Caller, Depends(current_caller)]


async def admin_caller(caller: CallerDep) -> Caller:
    return caller.require_admin()


AdminDep = Annotated[Caller, Depends(admin_caller)]


async def session_caller(caller: CallerDep) -> Caller:
    return caller.require_session()


SessionDep = Annotated[Caller, Depends(session_caller)]


async def get_models(request: Request) -> Models:
    return request.app.state.models


ModelsDep = Annotated[Models, Depends(get_models)]


async def get_scoring_jobs(request: Request) -> ScoringJobs:
    return request.app.state.scoring_jobs


ScoringJobsDep = Annotated[ScoringJobs, Depends(get_scoring_jobs)]
