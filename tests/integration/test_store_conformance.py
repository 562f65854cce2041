"""The metadata store's contract, which every backend must pass: users, revoked
tokens, scripts, grants, jobs, datastores, and the one error convention of
``epe.store`` (lookups None, deletes say whether, creates raise Conflict).

Run on a real SQLite file and on a real PostgreSQL database (the session's server,
a database per test); a backend is one entry of ``BACKENDS``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from epe.core.jobs import Status
from epe.core.names import GLOBAL_OWNER
from epe.errors import Conflict, InvalidSetting
from epe.store import ScriptRecord, Store, open_store
from epe.store.datastores import StoredObject
from epe.store.jobs import JobRecord, NewJob, QueueFull


def sqlite_url(_request: pytest.FixtureRequest, folder: Path) -> str:
    return f"sqlite:///{folder / 'metadata.sqlite'}"


def postgresql_url(request: pytest.FixtureRequest, _folder: Path) -> str:
    return str(request.getfixturevalue("pg_database"))


# Each backend: how to name a fresh, empty store (a folder of the test's own at hand).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": sqlite_url, "postgresql": postgresql_url}


@pytest.fixture(params=sorted(BACKENDS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
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


def test_users_are_listed_by_name_and_a_deleted_one_is_gone(store: Store) -> None:
    for name in ("CAROL", "ALICE", "BOB"):
        store.add_user(name, "h", name == "BOB")
    store.delete_user("CAROL")
    assert [(u.name, u.is_admin) for u in store.users()] == [("ALICE", False), ("BOB", True)]


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
    store.jobs.create(NewJob("ALICE", "do_eval", "{}"), id="job1")
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


def test_a_grant_to_a_group_follows_its_members_and_admins_are_the_group_admin(
        store: Store) -> None:
    for user, admin in (("ALICE", False), ("BOB", False), ("CAROL", False), ("DAN", True)):
        store.add_user(user, "x", admin)
    put(store, "ALICE", "s")
    store.grants.grant("pyqscript", "ALICE", "s", "TEAM", "group")
    store.grants.grant("pyqscript", "ALICE", "s", "TEAM", "group")  # twice is one grant
    store.grants.grant("pyqscript", "ALICE", "s", "ADMIN", "group")
    # A user named like the group is not its member.
    store.grants.grant("datastore", "ALICE", "s", "TEAM")
    assert store.identity.set_membership("BOB", ["TEAM", "OTHER"], admin=False) is True
    assert store.identity.set_membership("BOB", ["TEAM", "OTHER"], admin=False) is False
    assert store.identity.groups_of("BOB") == {"TEAM", "OTHER"}
    assert store.find_script("BOB", "s", "ALICE") is not None
    assert [s.name for s in store.visible_scripts("BOB")] == ["s"]
    assert store.find_script("CAROL", "s", "ALICE") is None
    assert store.find_script("DAN", "s", "ALICE") is not None  # an admin: in ADMIN
    assert not store.grants.is_granted("datastore", "ALICE", "s", "BOB")
    assert store.grants.grantees("pyqscript", "ALICE", "group") == {"s": ["ADMIN", "TEAM"]}
    store.identity.set_membership("BOB", ["OTHER"], admin=True)
    assert store.get_user("BOB").is_admin  # type: ignore[union-attr]
    assert store.identity.groups() == {"ADMIN": ["BOB", "DAN"], "OTHER": ["BOB"]}
    assert store.identity.remove_member("ADMIN", "BOB") is True
    assert store.find_script("BOB", "s", "ALICE") is None  # at once: no stale cache
    assert store.identity.add_member("TEAM", "CAROL") is True
    assert store.identity.add_member("TEAM", "CAROL") is False
    assert store.find_script("CAROL", "s", "ALICE") is not None
    assert store.grants.revoke("pyqscript", "ALICE", "s", "TEAM", "group") is True
    assert store.grants.revoke("pyqscript", "ALICE", "s", "TEAM", "group") is False
    assert store.find_script("CAROL", "s", "ALICE") is None
    store.delete_user("CAROL")
    assert store.identity.groups_of("CAROL") == frozenset()


def test_automation_tokens_are_kept_by_id_and_go_with_their_user(store: Store) -> None:
    from epe.store.identity import ApiToken

    store.add_user("ALICE", "x", False)
    token = ApiToken(id="a" * 32, owner="ALICE", name="ci", secret_hash="h" * 64,
                     scope="run", created=time.time(), expires=None)
    store.identity.add_token(token)
    with pytest.raises(Conflict):
        store.identity.add_token(ApiToken(**{**vars(token), "id": "b" * 32}))
    assert store.identity.token("a" * 32) == token
    assert store.identity.tokens("ALICE") == [token] == store.identity.tokens(None)
    assert store.identity.delete_token("a" * 32) is True
    assert store.identity.token("a" * 32) is None
    assert store.identity.delete_token("a" * 32) is False
    store.identity.add_token(token)
    store.delete_user("ALICE")
    assert store.identity.tokens(None) == []


def test_a_model_is_open_to_its_owner_shared_or_granted_and_a_grant_goes_with_it(
        store: Store) -> None:
    from epe.store.models import DeploymentRecord, new_model

    for user in ("ALICE", "BOB", "CAROL"):
        store.add_user(user, "x", False)
    fields = dict(owner="ALICE", version="1", namespace="", model_type="ONNX",
                  function="regression", description="", signature="{}", spec="{}",
                  script=None, size=1, digest="d" * 64)
    private = new_model(id="1" * 36, name="private", shared=False, **fields)
    shared = new_model(id="2" * 36, name="shared", shared=True, **fields)
    for model in (private, shared):
        store.models.add(model, b"x")
    store.models.deploy(DeploymentRecord("private-uri", private.id, "ALICE", time.time()))

    def sees(user: str) -> tuple[bool, list[str], list[str]]:
        return (store.models.open_to(private, user),
                [m.name for m in store.models.visible(user, {})],
                [d.uri for d, _ in store.models.endpoints(user)])

    assert sees("BOB") == (False, ["shared"], [])
    assert sees("ALICE") == (True, ["private", "shared"], ["private-uri"])
    store.grants.grant("model", "ALICE", private.id, "BOB")
    store.grants.grant("model", "ALICE", private.id, "TEAM", "group")
    assert sees("BOB") == (True, ["private", "shared"], ["private-uri"])
    assert sees("CAROL") == (False, ["shared"], [])
    store.identity.add_member("TEAM", "CAROL")
    assert sees("CAROL") == (True, ["private", "shared"], ["private-uri"])
    store.identity.remove_member("TEAM", "CAROL")
    assert sees("CAROL")[0] is False  # at once: no stale cache
    assert store.grants.revoke("model", "ALICE", private.id, "BOB") is True
    assert sees("BOB") == (False, ["shared"], [])
    assert not store.grants.is_granted("pyqscript", "ALICE", private.id, "TEAM")
    store.models.undeploy("private-uri")
    assert store.models.delete(private) is True
    assert store.grants.grantees("model", "ALICE", "group") == {}


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


def test_a_second_store_on_the_same_database_sees_the_writes(url: str) -> None:
    # `epe user add` writes while the server holds the database open (WAL on SQLite).
    server, cli = open_store(url), open_store(url)
    try:
        cli.add_user("NEWUSER", "h", False)
        assert server.get_user("NEWUSER") is not None
    finally:
        server.close()
        cli.close()


# -- jobs ---------------------------------------------------------------------------

def new_job(store: Store, job_id: str, owner: str = "ALICE",
            key: str | None = None) -> JobRecord:
    return store.jobs.create(NewJob(owner, "do_eval", "{}", idempotency_key=key), id=job_id)


def test_a_job_moves_only_as_its_state_machine_allows(store: Store) -> None:
    job = new_job(store, "j1")
    assert job.status is Status.PENDING and job.progress_total == 0
    assert store.jobs.move("j1", Status.RUNNING)
    assert not store.jobs.move("j1", Status.PENDING)
    store.jobs.progress("j1", 3, 10)
    assert store.jobs.move("j1", Status.FINISH, http_status=200)
    done = store.jobs.get("j1")
    assert done is not None and done.status is Status.FINISH and done.finished is not None
    assert (done.progress_done, done.progress_total, done.http_status) == (3, 10, 200)
    assert not store.jobs.move("j1", Status.FAILED)  # an ended job stays ended


def test_a_job_belongs_to_its_owner(store: Store) -> None:
    new_job(store, "j1", "ALICE")
    assert store.jobs.get("j1", "ALICE") is not None
    assert store.jobs.get("j1", "BOB") is None
    assert [j.id for j in store.jobs.of_owner("ALICE")] == ["j1"]
    assert store.jobs.of_owner("BOB") == []


def test_an_idempotency_key_is_used_once_per_owner(store: Store) -> None:
    new_job(store, "j1", key="k")
    with pytest.raises(Conflict):
        new_job(store, "j2", key="k")
    new_job(store, "j3", "BOB", key="k")  # another owner's key is another key
    found = store.jobs.by_idempotency_key("ALICE", "k")
    assert found is not None and found.id == "j1"


def test_unfinished_jobs_fail_at_restart_and_old_ones_expire(store: Store) -> None:
    new_job(store, "waiting")
    new_job(store, "running")
    store.jobs.move("running", Status.RUNNING)
    new_job(store, "ended")
    store.jobs.move("ended", Status.RUNNING)
    store.jobs.move("ended", Status.FINISH)
    assert sorted(store.jobs.fail_unfinished("stopped")) == ["running", "waiting"]
    failed = store.jobs.get("waiting")
    assert failed is not None and failed.status is Status.FAILED and failed.error == "stopped"
    assert {j.id for j in store.jobs.ended_before(time.time() + 1)} == {
        "waiting", "running", "ended"}
    assert store.jobs.delete("ended") is True
    assert store.jobs.delete("ended") is False


# -- the job queue --------------------------------------------------------------------------

def queued(store: Store, job_id: str, server: str = "A", service: str = "LOW",
           lease: float = 60.0, pinned: bool = False) -> JobRecord:
    job = NewJob("ALICE", "do_eval", "{}", service=service, source="def f(): pass",
                 pinned=pinned)
    return store.jobs.create(job, id=job_id, server=server, lease=lease)


def test_claims_take_the_oldest_waiting_jobs_of_a_level(store: Store) -> None:
    for job_id in ("j1", "j2", "j3"):
        queued(store, job_id)
    queued(store, "high", service="HIGH")
    claimed = store.jobs.claim("B", "LOW", 2, 60.0)
    assert [j.id for j in claimed] == ["j1", "j2"]
    assert all(j.status is Status.RUNNING and j.server == "B" and j.started for j in claimed)
    assert claimed[0].source == "def f(): pass"
    assert [j.id for j in store.jobs.claim("A", "LOW", 5, 60.0)] == ["j3"]
    assert store.jobs.claim("A", "LOW", 5, 60.0) == []
    assert [j.id for j in store.jobs.claim("A", "HIGH", 5, 60.0)] == ["high"]


def test_pinned_jobs_are_claimed_only_by_their_server(store: Store) -> None:
    queued(store, "pinned", server="A", pinned=True)
    assert store.jobs.claim("B", "LOW", 1, 60.0) == []
    assert [j.id for j in store.jobs.claim("A", "LOW", 1, 60.0)] == ["pinned"]


def test_waiting_jobs_of_a_server_whose_lease_ran_out_are_claimed_not_failed(
        store: Store) -> None:
    # A waiting job has not started: another server runs it (docs/deploy.md); one pinned
    # to its server waits for that server to come back.
    queued(store, "orphan", server="A", lease=-1.0)
    queued(store, "pinned", server="A", lease=-1.0, pinned=True)
    assert store.jobs.reap("its server stopped") == []
    assert [j.id for j in store.jobs.claim("B", "LOW", 5, 60.0)] == ["orphan"]
    assert [j.id for j in store.jobs.claim("A", "LOW", 5, 60.0)] == ["pinned"]


def test_running_jobs_of_a_server_whose_lease_ran_out_are_failed(store: Store) -> None:
    queued(store, "running", server="A")
    assert [j.id for j in store.jobs.claim("A", "LOW", 1, -1.0)] == ["running"]  # run out
    assert store.jobs.reap("its server stopped") == ["running"]
    failed = store.jobs.get("running")
    assert failed is not None and failed.status is Status.FAILED
    assert (failed.error, failed.http_status) == ("its server stopped", 400)
    assert store.jobs.reap("again") == []


def test_a_stopping_server_hands_back_its_waiting_jobs_but_the_pinned_ones(
        store: Store) -> None:
    queued(store, "free", server="A")
    queued(store, "pinned", server="A", pinned=True)
    queued(store, "running", server="A")
    store.jobs.move("running", Status.RUNNING)
    queued(store, "other", server="B")
    assert store.jobs.hand_back("A") == ["free"]
    free = store.jobs.get("free")
    assert free is not None and free.status is Status.PENDING and free.server is None
    assert store.jobs.renew("A", 60.0, {"free", "pinned", "running"}) == {"pinned", "running"}
    assert [j.id for j in store.jobs.claim("C", "LOW", 5, 60.0)] == ["free", "other"]


def test_a_server_alone_started_again_adopts_every_waiting_job(store: Store) -> None:
    queued(store, "pinned", server="OLD", pinned=True)
    queued(store, "handed back", server="OLD")
    store.jobs.hand_back("OLD")
    queued(store, "running", server="OLD")
    store.jobs.move("running", Status.RUNNING)
    assert sorted(store.jobs.adopt("NEW", 60.0)) == ["handed back", "pinned"]
    assert [j.id for j in store.jobs.claim("NEW", "LOW", 5, 60.0)] == ["pinned", "handed back"]


def test_renewing_keeps_leases_and_says_what_is_no_longer_held(store: Store) -> None:
    queued(store, "kept", server="A", lease=0.5)
    queued(store, "deleted", server="A")
    queued(store, "taken", server="A")
    store.jobs.claim("B", "LOW", 1, 60.0)  # "kept" is the oldest: B holds it now
    store.jobs.delete("deleted")
    assert store.jobs.renew("A", 60.0, {"kept", "deleted", "taken"}) == {"taken"}
    assert store.jobs.renew("B", -1.0, {"kept"}) == {"kept"}  # B stops renewing: run out
    assert store.jobs.reap("stopped") == ["kept"]
    assert store.jobs.renew("B", 60.0, {"kept"}) == set()  # an ended job is no one's


def test_racing_servers_never_claim_one_job_twice(store: Store) -> None:
    for i in range(40):
        queued(store, f"j{i:02d}")
    outcomes = race(store, lambda i: [j.id for j in store.jobs.claim(f"S{i}", "LOW", 3, 60.0)])
    claimed = [job_id for ids in outcomes for job_id in ids]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 3 * RACERS


def test_a_server_holds_at_most_its_limit_of_unfinished_jobs(store: Store) -> None:
    job = NewJob("ALICE", "do_eval", "{}")
    for i in range(3):
        store.jobs.create(job, id=f"j{i}", server="A", lease=60.0, limit=3)
    with pytest.raises(QueueFull):
        store.jobs.create(job, id="j3", server="A", lease=60.0, limit=3)
    store.jobs.create(job, id="b0", server="B", lease=60.0, limit=3)
    store.jobs.claim("B", "LOW", 1, 60.0)  # nothing of A's to claim: no service level
    store.jobs.move("j0", Status.FAILED)
    store.jobs.create(job, id="j4", server="A", lease=60.0, limit=3)


def test_finishing_keeps_the_answer_with_the_end_in_one_step(store: Store) -> None:
    queued(store, "j1")
    store.jobs.claim("A", "LOW", 1, 60.0)
    assert not store.jobs.finish("j1", "B", status=Status.FINISH, http_status=200,
                                 body=b"{}", log="")  # not B's job
    assert store.jobs.answer("j1") is None
    assert store.jobs.finish("j1", "A", status=Status.FINISH, http_status=200,
                             body=b'{"result":1}', log="printed\n")
    assert store.jobs.answer("j1") == (200, b'{"result":1}')
    assert store.jobs.log("j1") == "printed\n"
    done = store.jobs.get("j1")
    assert done is not None and (done.status, done.http_status) == (Status.FINISH, 200)
    assert not store.jobs.finish("j1", "A", status=Status.FAILED, http_status=400,
                                 body=b"{}", log="")  # ended stays
    assert store.jobs.delete("j1")
    assert store.jobs.answer("j1") is None and store.jobs.log("j1") is None


def test_a_shared_secret_is_made_once(store: Store) -> None:
    made = race(store, lambda i: store.secret("key", lambda: bytes([i]) * 8))
    assert len(set(made)) == 1 and len(made[0]) == 8
    assert store.secret("key", lambda: b"other") == made[0]


# -- datastores -----------------------------------------------------------------------

def stored(name: str, data: bytes = b"pickle") -> StoredObject:
    return StoredObject(name, "int", len(data), None, None, None, "{}", data)


def test_a_datastore_is_saved_whole_and_read_by_its_owner(store: Store) -> None:
    store.datastores.save("ALICE", "ds", [stored("a"), stored("b", b"bb")], description="two")
    info = store.datastores.readable("ALICE", "ds", None)
    assert info is not None and (info.object_count, info.size) == (2, 8)
    objects = store.datastores.objects(info, ["b"], with_data=True)
    assert [(o.name, o.data) for o in objects] == [("b", b"bb")]
    whole = store.datastores.whole(info)
    assert whole is not None and [o.name for o in whole[1]] == ["a", "b"]


def test_saving_over_a_datastore_needs_overwrite_or_append(store: Store) -> None:
    store.datastores.save("ALICE", "ds", [stored("a")])
    with pytest.raises(Conflict):
        store.datastores.save("ALICE", "ds", [stored("b")])
    store.datastores.save("ALICE", "ds", [stored("b")], append=True)
    with pytest.raises(Conflict):  # an appended name that is taken
        store.datastores.save("ALICE", "ds", [stored("b")], append=True)
    store.datastores.save("ALICE", "ds", [stored("c")], grantable=True, overwrite=True)
    info = store.datastores.readable("ALICE", "ds", None)
    assert info is not None and info.grantable
    assert [o.name for o in store.datastores.objects(info)] == ["c"]


def test_a_datastore_is_read_by_others_only_when_granted(store: Store) -> None:
    store.datastores.save("ALICE", "ds", [stored("a")], grantable=True)
    assert store.datastores.readable("BOB", "ds", "ALICE") is None
    assert store.datastores.granted_to("BOB") == []
    store.grants.grant("datastore", "ALICE", "ds", "BOB")
    assert store.datastores.readable("BOB", "ds", "ALICE") is not None
    assert [d.name for d in store.datastores.granted_to("BOB")] == ["ds"]
    assert store.datastores.grantees("ALICE", "ds") == ["BOB"]


def test_deleting_a_datastore_says_how_much_went(store: Store) -> None:
    assert store.datastores.delete("ALICE", "nothing") is None
    store.datastores.save("ALICE", "ds", [stored("a"), stored("b")], grantable=True)
    store.grants.grant("datastore", "ALICE", "ds", None)
    assert store.datastores.delete("ALICE", "ds", ["a", "zzz"]) == 1
    assert store.datastores.delete("ALICE", "ds") == 1
    assert store.datastores.readable("ALICE", "ds", None) is None
    # A new datastore under the old name inherits no grant.
    store.datastores.save("ALICE", "ds", [stored("a")], grantable=True)
    assert store.datastores.readable("BOB", "ds", "ALICE") is None


def test_deleting_a_user_deletes_everything_of_theirs(store: Store) -> None:
    store.add_user("ALICE", "h", False)
    put(store, "ALICE", "s")
    new_job(store, "j1")
    store.datastores.save("ALICE", "ds", [stored("a")], grantable=True)
    store.grants.grant("pyqscript", "BOB", "theirs", "ALICE")
    assert store.delete_user("ALICE") is True
    assert store.delete_user("ALICE") is False
    assert store.get_script("ALICE", "s") is None
    assert store.jobs.get("j1") is None
    assert store.datastores.readable("ALICE", "ds", None) is None
    assert not store.grants.is_granted("pyqscript", "BOB", "theirs", "ALICE")


# -- opening ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["mysql://host/db", "no-scheme-at-all", "sqlite://"])
def test_a_url_that_names_no_store_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidSetting, match="metadata URL"):
        open_store(bad)


# -- races: the same answers whoever runs first (READ COMMITTED on PostgreSQL) ------------

RACERS = 8


def race(store: Store, action: Callable[[int], object]) -> list[object]:
    """``action(i)`` from ``RACERS`` threads released at once; each one's value or error."""
    start = threading.Barrier(RACERS)

    def one(i: int) -> object:
        start.wait()
        try:
            return action(i)
        except Exception as e:  # what each racer got is the point of the test
            return e

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def test_racing_creates_of_one_script_give_one_success_and_conflicts(store: Store) -> None:
    outcomes = race(store, lambda i: put(store, "ALICE", "s", f"def f():\n    return {i}\n"))
    assert sum(isinstance(o, ScriptRecord) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, ScriptRecord | Conflict) for o in outcomes), outcomes


