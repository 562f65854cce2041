"""Automation tokens: ``epe_<id>_<secret>``, kept only as the secret's SHA-256.

The secret is 256 random bits, so a fast hash is enough (no password to guess: a
slow hash would only slow every request down); the id finds the row, the hash is
compared in constant time. Not a JWT (no dots): the bearer check tells the kinds
apart by shape before any work.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

PREFIX = "epe_"
_SHAPE = re.compile(r"epe_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class NewToken:
    id: str
    secret_hash: str
    token: str  # shown once, to its maker


def new_token() -> NewToken:
    token_id, secret = uuid.uuid4().hex, secrets.token_urlsafe(32)
    return NewToken(token_id, secret_hash(secret), f"{PREFIX}{token_id}_{secret}")


def looks_like(token: str) -> bool:
    return token.startswith(PREFIX)


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token; None for anything else."""
    m = _SHAPE.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
