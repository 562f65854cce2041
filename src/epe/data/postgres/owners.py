"""Each epe user's database role and schema, made and dropped with the user.

An epe user ``ANN`` gets a login role and a schema of the same name, ``epe_ann``
(``EPE_DATA_ROLE_PREFIX`` then the user name in lower case, so that plain SQL can
name it unquoted: ``GRANT SELECT ON sales TO epe_ann``). The schema belongs to the
role; uploads become tables in it, owned by it.

Users' queries connect *as* that role, with a password epe made for it, then ``SET
LOCAL ROLE`` to it. Connecting as the role, not as the catalog's own role, is what
makes the role a boundary: ``SET ROLE`` (or ``set_config('role', ...)`` inside a
query) may switch to any role the *session's* user belongs to, and the catalog's
role belongs to every user's. A user's login role belongs to its own role alone,
and, when bound with ``epe user add NAME --db-role EXISTING``, to that existing role
too, whose privileges it inherits.

Who is who is kept in the database itself (schema ``<prefix>_catalog``, readable by
the catalog's role alone), next to the roles it describes. That name can never be a
user's: user names begin with a letter.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

from epe.data.names import check_owner, quote
from epe.data.postgres.connections import Pools, message, sqlstate, transaction
from epe.errors import InvalidRequest

# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes): two long user names
# could then name one role, so such names are refused instead.
MAX_NAME_BYTES = 63
# Serializes the catalog's own changes to roles and bookkeeping across servers.
_LOCK_KEY = 0x657065_0001


@dataclass(frozen=True)
class Owner:
    owner: str
    login: str  # the role queries run as; also its schema's name
    password: str
    bound: str | None  # the existing role it belongs to (``--db-role``), if any


class Owners:
    def __init__(self, pools: Pools, url: str, prefix: str) -> None:
        self._pools = pools
        self._url = url
        self.prefix = prefix
        self.book = f"{quote(prefix + '_catalog')}.owners"
        self._known: dict[str, Owner] = {}
        self._lock = threading.Lock()
        self._book_ready = False

    def login_of(self, owner: str) -> str:
        login = self.prefix + check_owner(owner).lower()
        if len(login.encode()) > MAX_NAME_BYTES:
            raise InvalidRequest(f"the user name {owner} is too long for a PostgreSQL role "
                                 f"({login!r} has more than {MAX_NAME_BYTES} bytes)")
        return login

    def find(self, owner: str) -> Owner | None:
        with self._lock:
            if owner in self._known:
                return self._known[owner]
        with self._pools.connection(self._url) as conn, transaction(conn) as cur:
            self._prepare(cur, lock=not self._book_ready)
            found = self._read(cur, owner)
        self._book_ready = True
        if found is not None:
            with self._lock:
                self._known[owner] = found
        return found

    def forget(self, owner: str) -> None:
        """Read ``owner``'s role from the database next time, not from memory."""
        with self._lock:
            self._known.pop(owner, None)

    def ensure(self, owner: str) -> Owner:
        """``owner``'s role, made now if it was not (a user made before the catalog
        was PostgreSQL's)."""
        return self.find(owner) or self.add(owner)

    def add(self, owner: str, db_role: str | None = None) -> Owner:
        """Make ``owner``'s role and schema (or keep them), bound to ``db_role`` if given."""
        login = self.login_of(owner)
        with self._pools.connection(self._url) as conn, transaction(conn) as cur:
            self._prepare(cur)
            known = self._read(cur, owner)
            if known is None:
                known = self._create(cur, owner, login)
            if db_role is not None and db_role != known.bound:
                known = self._bind(cur, known, db_role)
        self._book_ready = True
        with self._lock:
            self._known[owner] = known
        return known

    def drop(self, owner: str) -> Owner | None:
        """Drop ``owner``'s role, its schema and everything it owns; what was dropped."""
        with self._pools.connection(self._url) as conn, transaction(conn) as cur:
            self._prepare(cur)
            known = self._read(cur, owner)
            if known is not None:
                role = quote(known.login)
                cur.execute(f"DROP SCHEMA IF EXISTS {role} CASCADE")
                if _role_exists(cur, known.login):
                    cur.execute(f"DROP OWNED BY {role}")
                    try:
                        cur.execute(f"DROP ROLE {role}")
                    except Exception as e:
                        if sqlstate(e) == "2BP01":  # it owns things in other databases
                            raise InvalidRequest(
                                f"the database role {known.login} still owns objects in "
                                f"other databases of the server ({message(e)}): drop or "
                                "reassign them (DROP OWNED / REASSIGN OWNED there), then "
                                "delete the user again") from None
                        raise
                cur.execute(f"DELETE FROM {self.book} WHERE owner = $1", parameters=(owner,))
        self._book_ready = True
        with self._lock:
            self._known.pop(owner, None)
        return known

    def _prepare(self, cur: Any, lock: bool = True) -> None:
        """Take the catalog's lock (changes to roles and bookkeeping, one server at a
        time); make the bookkeeping table on first use."""
        if lock:
            cur.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
            cur.fetchall()
        if self._book_ready:
            return
        schema = quote(self.prefix + "_catalog")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        cur.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {self.book} (owner text PRIMARY KEY, "
                    "login text NOT NULL UNIQUE, password text NOT NULL, bound text)")
        # Ready once this transaction commits (the callers say so): a failure rolls
        # the table back with the rest.

    def _read(self, cur: Any, owner: str) -> Owner | None:
        cur.execute(f"SELECT login, password, bound FROM {self.book} WHERE owner = $1",
                    parameters=(owner,))
        rows = cur.fetchall()
        return Owner(owner, *rows[0]) if rows else None

    def _create(self, cur: Any, owner: str, login: str) -> Owner:
        if _role_exists(cur, login):
            raise InvalidRequest(f"the database already has a role {login} that epe did not "
                                 "make: drop it, or bind this user to it with --db-role "
                                 "under another name")
        password = secrets.token_hex(24)  # hex digits only: safe as a literal
        role = quote(login)
        cur.execute(f"CREATE ROLE {role} LOGIN INHERIT PASSWORD '{password}'")
        # The catalog's role must be able to SET ROLE to it (uploads are owned by it);
        # since PostgreSQL 16, making a role no longer implies that.
        cur.execute(f"GRANT {role} TO CURRENT_USER")
        cur.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        cur.execute(f"INSERT INTO {self.book} (owner, login, password) VALUES ($1, $2, $3)",
                    parameters=(owner, login, password))
        return Owner(owner, login, password, None)

    def _bind(self, cur: Any, known: Owner, db_role: str) -> Owner:
        if not _role_exists(cur, db_role):
            raise InvalidRequest(f"the database has no role {db_role!r} (role names are "
                                 "case-sensitive: as pg_roles spells them)")
        try:
            cur.execute(f"GRANT {quote(db_role)} TO {quote(known.login)}")
            if known.bound is not None:
                cur.execute(f"REVOKE {quote(known.bound)} FROM {quote(known.login)}")
        except Exception as e:
            if sqlstate(e) == "42501":
                raise InvalidRequest(f"the role epe connects as may not grant {db_role!r}: it "
                                     f"needs ADMIN OPTION on it ({e})") from None
            raise
        cur.execute(f"UPDATE {self.book} SET bound = $1 WHERE owner = $2",
                    parameters=(db_role, known.owner))
        return Owner(known.owner, known.login, known.password, db_role)


def _role_exists(cur: Any, role: str) -> bool:
    cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = $1", parameters=(role,))
    return bool(cur.fetchall()[0][0])
