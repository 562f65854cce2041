"""Signed access tokens: issue, refresh within a capped chain, verify.

A token is an HS256 JWT whose claims are ``sub`` (user), ``jti`` (id, for
revocation), ``iat``/``exp``, and ``chain`` (when the password grant that
started this chain of refreshes happened); one got with an automation token as the
password also carries that token's id (``tid``) and scope (``scope``), so that it
ends when the automation token is revoked and can do no more than it. The signing
key is generated at first start and kept in the data folder, readable by the server's
user alone, or, where several servers share a PostgreSQL metadata store, in that
database, so that a token one issues is good on all.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from epe.errors import Unauthorized

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    user: str
    jti: str
    issued: float
    expires: float
    chain_start: float
    token_id: str | None = None  # the automation token it stands for
    scope: str | None = None  # None: all the user may do; "run"; "read"
    via: str = "epe"  # epe: one of ours; oidc: the provider's; token: an automation token


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    user: str  # whom it was issued to


def new_key() -> bytes:
    return secrets.token_bytes(64)


def load_or_create_key(path: Path) -> bytes:
    """The signing key at ``path``, created (mode 0600) on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


# Tokens whose signature has been checked, kept so that a client's next calls with the
# same token skip the HMAC and the JSON (about a tenth of a sync run's own cost). Only
# verified tokens are kept, so a flood of forged ones fills nothing; expiry is checked
# at every use.
VERIFIED_TOKENS = 4096


class TokenService:
    def __init__(self, key: bytes, lifetime: int, chain_lifetime: int) -> None:
        self._key = key
        self.lifetime = lifetime
        self.chain_lifetime = chain_lifetime
        self._verified = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._verify)

    def issue(self, user: str, chain_start: float | None = None, token_id: str | None = None,
              scope: str | None = None) -> IssuedToken:
        now = time.time()
        start = now if chain_start is None else chain_start
        expires = min(now + self.lifetime, start + self.chain_lifetime)
        if expires <= now:
            raise Unauthorized("the token can no longer be refreshed; log in with your password")
        claims: dict[str, object] = {"sub": user, "jti": uuid.uuid4().hex, "iat": int(now),
                                     "exp": expires, "chain": start}
        if token_id is not None:
            claims.update(tid=token_id, scope=scope)
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token=token, expires_in=max(1, round(expires - now)), user=user)

    def seal(self, payload: dict[str, str], lifetime: int) -> str:
        """``payload`` signed, to be handed back within ``lifetime`` seconds (the console's
        sign-in keeps its PKCE verifier so). Without ``sub`` and ``chain`` it never
        passes as an access token."""
        return jwt.encode({**payload, "typ": "sealed", "exp": time.time() + lifetime},
                          self._key, algorithm=ALGORITHM)

    def unseal(self, sealed: str) -> dict[str, str]:
        try:
            found = jwt.decode(sealed, self._key, algorithms=[ALGORITHM],
                               options={"require": ["exp", "typ"]})
        except jwt.PyJWTError:
            raise Unauthorized("the sign-in took too long or was tampered with: start "
                               "again") from None
        if found.pop("typ") != "sealed":
            raise Unauthorized("the sign-in was tampered with: start again")
        found.pop("exp", None)
        return {k: str(v) for k, v in found.items()}

    def decode(self, token: str) -> TokenClaims:
        claims = self._verified(token)
        if claims.expires <= time.time():  # as PyJWT decides it, with no leeway
            raise Unauthorized("the token has expired")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        """The claims of a token signed with our key (its expiry is ``decode``'s check)."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                options={"require": ["sub", "jti", "exp", "chain"],
                                         "verify_exp": False})
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        return TokenClaims(user=claims["sub"], jti=claims["jti"], issued=claims.get("iat", 0),
                           expires=claims["exp"], chain_start=claims["chain"],
                           token_id=claims.get("tid"), scope=claims.get("scope"))


def is_ours(token: str) -> bool:
    """Whether a bearer token is shaped like one of ours (HS256), before any check."""
    try:
        return jwt.get_unverified_header(token).get("alg") == ALGORITHM
    except jwt.PyJWTError:
        return False