def test_racing_overwrites_of_one_script_all_succeed(store: Store) -> None:
    outcomes = race(store, lambda i: put(store, "ALICE", "s", f"def f():\n    return {i}\n",
                                         overwrite=True))
    assert all(isinstance(o, ScriptRecord) for o in outcomes), outcomes
    assert len({o.id for o in outcomes if isinstance(o, ScriptRecord)}) == 1


def test_racing_user_creation_gives_one_user_and_conflicts(store: Store) -> None:
    outcomes = race(store, lambda i: store.add_user("ALICE", f"hash{i}", False))
    assert sum(o is not None and not isinstance(o, Exception) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, Exception)), outcomes


def test_racing_grants_and_revokes_of_one_token_are_no_errors(store: Store) -> None:
    put(store, "ALICE", "s")
    outcomes = race(store, lambda _i: store.grants.grant("pyqscript", "ALICE", "s", "BOB"))
    outcomes += race(store, lambda _i: store.revoke_token("jti", time.time() + 60))
    assert outcomes == [None] * 2 * RACERS
    assert store.grants.grantees("pyqscript", "ALICE") == {"s": ["BOB"]}
    assert store.is_revoked("jti")


def test_racing_datastore_saves_conflict_and_appends_keep_every_object(store: Store) -> None:
    outcomes = race(store, lambda i: store.datastores.save(
        "ALICE", "ds", [stored(f"first{i}")]))
    assert outcomes.count(None) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if o is not None), outcomes
    outcomes = race(store, lambda i: store.datastores.save(
        "ALICE", "appended", [stored(f"o{i}")], append=True))
    assert outcomes == [None] * RACERS
    info = store.datastores.readable("ALICE", "appended", None)
    assert info is not None
    assert sorted(o.name for o in store.datastores.objects(info)) == [
        f"o{i}" for i in range(RACERS)]
