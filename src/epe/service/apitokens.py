"""Automation tokens as users and admins manage them (the secret's shape and hash:
``epe.auth.apitokens``)."""

from __future__ import annotations

import time
from typing import Any

from epe.auth.apitokens import new_token
from epe.core.names import iso_date, normalize_user
from epe.errors import NotFound
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.identity import ApiToken


def create(services: Services, caller: Caller, name: str, expires_in: int | None,
           scope: str) -> tuple[ApiToken, str]:
    """A new token of the caller's and its secret, which is not kept."""
    made = new_token()
    now = time.time()
    token = ApiToken(id=made.id, owner=caller.name, name=name, secret_hash=made.secret_hash,
                     scope=scope, created=now,
                     expires=None if expires_in is None else now + expires_in)
    services.store.identity.add_token(token)
    services.audit.record("token", "create", caller.name, owner=caller.name, name=name,
                          id=token.id, scope=scope, expires=token.expires)
    return token, made.token


def listed(services: Services, caller: Caller, user: str | None) -> list[ApiToken]:
    """The caller's tokens; an admin may name another user, or ``*`` for everyone."""
    if user is None or normalize_user(user, check=False) == caller.name:
        return services.store.identity.tokens(caller.name)
    caller.require_admin()
    return services.store.identity.tokens(None if user == "*" else
                                          normalize_user(user, check=False))


def revoke(services: Services, caller: Caller, token_id: str) -> None:
    found = services.store.identity.token(token_id)
    if found is None or (found.owner != caller.name and not caller.user.is_admin):
        raise NotFound(f"no token {token_id} of yours")
    services.store.identity.delete_token(token_id)
    services.audit.record("token", "revoke", caller.name, owner=found.owner, name=found.name,
                          id=token_id)


def shown(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "user": token.owner, "scope": token.scope,
            "created": iso_date(token.created),
            "expires": None if token.expires is None else iso_date(token.expires)}
