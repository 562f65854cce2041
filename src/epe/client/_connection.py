"""One logged-in session with an epe server: tokens kept fresh, errors mapped.

A token is refreshed before it expires (docs/api.md#authentication); when the server refuses
the refresh (the refresh chain is over, 8 hours by default) the session logs in
again with the password it keeps. A request answered 401 all the same (the
server restarted with a new key, the token was revoked) is sent once more after
a new login.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from epe.client._errors import error_from_response
from epe.core.operations import API_ROOT
from epe.errors import Unauthorized

API = f"{API_ROOT}/v2"
TOKEN_PATH = "/omlusers/api/oauth2/v1/token"
REVOKE_PATH = TOKEN_PATH + "/revoke"
# Runs may take as long as their server-side time limit: no read timeout here.
TIMEOUT = httpx.Timeout(60.0, read=None)


def segment(name: str) -> str:
    """A name as one URL path segment (script names may hold ``#`` and ``$``)."""
    return quote(name, safe="")


@dataclass
class _Token:
    value: str
    lifetime: float
    expires: float  # time.monotonic() when it expires

    def stale(self) -> bool:
        """Refresh once less than a quarter of its life (at most 5 minutes) is left."""
        return time.monotonic() >= self.expires - min(300.0, self.lifetime / 4)


class Connection:
    """A session as one user: ``request`` sends with a fresh token and raises
    ``epe.errors`` classes for error answers."""

    def __init__(self, url: str, user: str, password: str,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.user = user.upper()
        self._login_name = user
        self._password = password
        self._http = httpx.Client(base_url=self.url, timeout=TIMEOUT, transport=transport,
                                  headers={"Accept": "application/json"})
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.temp_tables: set[str] = set()  # oml.push tables, dropped by disconnect
        self.sql_dialect: str | None = None  # the data backend's, from /query answers
        self.closed = False
        self.logins = 0  # password grants made (the first one included)
        self.refreshes = 0
        weakref.finalize(self, self._http.close)
        self._login()

    # -- tokens --------------------------------------------------------------------------

    def _token_answer(self, body: dict[str, Any], bearer: str | None = None) -> _Token:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        r = self._send("POST", TOKEN_PATH, json=body, headers=headers)
        if r.status_code != 200:
            raise error_from_response(r)
        answer = r.json()
        lifetime = float(answer.get("expiresIn") or 3600)
        return _Token(str(answer["accessToken"]), lifetime, time.monotonic() + lifetime)

    def _login(self) -> str:
        self._token = self._token_answer({"grant_type": "password",
                                          "username": self._login_name,
                                          "password": self._password})
        self.logins += 1
        return self._token.value

    def _refresh(self, token: _Token) -> str:
        try:
            self._token = self._token_answer(
                {"grant_type": "refresh_token", "refresh_token": token.value}, token.value)
        except Unauthorized:  # the chain is over (or the token was revoked): log in again
            return self._login()
        self.refreshes += 1
        return self._token.value

    def token(self) -> str:
        """A token valid for a while yet: refreshed, or a new login, when needed."""
        with self._lock:
            if self.closed:
                raise RuntimeError("this connection was closed; call oml.connect() again")
            if self._token is None:
                return self._login()
            if self._token.stale():
                return self._refresh(self._token)
            return self._token.value

    def _relogin(self, used: str) -> str:
        with self._lock:
            if self._token is not None and self._token.value != used:
                return self._token.value  # another thread logged in meanwhile
            return self._login()

    # -- requests ------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ConnectionError(f"cannot reach the epe server at {self.url}: {e}") from e

    def request(self, method: str, path: str, *, api: bool = True,
                headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        """Send with the bearer token; raise the server's error class for a 4xx/5xx.

        ``path`` is under the API root (``/oml/api/py-scripts/v2``) unless ``api``
        is false. Redirects are not followed: a job's 302 is an answer.
        """
        url = API + path if api else path
        token = self.token()
        for attempt in range(2):
            r = self._send(method, url, headers={**(headers or {}),
                                                 "Authorization": f"Bearer {token}"}, **kw)
            if r.status_code != 401 or attempt:
                break
            token = self._relogin(token)
        if r.status_code >= 400:
            raise error_from_response(r)
        return r

    def get_json(self, path: str, **kw: Any) -> Any:
        """The ``result`` of a GET under the API root."""
        return result_of(self.request("GET", path, **kw))

    def post_json(self, path: str, body: Any, **kw: Any) -> Any:
        """The ``result`` of a POST of ``body`` as JSON under the API root."""
        return result_of(self.request("POST", path, content=orjson.dumps(body),
                                      headers={"Content-Type": "application/json"}, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        """The ``result`` of a DELETE under the API root."""
        return result_of(self.request("DELETE", path, **kw))

    def close(self, revoke: bool = True) -> None:
        """Revoke the token (unless told not to) and close the HTTP client."""
        with self._lock:
            if self.closed:
                return
            token, self._token, self.closed = self._token, None, True
        if revoke and token is not None:
            with contextlib.suppress(ConnectionError):
                self._send("POST", REVOKE_PATH, headers={"Authorization": f"Bearer {token.value}"})
        self._http.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<epe connection to {self.url} as {self.user}, {state}>"


def result_of(response: httpx.Response) -> Any:
    """The ``result`` of a JSON answer (None for an empty body)."""
    return orjson.loads(response.content)["result"] if response.content else None


_current: Connection | None = None


def connect_from(url: str | None, user: str | None, password: str | None) -> Connection:
    """A new connection, each missing argument taken from EPE_URL, EPE_USER, EPE_PASSWORD."""
    url = url or os.environ.get("EPE_URL")
    user = user or os.environ.get("EPE_USER")
    password = password if password is not None else os.environ.get("EPE_PASSWORD")
    missing = [name for name, value in (("url", url), ("user", user), ("password", password))
               if not value]
    if missing:
        env = ", ".join("EPE_" + m.upper() for m in missing)
        raise ValueError(f"give {', '.join(missing)} to connect, or set {env}")
    assert url and user and password is not None
    return Connection(url, user, password)


def set_current(connection: Connection | None) -> None:
    """Make ``connection`` the one ``oml``'s functions use (None: there is none)."""
    global _current
    _current = connection


def current() -> Connection:
    """The connection ``oml.connect`` made; an error if there is none."""
    if _current is None or _current.closed:
        raise RuntimeError("not connected to an epe server: call oml.connect(url, user, "
                           "password) first (or set EPE_URL, EPE_USER, EPE_PASSWORD and call "
                           "oml.connect())")
    return _current


def has_current() -> bool:
    """Whether there is an open connection for ``oml``'s functions."""
    return _current is not None and not _current.closed
