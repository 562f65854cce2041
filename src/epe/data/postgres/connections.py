"""Connections to the PostgreSQL database of users' tables: ADBC, kept in small pools,
and PostgreSQL's errors turned into epe's.

There is one pool for the connecting role of ``EPE_DATA_URL`` (the catalog's own work:
roles, schemas, uploads, listings) and one per user's login role (their queries, see
``owners``). Every unit of work is one explicit transaction whose settings are ``SET
LOCAL``: nothing a transaction sets outlives it, so a connection goes back to its
pool as it came.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit, urlunsplit

from epe.data.names import quote
from epe.errors import EpeError, InvalidRequest, ServerBusy, TimeLimitExceeded

# Seconds to wait for the database to accept a connection.
CONNECT_TIMEOUT = 10
# Idle connections kept per role; more are opened when busy and closed when returned.
KEEP_IDLE = 4
# Idle connections kept in all, and how long one may stay idle: each user's queries
# have connections of their own, which would otherwise add up to PostgreSQL's
# max_connections.
MAX_IDLE = 32
IDLE_CLOSE = 60.0
# A connection idle longer than this is checked before use: the server may have
# restarted meanwhile, and a request should not fail for a connection that died idle.
CHECK_AFTER = 2.0
# SQLSTATE classes and codes that say the server, not the statement, failed: connection
# exceptions, the server shutting down or starting, too many connections.
_UNAVAILABLE = ("08", "57P01", "57P02", "57P03", "53300")
_INSUFFICIENT_PRIVILEGE = "42501"
_READ_ONLY = "25006"
_CANCELED = "57014"
_UNDEFINED_TABLE = "42P01"
# The text after libpq's "ERROR:" in ADBC's messages: PostgreSQL's own words.
_ERROR_TEXT = re.compile(r"ERROR:\s+([^\n]*)")


def driver() -> Any:
    """ADBC's PostgreSQL driver, imported only when the catalog is PostgreSQL."""
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        from epe.errors import InvalidSetting

        raise InvalidSetting("EPE_DATA_URL names PostgreSQL, but its driver is not installed: "
                             "pip install 'epe[postgres]'") from None
    return dbapi


def with_connect_timeout(url: str, seconds: int = CONNECT_TIMEOUT) -> str:
    """``url`` with libpq's ``connect_timeout`` unless it sets one: libpq waits forever
    by default, and a request should rather fail with a 503 than hang."""
    parts = urlsplit(url)
    if "connect_timeout=" in parts.query:
        return url
    query = f"{parts.query}&connect_timeout={seconds}" if parts.query \
        else f"connect_timeout={seconds}"
    return urlunsplit(parts._replace(query=query))


def login_url(url: str, login: str, password: str) -> str:
    """``url`` with its user and password replaced by ``login``'s."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{url_quote(login, safe='')}:{url_quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class LoginRefused(Exception):
    """The database refused a role's login (its password changed: the user was made
    again through another server)."""


def unavailable() -> ServerBusy:
    return ServerBusy("the PostgreSQL database of users' tables cannot be reached; try "
                      "again shortly")


class Pools:
    """Open connections per URL (one URL per role), reused one request at a time."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[Any, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self, url: str, reset: bool = False) -> Iterator[Any]:
        """A connection of ``url``'s, for one thread; a broken one is not kept. With
        ``reset``, what a session may keep beyond a transaction (settings made with
        ``set_config(..., false)``, advisory locks, prepared statements) is discarded
        before the connection is used again: users' queries may leave such things."""
        conn = self._take(url)
        healthy = False
        try:
            yield conn
            healthy = True
        except ServerBusy:
            self.forget_all()  # the server went away: every idle connection died with it
            raise
        except EpeError:
            healthy = True  # the request was refused; its transaction was rolled back
            raise
        except Exception as e:
            if is_unavailable(e) and not alive(conn):
                self.forget_all()
                raise unavailable() from None
            raise
        finally:
            if healthy and reset:
                healthy = discard(conn)
            self._give_back(url, conn, healthy)

    def _take(self, url: str) -> Any:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the table catalog is closed")
                idle = self._idle.get(url)
                if not idle:
                    break
                conn, since = idle.pop()
            if time.monotonic() - since < CHECK_AFTER or alive(conn):
                return conn
            with contextlib.suppress(Exception):
                conn.close()
        try:
            return driver().connect(url, autocommit=True)
        except Exception as e:  # which classes ADBC raises is its business
            if sqlstate(e) in ("28P01", "28000") or "authentication failed" in str(e):
                raise LoginRefused(message(e)) from None
            if is_unavailable(e):
                raise unavailable() from None
            raise

    def _give_back(self, url: str, conn: Any, healthy: bool) -> None:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(url, [])
            if healthy and not self._closed and len(idle) < KEEP_IDLE:
                idle.append((conn, now))
                conn = None
            stale = self._stale(now)
        for old in ([conn] if conn is not None else []) + stale:
            with contextlib.suppress(Exception):
                old.close()

    def _stale(self, now: float) -> list[Any]:
        """Take out the idle connections to close: idle past ``IDLE_CLOSE``, and the
        oldest beyond ``MAX_IDLE`` in all (a connection per user adds up). Under the lock."""
        every = sorted(((since, url, conn) for url, idle in self._idle.items()
                        for conn, since in idle), key=lambda entry: entry[0])
        excess = max(0, len(every) - MAX_IDLE)
        drop = [entry for i, entry in enumerate(every)
                if i < excess or now - entry[0] > IDLE_CLOSE]
        for since, url, conn in drop:
            self._idle[url].remove((conn, since))
            if not self._idle[url]:
                del self._idle[url]
        return [conn for _since, _url, conn in drop]

    def forget(self, url: str) -> None:
        """Close the idle connections of ``url`` (its role is being dropped)."""
        with self._lock:
            idle = self._idle.pop(url, [])
        for conn, _since in idle:
            with contextlib.suppress(Exception):
                conn.close()

    def forget_all(self) -> None:
        with self._lock:
            urls = list(self._idle)
        for url in urls:
            self.forget(url)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = list(self._idle.values()), {}
        for idle in pools:
            for conn, _since in idle:
                with contextlib.suppress(Exception):
                    conn.close()


