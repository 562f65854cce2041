"""ASGI middleware: each request's id, metrics and access log line; requests under way,
for a drain; the request body limit (413); v1's deprecation headers; OML's tenant-scoped
paths; reading form-typed bodies as JSON; refusing JSON bodies with lone surrogates."""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
from email.utils import format_datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from epe.api.errors import error_response
from epe.core.operations import API_ROOT, V1_RETIRED
from epe.errors import InvalidRequest, PayloadTooLarge
from epe.observe import metrics
from epe.observe.logs import REQUEST_ID, request_id_from

V1_PREFIX = f"{API_ROOT}/v1"
# RFC 9745 (Deprecation: @epoch, the day it is deprecated) and RFC 8594 (Sunset: the last
# moment it answers), both of the day OML retired v1.
_RETIRED = datetime.datetime.combine(V1_RETIRED, datetime.time(), datetime.UTC)
DEPRECATION = (b"deprecation", f"@{int(_RETIRED.timestamp())}".encode())
SUNSET = (b"sunset", format_datetime(_RETIRED + datetime.timedelta(days=1, seconds=-1),
                                     usegmt=True).encode())
CLOSE = (b"connection", b"close")


access = logging.getLogger("epe.access")


class Observe:
    """Every HTTP request: its id (the client's ``X-Request-ID`` or a new one, set for
    whatever logs meanwhile and echoed in the answer), its metrics by route template and
    status, and one access line (method, path, status, time; never a query string,
    header or body).

    Outermost, so that it sees every answer; the route is what the router left in the
    scope, so a path no route matched is one series (``UNMATCHED``), not one per path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = request_id_from(None if given is None else given.decode("latin-1"))
        echoed = (b"x-request-id", request_id.encode())
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500  # an exception that escapes is answered 500 further out

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            seconds = time.perf_counter() - start
            template = route_template(scope)
            metrics.http_request(scope["method"], template, status, seconds)
            if access.isEnabledFor(logging.INFO):
                access.info("%s %s %d %.1f ms", scope["method"], scope["path"], status,
                            seconds * 1000, extra={"fields": {
                                "method": scope["method"], "path": scope["path"],
                                "route": template, "status": status,
                                "durationMs": round(seconds * 1000, 3)}})
            REQUEST_ID.reset(token)


class Draining:
    """Requests under way, counted for a stopping server's drain (``epe.service.drain``,
    which waits for them). While it drains, every answer says ``Connection: close``:
    the client's next request opens a connection that a load balancer sends elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = scope["app"].state.services.drain

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and drain.draining:
                message["headers"] = [*message.get("headers", ()), CLOSE]
            await send(message)

        drain.requests += 1
        try:
            await self.app(scope, receive, closing)
        finally:
            drain.requests -= 1


def route_template(scope: Scope) -> str:
    """The whole path template of the route that answered (``UNMATCHED`` if none did).

    A route knows its path below the prefix its router was included under
    (``/do-eval/{scriptName}`` under ``/oml/api/py-scripts/v2``); the prefix is the
    request path's leading segments, as many as the path has beyond the route's.
    """
    tail = getattr(scope.get("route"), "path", None)
    if not tail:
        return metrics.UNMATCHED
    segments = scope["path"].split("/")
    return "/".join(segments[:len(segments) - tail.count("/")]) + tail


class BodyLimit:
    """Refuse bodies over the limit, by their header or as they stream in.

    Table uploads (``PUT .../tables/...``) and model uploads (``POST /omlmod/v1/models``)
    have their own limits.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int,
                 model_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.model_limit = model_limit or limit

    def _limit_for(self, scope: Scope) -> int:
        if scope["method"] == "PUT" and "/tables/" in scope["path"]:
            return self.upload_limit
        if scope["method"] == "POST" and scope["path"] == "/omlmod/v1/models":
            return self.model_limit + FORM_OVERHEAD  # the form's other fields and framing
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                await self._refuse(limit, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        # No length given (chunked): read it all first, so that an oversized body
        # is refused with 413 here rather than failing inside the framework.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > limit:
                await self._refuse(limit, scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(PayloadTooLarge(_too_large(limit)))(scope, receive, send)


FORM_OVERHEAD = 1024**2


def _too_large(limit: int) -> str:
    return f"the request body is over this server's limit of {limit} bytes"


class DeprecateV1:
    """Mark every v1 answer deprecated, as OML does (v2 is current)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(V1_PREFIX):
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), DEPRECATION, SUNSET]
            await send(message)

        await self.app(scope, receive, marked)


