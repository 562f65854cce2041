"""Automation tokens: made, listed and revoked by their users; admins list and revoke
anyone's (docs/api.md#automation-tokens)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep, SessionDep
from epe.api.responses import json_response
from epe.core.requests import ApiTokenCreate
from epe.service import apitokens

router = APIRouter(prefix="/omlusers/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=201)
def create_token(body: ApiTokenCreate, caller: SessionDep, services: ServicesDep) -> Response:
    """A new token: its secret is in this answer only."""
    made, secret = apitokens.create(services, caller, body.name, body.expires_in, body.scope)
    return json_response({**apitokens.shown(made), "token": secret}, 201)


@router.get("")
async def list_tokens(caller: CallerDep, services: ServicesDep,
                      user: str | None = None) -> Response:
    """The caller's tokens; an admin's ``?user=NAME`` (or ``?user=*``: everyone's)."""
    found = await asyncio.to_thread(apitokens.listed, services, caller, user)
    return json_response({"items": [apitokens.shown(t) for t in found]})


@router.delete("/{token_id}")
def revoke_token(token_id: str, caller: SessionDep, services: ServicesDep) -> Response:
    """Revoke a token of the caller's (an admin: anyone's); it is refused from now on."""
    apitokens.revoke(services, caller, token_id)
    return json_response({"result": f"token {token_id} revoked"})
