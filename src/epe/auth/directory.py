"""A directory (LDAP, Active Directory) that checks passwords and says who is in which
group (docs/sign-in.md#ldap).

Two ways to find a user: bind as the DN a template makes of the name
(``EPE_LDAP_USER_DN``), or bind as a service account, search for the user with
``EPE_LDAP_USER_FILTER`` and then bind as the entry found. Either way the entry must
match the filter, which is where an operator says what an *active* account is (AD's
disabled bit, OpenLDAP's locked accounts): a refresh, which has no password, checks
that alone. Every name that goes into a filter or a DN is escaped. A directory that
cannot be reached is ``SignInUnavailable`` (503), never a wrong password.

ldap3 is imported here only, and only when ``EPE_LDAP_URL`` is set.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from epe.errors import InvalidSetting, SignInUnavailable
from epe.settings import Settings

log = logging.getLogger("epe.auth")

GROUP_FILTER = "(|(member={dn})(uniqueMember={dn})(memberUid={login}))"


@dataclass(frozen=True)
class DirectoryUser:
    login: str  # the name the directory knows, as typed at sign-in
    dn: str
    groups: frozenset[str]  # the groups' names (cn) as the directory spells them
    admin: bool


class Directory:
    """The directory ``EPE_LDAP_URL`` names; one connection per question (a sign-in or a
    refresh is rare next to the requests its token then makes)."""

    def __init__(self, settings: Settings, retry_after: int) -> None:
        import ldap3

        self._ldap3 = ldap3
        self.settings = settings
        self.retry_after = retry_after
        if not settings.ldap_user_dn and not (settings.ldap_bind_dn and settings.ldap_user_base):
            raise InvalidSetting("EPE_LDAP_URL is set: set EPE_LDAP_USER_DN (a template such "
                                 "as uid={username},ou=people,dc=example,dc=org), or "
                                 "EPE_LDAP_BIND_DN, EPE_LDAP_BIND_PASSWORD and "
                                 "EPE_LDAP_USER_BASE to search for users")
        self.server = self._server()
        self._lookups: dict[str, tuple[float, DirectoryUser | None]] = {}

    def _server(self) -> Any:
        ldap3, s = self._ldap3, self.settings
        url = urlsplit(s.ldap_url)
        secure = url.scheme == "ldaps"
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s.ldap_ca_file or None,
                        version=ssl.PROTOCOL_TLS_CLIENT) \
            if secure or s.ldap_start_tls else None
        return ldap3.Server(url.hostname or "localhost", port=url.port, use_ssl=secure, tls=tls,
                            connect_timeout=s.ldap_timeout, get_info=ldap3.NONE)

    # -- what sessions ask ------------------------------------------------------------------

    def authenticate(self, login: str, password: str) -> DirectoryUser | None:
        """The user, if ``password`` is theirs and their entry is active; None otherwise."""
        if not password or not login:  # an empty password is an anonymous bind: never
            return None
        try:
            if self.settings.ldap_user_dn:
                return self._bind_as_user(login, password)
            return self._search_then_bind(login, password)
        except self._ldap3.core.exceptions.LDAPException as e:
            raise self._unavailable(e) from None

    def lookup(self, login: str, cached: bool = False) -> DirectoryUser | None:
        """The user's active entry and groups now, without their password (a refresh);
        with ``cached``, an answer up to ``EPE_SIGNIN_CACHE_TTL`` seconds old will do (an
        automation token's every use)."""
        now = time.monotonic()
        if cached and (kept := self._lookups.get(login)) is not None \
                and now - kept[0] < self.settings.signin_cache_ttl:
            return kept[1]
        try:
            with self._service_connection() as conn:
                found = self._find(conn, login)
        except self._ldap3.core.exceptions.LDAPException as e:
            raise self._unavailable(e) from None
        if len(self._lookups) >= 10_000:
            self._lookups.clear()
        self._lookups[login] = (now, found)
        return found

    # -- binding ---------------------------------------------------------------------------

    def _bind_as_user(self, login: str, password: str) -> DirectoryUser | None:
        from ldap3.utils.dn import escape_rdn

        dn = self.settings.ldap_user_dn.format(username=escape_rdn(login))
        conn = self._connection(dn, password)
        try:
            if not self._bind(conn):
                return None
            found = self._find(conn, login, dn)
        finally:
            conn.unbind()
        return found

    def _search_then_bind(self, login: str, password: str) -> DirectoryUser | None:
        with self._service_connection() as conn:
            found = self._find(conn, login)
        if found is None:
            return None
        user_conn = self._connection(found.dn, password)
        try:
            return found if self._bind(user_conn) else None
        finally:
            user_conn.unbind()

    @contextmanager
    def _service_connection(self) -> Iterator[Any]:
        """Bound as the service account, or anonymously where there is none."""
        s = self.settings
        conn = self._connection(s.ldap_bind_dn or None, s.ldap_bind_password or None)
        try:
            if not self._bind(conn):
                raise SignInUnavailable(
                    "the directory refused epe's service account (EPE_LDAP_BIND_DN); tell "
                    "your administrator", retry_after=self.retry_after)
            yield conn
        finally:
            conn.unbind()

    def _connection(self, user: str | None, password: str | None) -> Any:
        ldap3 = self._ldap3
        return ldap3.Connection(self.server, user=user, password=password, read_only=True,
                                receive_timeout=math.ceil(self.settings.ldap_timeout),
                                auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=False)

    def _bind(self, conn: Any) -> bool:
        conn.open()
        if self.settings.ldap_start_tls and not conn.start_tls():
            raise SignInUnavailable("the directory refused StartTLS (EPE_LDAP_START_TLS)",
                                    retry_after=self.retry_after)
        return bool(conn.bind())

    # -- searching ------------------------------------------------------------------------

    def _find(self, conn: Any, login: str, dn: str | None = None) -> DirectoryUser | None:
        """The active entry of ``login`` (at ``dn``, when the template made it), with its
        groups; None when there is none or more than one."""
        from ldap3.utils.conv import escape_filter_chars
        from ldap3.utils.dn import escape_rdn

        s, ldap3 = self.settings, self._ldap3
        if dn is None and s.ldap_user_dn:
            dn = s.ldap_user_dn.format(username=escape_rdn(login))
        query = s.ldap_user_filter.format(username=escape_filter_chars(login))
        base, scope = (dn, ldap3.BASE) if dn else (s.ldap_user_base, ldap3.SUBTREE)
        conn.search(base, query, search_scope=scope, attributes=[], size_limit=2)
        self._check_answer(conn)
        entries = conn.entries
        if len(entries) != 1:
            return None
        entry_dn = str(entries[0].entry_dn)
        groups = self._groups(conn, login, entry_dn)
        return DirectoryUser(login, entry_dn, frozenset(name for name, _ in groups),
                             self._is_admin(groups))

    def _groups(self, conn: Any, login: str, dn: str) -> list[tuple[str, str]]:
        """(cn, DN) of every group ``dn`` is a member of."""
        from ldap3.utils.conv import escape_filter_chars

        if not self.settings.ldap_group_base:
            return []
        query = GROUP_FILTER.format(dn=escape_filter_chars(dn),
                                    login=escape_filter_chars(login))
        conn.search(self.settings.ldap_group_base, query, search_scope=self._ldap3.SUBTREE,
                    attributes=["cn"])
        self._check_answer(conn)
        return [(str(e.cn.value), str(e.entry_dn)) for e in conn.entries if e.cn.value]

    def _is_admin(self, groups: list[tuple[str, str]]) -> bool:
        wanted = self.settings.ldap_admin_group.strip().lower()
        return bool(wanted) and any(wanted in (cn.lower(), dn.lower()) for cn, dn in groups)

    def _check_answer(self, conn: Any) -> None:
        # 0 success, 4 size limit (more than one match), 32 no such object: answers. Any
        # other result (busy, unavailable, unwilling) the directory cannot answer now.
        if conn.result and conn.result.get("result") not in (0, 4, 32):
            raise SignInUnavailable(f"the directory answered {conn.result.get('description')}",
                                    retry_after=self.retry_after)

    def _unavailable(self, error: Exception) -> SignInUnavailable:
        log.warning("the directory cannot be reached: %s: %s", error.__class__.__name__, error)
        return SignInUnavailable("the directory cannot be reached now; retry later",
                                 retry_after=self.retry_after)
