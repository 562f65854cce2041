"""Who is calling: the one seam every sign-in and every bearer check goes through
(docs/sign-in.md).

- The password grant asks local passwords (``auth.passwords``) for a local account,
  else the directory (``auth.directory``) when ``EPE_LDAP_URL`` is set; an automation
  token (``auth.apitokens``) given as the password stands for its user.
- A bearer token is one of ours (an HS256 JWT), an automation token, or, with
  ``EPE_OIDC_AUDIENCE`` set, the provider's own access token (``auth.provider``).

A ``Caller`` is a user whose token is valid, unrevoked, and younger than the account.
A wrong user name and a wrong password get the same answer, after the same work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from epe.auth import apitokens
from epe.auth.passwords import verify_password
from epe.auth.provider import ProviderIdentity
from epe.auth.tokens import IssuedToken, TokenClaims, is_ours
from epe.core.names import normalize_user
from epe.errors import Forbidden, InvalidRequest, Unauthorized
from epe.service import accounts
from epe.service.audit import VIA_TOKEN
from epe.service.services import Services
from epe.store import UserRecord
from epe.store.identity import ApiToken

_WRONG = "invalid username or password"


@dataclass(frozen=True)
class Caller:
    user: UserRecord
    claims: TokenClaims
    token_name: str | None = None  # the automation token it came with, for the audit trail

    @property
    def name(self) -> str:
        return self.user.name

    def require_admin(self) -> Caller:
        if not self.user.is_admin:
            raise Forbidden("this action needs the admin role")
        return self

    def require_session(self) -> Caller:
        """Refuse an automation token where only a person's sign-in will do."""
        if self.claims.token_id is not None:
            raise Forbidden("automation tokens cannot manage tokens: sign in with your "
                            "password or single sign-on")
        return self

    def may(self, method: str, path: str) -> Caller:
        """Refuse a read-only token anything but reading (GET, HEAD, POST .../query)."""
        if self.claims.scope == "read" and method not in ("GET", "HEAD") \
                and not (method == "POST" and path.endswith("/query")):
            raise Forbidden("this token's scope is read: it may read, not run or change")
        return self


# -- bearer tokens -------------------------------------------------------------------------


def _providers(services: Services, token: str) -> bool:
    """Whether ``token`` is to be checked as the provider's access token."""
    return (services.provider is not None and bool(services.settings.oidc_audience)
            and not apitokens.looks_like(token) and not is_ours(token))


def needs_network(services: Services, token: str) -> bool:
    """Whether checking ``token`` may wait on the provider or the directory (an
    automation token of a directory user): run it off the event loop."""
    if apitokens.looks_like(token):
        return services.directory is not None
    return _providers(services, token) and services.provider is not None \
        and services.provider.cached(token) is None


def authenticate(services: Services, token: str) -> Caller:
    """The caller a token speaks for: valid, unrevoked, and its user still there."""
    if apitokens.looks_like(token):
        return _automation(services, token)
    if _providers(services, token):
        return _provider(services, token)
    claims = services.tokens.decode(token)
    if services.store.is_revoked(claims.jti):
        raise Unauthorized("the token has been revoked")
    user = services.store.get_user(claims.user)
    # A chain that began before the account existed belongs to a deleted
    # namesake: the new user inherits none of its tokens.
    if user is None or claims.chain_start < int(user.created):
        raise Unauthorized("the token's user no longer exists")
    if claims.token_id is not None:
        return Caller(user, claims, _live_token(services, claims.token_id, user.name))
    return Caller(user, claims)


def _automation(services: Services, token: str) -> Caller:
    found = _check_automation(services, token)
    user = services.store.get_user(found.owner)
    if user is None:
        raise Unauthorized("the token's user no longer exists")
    if not user.local:
        _still_active(services, user, cached=True)
    now = time.time()
    return Caller(user, TokenClaims(user.name, jti="", issued=found.created,
                                    expires=found.expires or now + 3600, chain_start=now,
                                    token_id=found.id, scope=found.scope, via="token"),
                  found.name)


def _check_automation(services: Services, token: str) -> ApiToken:
    parsed = apitokens.parse(token)
    found = services.store.identity.token(parsed[0]) if parsed else None
    if parsed is None or found is None or not apitokens.matches(parsed[1], found.secret_hash):
        raise Unauthorized("the token is not valid")
    if found.expires is not None and found.expires <= time.time():
        raise Unauthorized(f"the automation token {found.name} has expired")
    VIA_TOKEN.set(found.name)  # the password grant's own audit entry names it
    return found


def _live_token(services: Services, token_id: str, user: str) -> str:
    """The name of the automation token a token of ours came from, if it still holds."""
    found = services.store.identity.token(token_id)
    if found is None or found.owner != user:
        raise Unauthorized("the automation token this token came from has been revoked")
    if found.expires is not None and found.expires <= time.time():
        raise Unauthorized(f"the automation token {found.name} has expired")
    return found.name


