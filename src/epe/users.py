"""User accounts: names, creation and deletion, shared by the API and the CLI."""

from __future__ import annotations

import re

from epe.auth.passwords import hash_password
from epe.errors import Conflict, InvalidRequest
from epe.store import Store, UserRecord
from epe.store.store import RESERVED_USERS

# Oracle-style identifiers: a letter, then letters, digits, _ $ #.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_$#]{0,127}")


def normalize_name(name: str, check: bool = True) -> str:
    """User names are case-insensitive and shown upper-case, as OML shows them."""
    upper = name.strip().upper()
    if check and not _NAME.fullmatch(upper):
        raise InvalidRequest(f"invalid user name {name!r}: use a letter followed by letters, "
                             "digits, _, $ or # (at most 128)")
    if check and upper in RESERVED_USERS:
        raise InvalidRequest(f"{upper} is a reserved name")
    return upper


def create_user(store: Store, name: str, password: str, admin: bool = False) -> UserRecord:
    if not password:
        raise InvalidRequest("the password must not be empty")
    upper = normalize_name(name)
    user = store.add_user(upper, hash_password(password), admin)
    if user is None:
        raise Conflict(f"user {upper} already exists")
    return user
