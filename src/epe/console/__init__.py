"""The web console: one HTML page and its bundled assets, served without a token.

The page is a client of the public REST API like any other: it signs in through
the token endpoint and sends the bearer token with every data call, so it sees
and may do exactly what its user may (docs/console.md). Nothing here reads the
store or the catalog.

``static/`` is built from ``console/`` at the repository's root by
``make console-assets`` and committed, so installing epe needs no Node.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

HERE = Path(__file__).parent
STATIC = HERE / "static"
ASSETS = "/console/assets"

NONCE = "{{style-nonce}}"  # in index.html, replaced by each answer's own


def csp(style_nonce: str | None = None) -> str:
    """No inline script and no eval anywhere: script-src is the page's own origin
    only, so text that slipped into the page as markup still could not run. The
    code editor adds its style elements at run time; they carry the nonce the page
    was served with, and no other inline style is allowed."""
    style = "style-src 'self'" + (f" 'nonce-{style_nonce}'" if style_nonce else "")
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        style,
        "img-src 'self' data:",  # plots arrive as base64 PNGs
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])


HEADERS = {
    "Content-Security-Policy": csp(),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade is seen at once
}


class Assets(StaticFiles):
    """The bundle, with the console's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def page_response(template: str) -> Response:
    nonce = secrets.token_urlsafe(18)
    return HTMLResponse(template.replace(NONCE, nonce),
                        headers={**HEADERS, "Content-Security-Policy": csp(nonce)})


def router() -> APIRouter:
    template = (HERE / "index.html").read_text()
    routes = APIRouter(include_in_schema=False)

    @routes.get("/")
    @routes.get("/console")
    def console() -> Response:
        return page_response(template)

    @routes.get("/console/")
    def console_slash() -> Response:
        # The page loads its assets relative to itself: one address, without the slash.
        return RedirectResponse("../console", headers=HEADERS)

    return routes


def install(app: FastAPI) -> None:
    """Serve the console at ``/`` and ``/console``, its assets under ``/console/assets``."""
    app.include_router(router())
    app.mount(ASSETS, Assets(directory=STATIC), name="console-assets")
