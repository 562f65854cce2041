"""Dependencies every router shares: the services, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from epe.auth.tokens import TokenClaims, TokenService
from epe.data import Catalog
from epe.errors import Forbidden, Unauthorized
from epe.runner.environments import EnvironmentPools
from epe.runner.executor import Executor
from epe.settings import Settings
from epe.store import Store, UserRecord


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenService
    executor: Executor
    catalog: Catalog
    environments: EnvironmentPools  # named environments; ``executor`` runs the default one


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    return token.strip()


def verify_token(services: Services, token: str) -> tuple[TokenClaims, UserRecord]:
    """The claims and user of a token that is valid, unrevoked and whose user exists."""
    claims = services.tokens.decode(token)
    if services.store.is_revoked(claims.jti):
        raise Unauthorized("the token has been revoked")
    user = services.store.get_user(claims.user)
    # A chain that began before the account existed belongs to a deleted
    # namesake: the new user inherits none of its tokens.
    if user is None or claims.chain_start < int(user.created):
        raise Unauthorized("the token's user no longer exists")
    return claims, user


@dataclass(frozen=True)
class Caller:
    user: UserRecord
    claims: TokenClaims

    @property
    def name(self) -> str:
        return self.user.name


# Dependencies are ``async`` on purpose: FastAPI runs plain ``def`` ones in its
# threadpool, a hop that costs more than the (cached) lookups themselves.
async def current_caller(request: Request, services: ServicesDep) -> Caller:
    claims, user = verify_token(services, bearer_token(request))
    return Caller(user, claims)


CallerDep = Annotated[Caller, Depends(current_caller)]


async def admin_caller(caller: CallerDep) -> Caller:
    if not caller.user.is_admin:
        raise Forbidden("this action needs the admin role")
    return caller


AdminDep = Annotated[Caller, Depends(admin_caller)]
