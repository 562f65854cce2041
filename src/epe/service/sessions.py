"""Who is calling: tokens issued, refreshed, revoked and checked.

A ``Caller`` is a user whose token is valid, unrevoked, and younger than the
account. A wrong user name and a wrong password get the same answer, after the
same work.
"""

from __future__ import annotations

from dataclasses import dataclass

from epe.auth.passwords import verify_password
from epe.auth.tokens import IssuedToken, TokenClaims
from epe.core.names import normalize_user
from epe.errors import Forbidden, InvalidRequest, Unauthorized
from epe.service.services import Services
from epe.store import UserRecord


@dataclass(frozen=True)
class Caller:
    user: UserRecord
    claims: TokenClaims

    @property
    def name(self) -> str:
        return self.user.name

    def require_admin(self) -> Caller:
        if not self.user.is_admin:
            raise Forbidden("this action needs the admin role")
        return self


def authenticate(services: Services, token: str) -> Caller:
    """The caller a token speaks for: valid, unrevoked, and its user still there."""
    claims = services.tokens.decode(token)
    if services.store.is_revoked(claims.jti):
        raise Unauthorized("the token has been revoked")
    user = services.store.get_user(claims.user)
    # A chain that began before the account existed belongs to a deleted
    # namesake: the new user inherits none of its tokens.
    if user is None or claims.chain_start < int(user.created):
        raise Unauthorized("the token's user no longer exists")
    return Caller(user, claims)


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
    user = services.store.get_user(name)
    # The same answer, after the same work, for a wrong user and a wrong password.
    if not verify_password(user.password_hash if user else None, password) or not user:
        services.logins.failed(*keys)
        error = Unauthorized("invalid username or password")
        services.audit.record("login", "login", name[:128], error=error, client=client)
        raise error
    services.logins.succeeded(keys[0])
    services.audit.record("login", "login", user.name, client=client)
    return services.tokens.issue(user.name)


def refresh(services: Services, token: str) -> IssuedToken:
    """A new token in the same chain (the chain's lifetime caps it)."""
    caller = authenticate(services, token)
    return services.tokens.issue(caller.name, chain_start=caller.claims.chain_start)


def revoke(services: Services, token: str) -> None:
    """The token refused from now on, for use and for refresh."""
    caller = authenticate(services, token)
    services.store.revoke_token(caller.claims.jti, caller.claims.expires)