@contextmanager
def transaction(conn: Any, role: str | None = None, schema: str | None = None,
                read_only: bool = False, timeout: float | None = None) -> Iterator[Any]:
    """A cursor in one transaction, committed at the end unless ``read_only`` (then
    always rolled back). ``role``, ``schema`` and ``timeout`` hold within it alone."""
    cur = conn.cursor()
    try:
        cur.execute("BEGIN READ ONLY" if read_only else "BEGIN")
        if role is not None:
            cur.execute(f"SET LOCAL ROLE {quote(role)}")
        if timeout is not None:  # milliseconds, a number we computed: nothing of a user's
            cur.execute(f"SET LOCAL statement_timeout = {max(1, round(timeout * 1000))}")
        if schema is not None:
            cur.execute(f"SET LOCAL search_path = {quote(schema)}, public")
        yield cur
        if not read_only:
            cur.execute("COMMIT")
    finally:
        with contextlib.suppress(Exception):
            cur.execute("ROLLBACK")  # after COMMIT, a warning only
        with contextlib.suppress(Exception):
            cur.close()


def discard(conn: Any) -> bool:
    """Reset ``conn``'s session (``DISCARD ALL``); whether it still works."""
    try:
        cur = conn.cursor()
        try:
            cur.execute("DISCARD ALL")
        finally:
            cur.close()
    except Exception:
        return False
    return True


def alive(conn: Any) -> bool:
    """Whether ``conn`` still answers (after a failure without a SQLSTATE)."""
    try:
        cur = conn.cursor()
        try:
            cur.execute("ROLLBACK")
        finally:
            cur.close()
    except Exception:  # any failure here means the connection is gone
        return False
    return True


def sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) and state else None


def is_unavailable(error: BaseException) -> bool:
    state = sqlstate(error)
    if state is not None:
        return state.startswith(_UNAVAILABLE)
    text = str(error).lower()
    return any(s in text for s in ("connection", "could not connect", "server closed",
                                   "terminating", "no connection", "timeout expired"))


def message(error: BaseException) -> str:
    """PostgreSQL's own message in an ADBC error, without the driver's wrapping."""
    text = str(error)
    found = _ERROR_TEXT.search(text)
    return found.group(1).strip() if found else text.strip().splitlines()[0] if text else ""


def query_error(error: BaseException, conn: Any, timeout: float) -> Exception:
    """epe's error for a failed input query: the database refused it, stopped it at its
    time limit, or could not be reached."""
    state = sqlstate(error)
    text = message(error)
    if state == _CANCELED or "statement timeout" in str(error):
        return TimeLimitExceeded(f"the input query ran longer than the query time limit of "
                                 f"{timeout:g} seconds (setting query_timeout) and was "
                                 "stopped by the database")
    if state == _INSUFFICIENT_PRIVILEGE:
        return InvalidRequest(f"the input query reads what your database role may not: "
                              f"{text}")
    if state == _READ_ONLY:
        return InvalidRequest(f"input must be a read-only query: {text}")
    if (state is None or state.startswith(_UNAVAILABLE)) and not alive(conn):
        return unavailable()
    if state is None:
        return InvalidRequest(f"input must be one query that returns rows (COPY and other "
                              f"commands are refused): {text}")
    if state == _UNDEFINED_TABLE:
        return InvalidRequest(f"the input query failed: {text} (PostgreSQL folds unquoted "
                              'names to lower case: a table uploaded as IRIS is "IRIS")')
    return InvalidRequest(f"the input query failed: {text}")
