"""Error bodies (docs/errors.md) back into the exception classes the server raised."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from epe import errors
from epe.errors import EpeError


def error_from_body(body: Any, status: int) -> EpeError:
    """The ``epe.errors`` class of the body's ``errorCode``, with its message and extras.

    The extras (``traceback``, ``stdout``, ``chunk``, ``group``, ``index``) are in
    ``.extra`` and also attributes of the exception; the server's traceback and
    what the function printed are added as notes, so Python shows them under the
    client's own traceback.
    """
    if not isinstance(body, dict) or not isinstance(body.get("errorCode"), int):
        return _unexpected(status, body)
    code = int(body["errorCode"])
    message = str(body.get("errorMessage") or f"HTTP {status}")
    extra = {k: v for k, v in body.items() if k not in ("errorCode", "errorMessage")}
    cls = errors.error_for_code(code)
    error = cls(message, **extra)
    details = vars(error)
    if cls.code != code:  # a code this client does not know: keep the server's
        details["code"] = code
    details["status_code"] = status
    details.setdefault("traceback", extra.get("traceback"))
    details.setdefault("stdout", extra.get("stdout"))
    if isinstance(extra.get("traceback"), str):
        error.add_note("Traceback on the server (most recent call last):\n"
                       + _after_header(extra["traceback"]).rstrip())
    if isinstance(extra.get("stdout"), str) and extra["stdout"]:
        error.add_note("What the function printed:\n" + extra["stdout"].rstrip())
    return error


def error_from_response(response: httpx.Response) -> EpeError:
    """The exception for an HTTP error answer, whatever its body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.text
    return error_from_body(body, response.status_code)


def error_from_refusal(kind: str, message: str) -> EpeError:
    """A refusal reported by name (``CallRefused.kind`` inside a worker) as its class."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, EpeError):
        return cls(message)
    return EpeError(message)


def _after_header(traceback: str) -> str:
    first, _, rest = traceback.partition("\n")
    return rest if first.startswith("Traceback") else traceback


def _unexpected(status: int, body: Any) -> EpeError:
    """A body that is not an epe error (a proxy's HTML page, say): the class of its status."""
    by_status = {400: errors.InvalidRequest, 401: errors.Unauthorized, 403: errors.Forbidden,
                 404: errors.NotFound, 405: errors.MethodNotAllowed, 409: errors.Conflict,
                 413: errors.PayloadTooLarge, 503: errors.ServerBusy}
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    error = by_status.get(status, errors.InternalError)(
        f"HTTP {status} without an epe error body: {text[:500]}")
    vars(error)["status_code"] = status
    return error


class Unsupported(NotImplementedError):
    """What epe's client does not do, by design (OML's in-database algorithms, pandas
    methods a data proxy has no SQL for; docs/client.md): the message names the operation
    and what to do instead. A ``NotImplementedError``, as pandas raises for what it does
    not do, so notebook code that catches that keeps working."""
