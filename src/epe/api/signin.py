"""How to sign in here, and the console's single sign-on: OpenID Connect's authorization
code flow with PKCE (docs/sign-in.md#the-console).

``/sign-in/oidc`` sends the browser to the provider with a fresh state, nonce and PKCE
challenge, whose verifier waits in a sealed, HttpOnly cookie; ``/sign-in/oidc/callback``
trades the code for the provider's tokens, checks the ID token, makes or updates the
user, and hands the console a token of ours in the URL's fragment (never sent to a
server; the console takes it out of the address at once).
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.background import BackgroundTask

from epe.api.deps import ServicesDep
from epe.api.responses import json_response
from epe.auth.provider import Pkce, Provider
from epe.auth.tokens import IssuedToken
from epe.errors import EpeError, InvalidRequest
from epe.service import sessions

router = APIRouter(prefix="/omlusers/api/v1/sign-in", tags=["auth"])

COOKIE = "epe_sign_in"
SIGN_IN_LIFETIME = 600  # seconds from the redirect to the callback
# From .../sign-in/oidc/callback back to the console at the server's root.
CONSOLE = "../../../../../console"


@router.get("")
def ways(services: ServicesDep) -> Response:
    """How one signs in here (no token needed): the console offers what this says."""
    s = services.settings
    oidc = {"name": s.oidc_name, "url": "omlusers/api/v1/sign-in/oidc"} \
        if services.provider is not None and s.oidc_client_id else None
    return json_response({"password": True, "directory": services.directory is not None,
                          "oidc": oidc})


def _provider(services: ServicesDep) -> Provider:
    if services.provider is None or not services.settings.oidc_client_id:
        raise InvalidRequest("single sign-on is not set up here (EPE_OIDC_ISSUER, "
                             "EPE_OIDC_CLIENT_ID)")
    return services.provider


@router.get("/oidc")
async def start(request: Request, services: ServicesDep) -> Response:
    """To the provider's sign-in page."""
    provider, pkce = _provider(services), Pkce.new()
    redirect_uri = str(request.url_for("oidc_callback"))
    url = await asyncio.to_thread(provider.authorization_url, redirect_uri, pkce)
    answer = RedirectResponse(url, status_code=302)
    sealed = services.tokens.seal(vars(pkce), SIGN_IN_LIFETIME)
    answer.set_cookie(COOKIE, sealed, max_age=SIGN_IN_LIFETIME, httponly=True,
                      samesite="lax", secure=request.url.scheme == "https",
                      path=request.url_for("oidc_callback").path)
    return answer


@router.get("/oidc/callback", name="oidc_callback")
async def callback(request: Request, services: ServicesDep) -> Response:
    """The provider's answer: to the console, signed in, or with what went wrong."""
    issued = None
    try:
        issued = await asyncio.to_thread(_signed_in, request, services)
        fragment = f"token={quote(issued.token)}&expiresIn={issued.expires_in}"
    except EpeError as e:
        fragment = f"signinError={quote(e.message)}"
    answer = RedirectResponse(f"{CONSOLE}#{fragment}", status_code=302,
                              headers={"Cache-Control": "no-store",
                                       "Referrer-Policy": "no-referrer"})
    answer.delete_cookie(COOKIE, path=request.url.path)
    if issued is not None:  # once the answer is sent: the user's first run made ready
        answer.background = BackgroundTask(services.signed_in, issued.user)
    return answer


def _signed_in(request: Request, services: ServicesDep) -> IssuedToken:
    provider = _provider(services)
    query = request.query_params
    if "error" in query:
        raise InvalidRequest("the identity provider did not sign you in: "
                             f"{query.get('error_description') or query['error']}")
    pkce = Pkce(**services.tokens.unseal(request.cookies.get(COOKIE, "")))
    if not query.get("code") or query.get("state") != pkce.state:
        raise InvalidRequest("the sign-in's state does not match: start again")
    redirect_uri = str(request.url_for("oidc_callback"))
    claims = provider.exchange(query["code"], redirect_uri, pkce)
    client = request.client.host if request.client else "unknown"
    return sessions.log_in_with_provider(services, provider.identity(claims), client)