def _provider(services: Services, token: str) -> Caller:
    provider = services.provider
    assert provider is not None
    identity = provider.verify_access_token(token)
    name = accounts.epe_name(identity.username, "the provider's user name")
    user = accounts.vouched(services, name=name, source="oidc", external_id=identity.subject,
                            groups=identity.groups, admin=identity.admin)
    now = time.time()
    return Caller(user, TokenClaims(user.name, jti="", issued=now, expires=identity.expires,
                                    chain_start=now, via="oidc"))


def log_in_with_provider(services: Services, identity: ProviderIdentity,
                         client: str) -> IssuedToken:
    """A token of ours for a user the provider has just signed in (the console's single
    sign-on), audited as a login."""
    try:
        name = accounts.epe_name(identity.username, "the provider's user name")
        user = accounts.vouched(services, name=name, source="oidc",
                                external_id=identity.subject, groups=identity.groups,
                                admin=identity.admin)
    except Unauthorized as error:
        services.audit.record("login", "login", identity.username[:128], error=error,
                              client=client, via="oidc")
        raise
    services.audit.record("login", "login", user.name, client=client, via="oidc")
    return services.tokens.issue(user.name)


# -- the password grant ------------------------------------------------------------------


def log_in(services: Services, username: str | None, password: str | None,
           client: str) -> IssuedToken:
    """A token for a user name and password (OML's password grant), from ``client`` (its
    address). Failures are counted per name and per address, too many are a 429 for a
    while; the attempt, good or bad, goes to the audit trail."""
    if not username or password is None:
        raise InvalidRequest("a password grant needs 'username' and 'password'")
    name = normalize_user(username, check=False)
    limits = {f"user:{name}": services.settings.login_max_failures,
              f"address:{client}": services.settings.login_max_failures_per_address}
    services.logins.check(limits)
    keys = tuple(limits)
    try:
        issued, user = _check_password(services, username.strip(), name, password)
    except Unauthorized as error:
        services.logins.failed(*keys)
        services.audit.record("login", "login", name[:128], error=error, client=client)
        raise
    services.logins.succeeded(keys[0])
    services.audit.record("login", "login", user.name, client=client, via=user.source)
    return issued


def _check_password(services: Services, login: str, name: str,
                    password: str) -> tuple[IssuedToken, UserRecord]:
    if apitokens.looks_like(password):
        return _log_in_with_token(services, name, password)
    user = services.store.get_user(name)
    if services.directory is None or (user is not None and user.local):
        # The same answer, after the same work, for a wrong user and a wrong password.
        if not verify_password(user.password_hash if user else None, password) or not user \
                or not user.local:
            raise Unauthorized(_WRONG)
        return services.tokens.issue(user.name), user
    found = services.directory.authenticate(login, password)
    if found is None:
        raise Unauthorized(_WRONG)
    user = accounts.vouched(services, name=accounts.epe_name(login, "the user name"),
                            source="ldap", external_id=login, groups=found.groups,
                            admin=found.admin)
    return services.tokens.issue(user.name), user


def _log_in_with_token(services: Services, name: str,
                       token: str) -> tuple[IssuedToken, UserRecord]:
    """An automation token as the password (what dbt-oracle's client sends): a token of
    ours that can do no more than it, and ends when it is revoked."""
    try:
        found = _check_automation(services, token)
    except Unauthorized:
        raise Unauthorized(_WRONG) from None
    user = services.store.get_user(found.owner)
    if user is None or user.name != name:
        raise Unauthorized(_WRONG)
    if not user.local:
        _still_active(services, user, cached=False)
    return services.tokens.issue(user.name, token_id=found.id, scope=found.scope), user


def _still_active(services: Services, user: UserRecord, cached: bool) -> UserRecord:
    """A directory user's entry is still active: their groups as the directory says now."""
    if user.source != "ldap" or services.directory is None or user.external_id is None:
        return user
    found = services.directory.lookup(user.external_id, cached=cached)
    if found is None:
        raise Unauthorized(f"the account {user.name} is no longer active in the directory")
    return accounts.vouched(services, name=user.name, source="ldap",
                            external_id=user.external_id, groups=found.groups,
                            admin=found.admin)


# -- refresh and revoke ----------------------------------------------------------------------


def refresh(services: Services, token: str) -> IssuedToken:
    """A new token in the same chain (the chain's lifetime caps it); a directory user's
    account is checked again, their groups with it."""
    caller = authenticate(services, token)
    if caller.claims.via != "epe":
        raise InvalidRequest(_NOT_OURS[caller.claims.via])
    _still_active(services, caller.user, cached=False)
    return services.tokens.issue(caller.name, chain_start=caller.claims.chain_start,
                                 token_id=caller.claims.token_id, scope=caller.claims.scope)


def revoke(services: Services, token: str) -> None:
    """The token refused from now on, for use and for refresh."""
    caller = authenticate(services, token)
    if caller.claims.via != "epe":
        raise InvalidRequest(_NOT_OURS[caller.claims.via])
    services.store.revoke_token(caller.claims.jti, caller.claims.expires)


_NOT_OURS = {
    "oidc": "the identity provider's tokens are refreshed and revoked at the provider",
    "token": "an automation token is revoked with DELETE /omlusers/api/v1/tokens/{id}, and "
             "needs no refresh",
}
