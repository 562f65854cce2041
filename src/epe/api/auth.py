"""Tokens (docs/api.md#authentication): password grant, refresh, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from epe.api.deps import ServicesDep, bearer_token, verify_token
from epe.api.responses import json_response
from epe.auth.passwords import verify_password
from epe.auth.tokens import IssuedToken
from epe.core.requests import TokenRequest
from epe.errors import InvalidRequest, Unauthorized
from epe.users import normalize_name

router = APIRouter(prefix="/omlusers/api/oauth2/v1", tags=["auth"])


def _token_body(issued: IssuedToken) -> Response:
    return json_response({"accessToken": issued.token, "expiresIn": issued.expires_in,
                          "tokenType": "Bearer"})


@router.post("/token")
def token(body: TokenRequest, request: Request, services: ServicesDep) -> Response:
    """Get a token with a password, or refresh one (the chain is capped)."""
    if body.grant_type == "password":
        return _token_body(_password_grant(services, body))
    presented = body.refresh_token or body.token or bearer_token(request)
    claims, user = verify_token(services, presented)
    return _token_body(services.tokens.issue(user.name, chain_start=claims.chain_start))


def _password_grant(services: ServicesDep, body: TokenRequest) -> IssuedToken:
    if not body.username or body.password is None:
        raise InvalidRequest("a password grant needs 'username' and 'password'")
    name = normalize_name(body.username, check=False)
    user = services.store.get_user(name)
    # The same answer, after the same work, for a wrong user and a wrong password.
    if not verify_password(user.password_hash if user else None, body.password) or not user:
        raise Unauthorized("invalid username or password")
    return services.tokens.issue(user.name)


@router.post("/token/revoke")
def revoke(request: Request, services: ServicesDep) -> Response:
    """Revoke the bearer token: refused from now on, for use and for refresh."""
    claims, _user = verify_token(services, bearer_token(request))
    services.store.revoke_token(claims.jti, claims.expires)
    return json_response({"status": "ok"})
