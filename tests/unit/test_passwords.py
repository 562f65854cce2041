"""epe.auth.passwords: the dummy hash a login for an unknown user verifies costs what a
real one does (the same argon2 parameters), and matches no one's password."""

from __future__ import annotations

from epe.auth import passwords


def test_the_dummy_hash_is_made_as_every_hash_is() -> None:
    assert not passwords._hasher.check_needs_rehash(passwords._DUMMY_HASH)
    real = passwords.hash_password("pw-Secret1")
    assert real.split("$")[:4] == passwords._DUMMY_HASH.split("$")[:4]  # id, version, cost
    assert passwords._hasher.verify(passwords._DUMMY_HASH, "epe-no-such-user")


def test_an_unknown_user_never_logs_in() -> None:
    assert not passwords.verify_password(None, "epe-no-such-user")
    assert not passwords.verify_password(None, "anything")
    assert passwords.verify_password(passwords.hash_password("right"), "right")
