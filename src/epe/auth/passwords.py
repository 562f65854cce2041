"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified when the user does not exist, so that a wrong user name takes as long as a
# wrong password and the two cannot be told apart by timing: the hash of a password no one
# has ("epe-no-such-user"), with the hasher's parameters. Written out, not made at import:
# an argon2 hash is slow by design, and making it held up every start of the server. It
# is made again only where argon2-cffi's parameters differ from the ones it was made with.
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$kPzaYttO1ghiMl6k9ZTpcw$"
               "iJw9gjXAHYeNl25VHC/cLAFCQckQRZgNUBA4zQmtU1I")
if _hasher.check_needs_rehash(_DUMMY_HASH):
    _DUMMY_HASH = _hasher.hash("epe-no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
