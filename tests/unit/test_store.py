"""epe.store.Store on a real SQLite file: users, revoked tokens, scripts, grants."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from epe.core.names import GLOBAL_OWNER
from epe.errors import Conflict
from epe.store import ScriptRecord, Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    yield s
    s.close()


def put(store: Store, owner: str, name: str, source: str = "def f():\n    return 1\n",
        overwrite: bool = False) -> ScriptRecord:
    return store.put_script(owner=owner, name=name, source=source, description=f"{owner}'s",
                            is_global=owner == GLOBAL_OWNER, created_by=owner,
                            overwrite=overwrite)


def names(scripts: list[ScriptRecord]) -> list[tuple[str, str]]:
    return [(s.owner, s.name) for s in scripts]


# -- users ------------------------------------------------------------------------

def test_add_and_get_a_user(store: Store) -> None:
    before = time.time()
    added = store.add_user("ALICE", "argon-hash", True)
    assert added is not None
    got = store.get_user("ALICE")
    assert got == added
    assert (got.name, got.password_hash, got.is_admin) == ("ALICE", "argon-hash", True)
    assert before <= got.created <= time.time()


def test_adding_an_existing_user_is_a_conflict_and_keeps_the_first(store: Store) -> None:
    store.add_user("ALICE", "first", False)
    with pytest.raises(Conflict):
        store.add_user("ALICE", "second", True)
    user = store.get_user("ALICE")
    assert user is not None and (user.password_hash, user.is_admin) == ("first", False)


def test_user_names_are_stored_as_given(store: Store) -> None:
    # Normalising to upper case is the caller's job (epe.core.names); the store is exact.
    store.add_user("ALICE", "h", False)
    assert store.get_user("alice") is None


def test_set_password(store: Store) -> None:
    store.add_user("ALICE", "old", False)
    store.set_password("ALICE", "new")
    user = store.get_user("ALICE")
    assert user is not None and user.password_hash == "new"


def test_delete_user_takes_their_scripts_and_grants(store: Store) -> None:
    store.add_user("ALICE", "h", False)
    store.add_user("BOB", "h", False)
    put(store, "ALICE", "mine")
    put(store, "BOB", "bobs")
    store.grants.grant("pyqscript", "BOB", "bobs", "ALICE")
    assert store.delete_user("ALICE") is True
    assert store.get_user("ALICE") is None
    assert store.get_script("ALICE", "mine") is None
    assert not store.grants.is_granted("pyqscript", "BOB", "bobs", "ALICE")
    assert store.get_script("BOB", "bobs") is not None
    assert store.delete_user("ALICE") is False


def test_a_new_user_with_a_deleted_users_name_inherits_nothing(store: Store) -> None:
    # Names are reused (OMLUSER, say): the new account is another person, who must
    # not see the old one's scripts, grants or jobs.
    store.add_user("ALICE", "h", False)
    put(store, "ALICE", "mine")
    put(store, "BOB", "bobs")
    store.grants.grant("pyqscript", "BOB", "bobs", "ALICE")
    store.jobs.create(id="job1", owner="ALICE", kind="do_eval", request="{}",
                      idempotency_key=None)
    store.delete_user("ALICE")
    store.add_user("ALICE", "h2", False)
    assert store.visible_scripts("ALICE") == []
    assert store.jobs.get("job1", "ALICE") is None
    assert store.jobs.of_owner("ALICE") == []


# -- revoked tokens ---------------------------------------------------------------

def test_revoked_tokens_are_remembered(store: Store) -> None:
    assert not store.is_revoked("jti-1")
    store.revoke_token("jti-1", time.time() + 3600)
    store.revoke_token("jti-1", time.time() + 3600)  # twice is fine
    assert store.is_revoked("jti-1")
    assert not store.is_revoked("jti-2")


def test_revoked_tokens_past_their_expiry_are_purged(store: Store) -> None:
    store.revoke_token("old", time.time() - 1)
    assert store.is_revoked("old")  # kept until the next revocation cleans up
    store.revoke_token("new", time.time() + 3600)
    assert not store.is_revoked("old")
    assert store.is_revoked("new")


# -- scripts ----------------------------------------------------------------------

def test_put_and_get_a_script(store: Store) -> None:
    created = put(store, "ALICE", "s", "def f():\n    return 'v1'\n")
    assert created is not None
    assert (created.owner, created.name, created.is_global, created.created_by) == (
        "ALICE", "s", False, "ALICE")
    assert created.created == created.updated
    assert store.get_script("ALICE", "s") == created


def test_put_without_overwrite_refuses_an_existing_script(store: Store) -> None:
    put(store, "ALICE", "s", "def f():\n    return 'v1'\n")
    with pytest.raises(Conflict):
        put(store, "ALICE", "s", "def f():\n    return 'v2'\n")
    script = store.get_script("ALICE", "s")
    assert script is not None and "v1" in script.source


def test_put_with_overwrite_replaces_source_and_keeps_identity(store: Store) -> None:
    first = put(store, "ALICE", "s", "def f():\n    return 'v1'\n")
    second = put(store, "ALICE", "s", "def f():\n    return 'v2'\n", overwrite=True)
    assert first is not None and second is not None
    assert (second.id, second.created) == (first.id, first.created)
    assert "v2" in second.source and second.updated >= first.updated


def test_same_name_under_different_owners(store: Store) -> None:
    put(store, "ALICE", "s")
    put(store, "BOB", "s")
    put(store, GLOBAL_OWNER, "s")
    assert {s.owner for s in (store.get_script(o, "s") for o in ("ALICE", "BOB", GLOBAL_OWNER))
            if s} == {"ALICE", "BOB", GLOBAL_OWNER}


def test_lookup_without_owner_is_own_script_then_global(store: Store) -> None:
    put(store, GLOBAL_OWNER, "shared")
    put(store, "ALICE", "shared")
    found = store.find_script("ALICE", "shared", None)
    assert found is not None and found.owner == "ALICE"
    found = store.find_script("BOB", "shared", None)
    assert found is not None and found.owner == GLOBAL_OWNER


def test_lookup_without_owner_never_finds_another_users_script(store: Store) -> None:
    put(store, "ALICE", "private")
    store.grants.grant("pyqscript", "ALICE", "private", "BOB")
    # Granted scripts are reached by naming their owner, as in OML.
    assert store.find_script("BOB", "private", None) is None
    assert store.find_script("BOB", "private", "ALICE") is not None


def test_lookup_with_owner(store: Store) -> None:
    put(store, "ALICE", "s")
    put(store, GLOBAL_OWNER, "g")
    assert store.find_script("ALICE", "s", "ALICE") is not None
    assert store.find_script("BOB", "g", GLOBAL_OWNER) is not None
    assert store.find_script("BOB", "s", "ALICE") is None  # not granted: looks missing
    assert store.find_script("BOB", "nothing", "ALICE") is None


def test_grant_to_a_user_and_revoke(store: Store) -> None:
    put(store, "ALICE", "s")
    store.grants.grant("pyqscript", "ALICE", "s", "BOB")
    store.grants.grant("pyqscript", "ALICE", "s", "BOB")  # twice is one grant
    assert store.grants.is_granted("pyqscript", "ALICE", "s", "BOB")
    assert not store.grants.is_granted("pyqscript", "ALICE", "s", "CAROL")
    assert store.find_script("BOB", "s", "ALICE") is not None
    assert store.grants.revoke("pyqscript", "ALICE", "s", "BOB") is True
    assert store.grants.revoke("pyqscript", "ALICE", "s", "BOB") is False
    assert store.find_script("BOB", "s", "ALICE") is None


def test_grant_to_public_lets_everyone_run_it(store: Store) -> None:
    put(store, "ALICE", "s")
    store.grants.grant("pyqscript", "ALICE", "s", None)
    for user in ("BOB", "CAROL"):
        assert store.grants.is_granted("pyqscript", "ALICE", "s", user)
        assert store.find_script(user, "s", "ALICE") is not None
    assert store.grants.revoke("pyqscript", "ALICE", "s", None) is True
    assert store.find_script("BOB", "s", "ALICE") is None


def test_grants_are_per_object_type(store: Store) -> None:
    put(store, "ALICE", "s")
    store.grants.grant("datastore", "ALICE", "s", "BOB")
    assert not store.grants.is_granted("pyqscript", "ALICE", "s", "BOB")
    assert store.find_script("BOB", "s", "ALICE") is None


def test_visible_scripts_are_own_global_and_granted(store: Store) -> None:
    put(store, "ALICE", "a1")
    put(store, "ALICE", "a2")
    put(store, "BOB", "b_granted")
    put(store, "BOB", "b_private")
    put(store, "CAROL", "c_public")
    put(store, GLOBAL_OWNER, "g")
    store.grants.grant("pyqscript", "BOB", "b_granted", "ALICE")
    store.grants.grant("pyqscript", "CAROL", "c_public", None)
    assert names(store.visible_scripts("ALICE")) == [
        ("ALICE", "a1"), ("ALICE", "a2"), ("BOB", "b_granted"), ("CAROL", "c_public"),
        (GLOBAL_OWNER, "g")]
    assert names(store.visible_scripts("DAVE")) == [("CAROL", "c_public"), (GLOBAL_OWNER, "g")]


def test_deleting_a_script_deletes_its_grants(store: Store) -> None:
    put(store, "ALICE", "s")
    store.grants.grant("pyqscript", "ALICE", "s", "BOB")
    store.grants.grant("pyqscript", "ALICE", "s", None)
    assert store.delete_script("ALICE", "s") is True
    assert store.get_script("ALICE", "s") is None
    # A new script under the old name must not inherit the old grants.
    put(store, "ALICE", "s")
    assert not store.grants.is_granted("pyqscript", "ALICE", "s", "BOB")
    assert store.find_script("BOB", "s", "ALICE") is None
    assert names(store.visible_scripts("BOB")) == []


def test_deleting_a_missing_script_says_so(store: Store) -> None:
    assert store.delete_script("ALICE", "nothing") is False


def test_overwriting_keeps_grants(store: Store) -> None:
    put(store, "ALICE", "s")
    store.grants.grant("pyqscript", "ALICE", "s", "BOB")
    put(store, "ALICE", "s", "def g():\n    return 2\n", overwrite=True)
    assert store.grants.is_granted("pyqscript", "ALICE", "s", "BOB")


def test_a_second_store_on_the_same_file_sees_the_writes(tmp_path: Path) -> None:
    # `epe user add` writes while the server holds the database open (WAL).
    path = tmp_path / "metadata.sqlite"
    server, cli = open_store(f"sqlite:///{path}"), open_store(f"sqlite:///{path}")
    try:
        cli.add_user("NEWUSER", "h", False)
        assert server.get_user("NEWUSER") is not None
    finally:
        server.close()
        cli.close()
