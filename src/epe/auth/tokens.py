"""Signed access tokens: issue, refresh within a capped chain, verify.

A token is an HS256 JWT whose claims are ``sub`` (user), ``jti`` (id, for
revocation), ``iat``/``exp``, and ``chain`` (when the password grant that
started this chain of refreshes happened). The signing key is generated at
first start and kept in the data folder, readable by the server's user alone, or,
where several servers share a PostgreSQL metadata store, in that database, so
that a token one issues is good on all.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


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


class TokenService:
    def __init__(self, key: bytes, lifetime: int, chain_lifetime: int) -> None:
        self._key = key
        self.lifetime = lifetime
        self.chain_lifetime = chain_lifetime

    def issue(self, user: str, chain_start: float | None = None) -> IssuedToken:
        now = time.time()
        start = now if chain_start is None else chain_start
        expires = min(now + self.lifetime, start + self.chain_lifetime)
        if expires <= now:
            raise Unauthorized("the token can no longer be refreshed; log in with your password")
        claims = {"sub": user, "jti": uuid.uuid4().hex, "iat": int(now), "exp": expires,
                  "chain": start}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token=token, expires_in=max(1, round(expires - now)))

    def decode(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                options={"require": ["sub", "jti", "exp", "chain"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid") from None
        return TokenClaims(user=claims["sub"], jti=claims["jti"], issued=claims.get("iat", 0),
                           expires=claims["exp"], chain_start=claims["chain"])