# OML's older URL form names the cloud tenant and database before ``/api``:
# /oml/tenants/{tenant}/databases/{database}/api/py-scripts/... and
# /omlusers/tenants/{tenant}/databases/{database}/api/oauth2/v1/token.
TENANT_PATH = re.compile(r"^/(oml|omlusers)/tenants/[^/]+/databases/[^/]+(/api(?:/.*)?)$")
TENANT_RAW_PATH = re.compile(rb"^/(oml|omlusers)/tenants/[^/]+/databases/[^/]+(/api(?:/.*)?)$")


class TenantPaths:
    """Answer OML's tenant-scoped paths as the plain ones (docs/api.md#tenant-scoped-paths).

    An epe server is one tenant with one database, so the two names are accepted
    whatever they are and dropped: ``/oml/tenants/T/databases/D/api/py-scripts/v2/jobs``
    is ``/oml/api/py-scripts/v2/jobs``. The path is rewritten in place, before the
    router (and ``DeprecateV1``) see it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/tenants/" in scope["path"]:
            match = TENANT_PATH.match(scope["path"])
            if match is not None:
                # In place: ``Observe`` reads the route the router leaves in this scope.
                scope["path"] = f"/{match.group(1)}{match.group(2)}"
                raw = TENANT_RAW_PATH.match(scope.get("raw_path") or b"")
                if raw is not None:  # still percent-encoded, as the client sent it
                    scope["raw_path"] = b"/" + raw.group(1) + raw.group(2)
        await self.app(scope, receive, send)


class FormBodyAsJson:
    """Treat ``application/x-www-form-urlencoded`` bodies as JSON.

    ``curl -d '{...}'`` without ``-H 'Content-Type: application/json'`` sends that
    type; every endpoint of ours that takes a body takes JSON or a file with its
    own type, so reading it as JSON is what the user meant. The model upload takes a
    form (``FORM_PATHS``), urlencoded too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in FORM_PATHS:
            headers = scope["headers"]
            if any(k == b"content-type" and v.startswith(FORM) for k, v in headers):
                # In place: ``Observe`` reads the route the router leaves in this scope.
                scope["headers"] = [(k, b"application/json" if k == b"content-type" else v)
                                    for k, v in headers]
        await self.app(scope, receive, send)


FORM = b"application/x-www-form-urlencoded"
# Routes that take a form (a model's upload, whose fields a PYTHON model may send alone).
FORM_PATHS = frozenset({"/omlmod/v1/models"})


class RefuseLoneSurrogates:
    """Refuse a JSON body whose text holds a lone UTF-16 surrogate (``"\\ud800"``).

    JSON's grammar allows the escape, and Python's ``json`` decodes it (and the same
    code point written as raw UTF-8 bytes) into a ``str`` that cannot be encoded back:
    SQLite, argon2, the parser and orjson all fail on it later, as a 500. It is the
    client's mistake, so it is a 400 here, before any route sees it. Bodies without
    such an escape (all of them, in practice) cost one byte scan. Table uploads are
    left to their readers, which refuse it themselves.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        if _SURROGATE.search(body) and _holds_lone_surrogate(body):
            await error_response(InvalidRequest(
                "the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff "
                "without its pair), which is not a character"))(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


# A surrogate written as a JSON escape, or as (invalid) UTF-8 bytes.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _json_body(scope: Scope) -> bool:
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    if scope["method"] == "PUT" and "/tables/" in scope["path"]:
        return False
    content_type = dict(scope["headers"]).get(b"content-type", b"application/json")
    kind = content_type.split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


def _holds_lone_surrogate(body: bytes) -> bool:
    try:
        value = json.loads(body)
    except Exception:  # not JSON at all: the route's own parsing answers 400
        return False
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False
