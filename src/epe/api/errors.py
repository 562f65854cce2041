"""The one place where errors become HTTP responses (docs/errors.md).

Domain errors carry their status and OML code; the framework's own errors
(unknown route, wrong method, a body that fails validation) are translated to
the same body so that no client ever sees FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from epe import errors
from epe.api.responses import json_response

log = logging.getLogger("epe.api")

_BY_STATUS: dict[int, type[errors.EpeError]] = {
    400: errors.InvalidRequest, 401: errors.Unauthorized, 403: errors.Forbidden,
    404: errors.NotFound, 405: errors.MethodNotAllowed, 409: errors.Conflict,
    413: errors.PayloadTooLarge, 503: errors.ServerBusy,
}


def error_response(error: errors.EpeError) -> Response:
    headers = {"Retry-After": str(error.extra.pop("retry_after", 1))} \
        if isinstance(error, errors.ServerBusy | errors.TooManyRequests) else None
    if isinstance(error, errors.Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return json_response(error.body(), error.status, headers)


async def _epe_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.EpeError)
    if isinstance(exc, errors.InternalError):
        log.error("internal error: %s", exc.message)
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cls = _BY_STATUS.get(exc.status_code, errors.InternalError)
    message = {404: "no such resource", 405: "method not allowed on this resource"}.get(
        exc.status_code, str(exc.detail))
    return error_response(cls(message))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(errors.InvalidRequest(describe_validation(exc.errors())))


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(errors.InternalError("internal server error; this is a bug in epe"))


def describe_validation(problems: Any) -> str:
    """A person-readable summary of pydantic's errors."""
    parts = []
    for p in problems:
        if p.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        where = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        if p.get("type") == "value_error" and not where:
            parts.append(str(p.get("msg", "")).removeprefix("Value error, "))
        elif p.get("type") == "missing" and where:
            parts.append(f"'{where}' is required")
        elif where:
            parts.append(f"'{where}': {p.get('msg')}")
        else:
            parts.append("the request body must be a JSON object")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.EpeError, _epe_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # A database that cannot serve now is the store's ServerBusy, an EpeError like any other.
    app.add_exception_handler(Exception, _unexpected)
