"""The errors epe reports, each with its OML ``errorCode`` and HTTP status.

Every error a user can see is an ``EpeError``. ``api/errors.py`` turns them into
the OML body ``{"errorCode": int, "errorMessage": str, ...}`` in one place, and
the Python client maps the body back to the same class by ``errorCode``.

    EpeError
    ├── BadRequest                 400
    │   ├── InvalidRequest         400 / 1001  malformed body, failed validation
    │   ├── ScriptInvalid          400 / 1010  source does not parse or has no function
    │   ├── ScriptFailed           400 / 1011  the user's function raised
    │   ├── ResultNotSerializable  400 / 1012  the value cannot become JSON
    │   ├── WorkerDied             400 / 1013  the worker process died under the function
    │   ├── TimeLimitExceeded      400 / 1014  the run went past its timeout
    │   ├── JobInterrupted         400 / 1015  the server stopped while the job (or run) ran
    │   └── OutputTooLarge         400 / 1024  the result is over the output limit (OML)
    ├── Unauthorized               401 / 2001  missing, bad, expired or revoked token
    ├── Forbidden                  403 / 3001  the caller lacks a role the action needs
    ├── NotFound                   404 / 4004  no such object that the caller may see
    ├── MethodNotAllowed           405 / 4005
    ├── Conflict                   409 / 4009  the object already exists
    ├── PayloadTooLarge            413 / 4013
    ├── TooManyRequests            429 / 4029  too many failed logins; retry later
    ├── ServerBusy                 503 / 5003  not accepted; retry later
    │   └── SignInUnavailable      503 / 5005  the directory or the provider cannot answer
    ├── NotReady                   503 / 5004  a part cannot serve now (/health/ready)
    ├── InternalError              500 / 5000  our bug
    └── InvalidSetting             500 / 5001  the server's settings are wrong (at start)

``docs/errors.md`` is the table of these codes; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EpeError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[int] = 5000

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        return {"errorCode": self.code, "errorMessage": self.message, **self.extra}


class BadRequest(EpeError):
    status = 400
    code = 1000


class InvalidRequest(BadRequest):
    code = 1001


class ScriptInvalid(BadRequest):
    code = 1010


class ScriptFailed(BadRequest):
    code = 1011


class ResultNotSerializable(BadRequest):
    code = 1012


class WorkerDied(BadRequest):
    code = 1013


class TimeLimitExceeded(BadRequest):
    code = 1014


class JobInterrupted(BadRequest):
    code = 1015


class OutputTooLarge(BadRequest):
    code = 1024


class Unauthorized(EpeError):
    status = 401
    code = 2001


class Forbidden(EpeError):
    status = 403
    code = 3001


class NotFound(EpeError):
    status = 404
    code = 4004


class MethodNotAllowed(EpeError):
    status = 405
    code = 4005


class Conflict(EpeError):
    status = 409
    code = 4009


class PayloadTooLarge(EpeError):
    status = 413
    code = 4013


class TooManyRequests(EpeError):
    status = 429
    code = 4029


class ServerBusy(EpeError):
    status = 503
    code = 5003


class SignInUnavailable(ServerBusy):
    """The directory or the identity provider cannot be reached: the client may retry;
    never a 500 (docs/sign-in.md)."""

    code = 5005


class NotReady(EpeError):
    """A part of the server (the store, the data layer, the executor) cannot serve now:
    the answer of ``GET /health/ready``, never of a run."""

    status = 503
    code = 5004


class InternalError(EpeError):
    status = 500
    code = 5000


class InvalidSetting(EpeError):
    """A setting the server cannot start with (a URL it cannot open): said by the
    command that starts it, never sent to a client."""

    status = 500
    code = 5001


def all_errors() -> list[type[EpeError]]:
    """Every concrete error class, base first (used by the docs test and the client)."""
    found: list[type[EpeError]] = [EpeError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def error_for_code(code: int) -> type[EpeError]:
    """The most specific class carrying ``code`` (the client maps bodies back with it)."""
    for cls in reversed(all_errors()):
        if cls.code == code:
            return cls
    return EpeError
