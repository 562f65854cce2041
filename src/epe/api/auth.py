"""Tokens: password grant, refresh, revoke (docs/api.md, tokens)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask

from epe.api.deps import ServicesDep, bearer_token
from epe.api.responses import json_response
from epe.auth.tokens import IssuedToken
from epe.core.requests import TokenRequest
from epe.service import sessions

router = APIRouter(prefix="/omlusers/api/oauth2/v1", tags=["auth"])


def _token_body(issued: IssuedToken) -> Response:
    return json_response({"accessToken": issued.token, "expiresIn": issued.expires_in,
                          "tokenType": "Bearer"})


def _signed_in(issued: IssuedToken, services: ServicesDep) -> Response:
    """The token's answer; once it is sent, the user's next run is made ready on this
    server (a refresh too: this server may have started, or be another replica, since
    the user signed in)."""
    answer = _token_body(issued)
    answer.background = BackgroundTask(services.signed_in, issued.user)
    return answer


@router.post("/token")
def token(body: TokenRequest, request: Request, services: ServicesDep) -> Response:
    """Get a token with a password, or refresh one (the chain is capped)."""
    if body.grant_type == "password":
        client = request.client.host if request.client else "unknown"
        return _signed_in(sessions.log_in(services, body.username, body.password, client),
                          services)
    presented = body.refresh_token or body.token or bearer_token(request)
    return _signed_in(sessions.refresh(services, presented), services)


@router.post("/token/revoke")
def revoke(request: Request, services: ServicesDep) -> Response:
    """Revoke the bearer token: refused from now on, for use and for refresh."""
    sessions.revoke(services, bearer_token(request))
    return json_response({"status": "ok"})
