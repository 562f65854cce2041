"""The audit trail over HTTP and ``epe audit`` (docs/operations.md): the runs, logins and
changes a test makes come back, exactly, to an admin and to no one else; filters and
pages narrow them; old entries are purged. Nothing asserts on elapsed time."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.serverproc import (
    API,
    TOKEN_URL,
    EpeServer,
    assert_error,
    put_table,
    run_cli,
    wait_for,
)

MakeServer = Callable[..., EpeServer]
AUDIT = "/omlusers/api/v1/audit"
DOUBLE = "def f(n=1):\n    return n * 2\n"
COUNT = "def f(df):\n    return int(df.shape[0])\n"
FAILING = "def f():\n    return 1 / 0\n"


def entries(c: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = c.get(AUDIT, params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()["result"]
    assert page["hasMore"] is False
    items: list[dict[str, Any]] = page["items"]
    return items


def log_in(srv: EpeServer, user: str, password: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                       "password": password})


@pytest.fixture(scope="module")
def trail(server: EpeServer) -> dict[str, Any]:
    """What ALICE (and BOB, beside her) did on the shared server, and what it returned."""
    _admin, admin_password = admin = server.add_user(admin=True)
    alice, alice_password = server.add_user()
    bob, bob_password = server.add_user()
    since = time.time()
    assert_error(log_in(server, alice, "wrong password"), 401, 2001)
    a = server.client(alice, alice_password)
    b = server.client(bob, bob_password)
    put_table(a, "NUMS", "X\n1\n2\n3\n")
    created = a.post(f"{API}/scripts", json={"name": "double", "script": DOUBLE})
    assert created.status_code == 201, created.text
    assert a.post(f"{API}/do-eval/double", json={"parameters": '{"n": 2}'},
                  headers={"X-Request-ID": "alice-run"}).json() == {"result": 4}
    assert_error(a.post(f"{API}/do-eval", json={"script": FAILING}), 400, 1011)
    query = "SELECT * FROM NUMS"
    assert a.post(f"{API}/table-apply", json={"script": COUNT, "input": query}).json() == \
        {"result": 3}
    job = a.post(f"{API}/do-eval/double", json={"asyncFlag": True})
    url = job.headers["Location"]
    wait_for(lambda: a.get(url).status_code == 302)
    assert a.post(f"{API}/scripts/double/grants", json={"user": bob}).status_code == 200
    assert b.post(f"{API}/do-eval/double/{alice}").json() == {"result": 2}
    return {"admin": server.client(*admin), "alice": alice, "bob": bob, "a": a,
            "since": since, "job": url.rsplit("/", 1)[1], "query": query,
            "admin_name": admin[0], "admin_password": admin_password}


def test_an_admin_gets_exactly_the_runs_made(trail: dict[str, Any]) -> None:
    runs = entries(trail["admin"], user=trail["alice"], kind="run", since=trail["since"])
    assert [(e["action"], e["status"], e["errorCode"], e["details"]["mode"]) for e in runs] == [
        ("do_eval", "ok", None, "sync"), ("do_eval", "failed", 1011, "sync"),
        ("table_apply", "ok", None, "sync"), ("do_eval", "ok", None, "async")]
    named, failed, applied, job = runs
    source_hash = hashlib.sha256(DOUBLE.encode()).hexdigest()
    assert (named["owner"], named["name"]) == (trail["alice"], "double")
    assert named["details"]["scriptHash"] == source_hash
    assert named["details"]["units"] == 1 and named["details"]["outputBytes"] == len("4")
    assert named["requestId"] == "alice-run"
    assert isinstance(named["details"]["durationMs"], float)
    assert failed["name"] is None  # an inline function: its hash, no name
    assert failed["details"]["scriptHash"] == hashlib.sha256(FAILING.encode()).hexdigest()
    assert applied["details"]["input"] == trail["query"]
    assert applied["details"]["inputRows"] == 3
    assert job["details"]["jobId"] == trail["job"]
    assert all(e["user"] == trail["alice"] and e["kind"] == "run" for e in runs)
    # Nothing of the parameters' values is kept.
    assert all("parameters" not in e["details"] for e in runs)


def test_an_admin_gets_exactly_the_logins_made(trail: dict[str, Any]) -> None:
    logins = entries(trail["admin"], user=trail["alice"], kind="login", since=trail["since"])
    assert [(e["status"], e["errorCode"], e["client"]) for e in logins] == [
        ("failed", 2001, "127.0.0.1"), ("ok", None, "127.0.0.1")]


def test_changes_to_scripts_and_grants_are_kept(trail: dict[str, Any]) -> None:
    scripts = entries(trail["admin"], user=trail["alice"], kind="script", since=trail["since"])
    assert [(e["action"], e["owner"], e["name"]) for e in scripts] == [
        ("create", trail["alice"], "double"), ("grant", trail["alice"], "double")]
    assert scripts[1]["details"]["grantee"] == trail["bob"]
    # BOB's run of ALICE's script is his, naming her as the script's owner.
    [bobs] = entries(trail["admin"], user=trail["bob"], kind="run", since=trail["since"])
    assert (bobs["action"], bobs["owner"], bobs["name"]) == ("do_eval", trail["alice"], "double")


def test_filters_and_pages_narrow_the_entries(trail: dict[str, Any]) -> None:
    admin = trail["admin"]
    everything = entries(admin, user=trail["alice"], since=trail["since"])
    assert {e["kind"] for e in everything} == {"login", "script", "run"}
    assert entries(admin, user=trail["alice"], until=trail["since"]) == []
    first = admin.get(AUDIT, params={"user": trail["alice"], "since": trail["since"],
                                     "limit": 3}).json()["result"]
    rest = admin.get(AUDIT, params={"user": trail["alice"], "since": trail["since"],
                                    "limit": 1000, "offset": 3}).json()["result"]
    assert first["hasMore"] is True and len(first["items"]) == 3
    assert first["items"] + rest["items"] == everything
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(trail["since"] - 1))
    assert entries(admin, user=trail["alice"].lower(), since=iso)[-len(everything):] == \
        everything


def test_nonsense_filters_are_refused(trail: dict[str, Any]) -> None:
    admin = trail["admin"]
    assert_error(admin.get(AUDIT, params={"kind": "everything"}), 400, 1001)
    assert_error(admin.get(AUDIT, params={"since": "last tuesday"}), 400, 1001)
    assert_error(admin.get(AUDIT, params={"limit": 0}), 400, 1001)
    assert_error(admin.get(AUDIT, params={"limit": "many"}), 400, 1001)


def test_only_admins_read_the_trail(trail: dict[str, Any], server: EpeServer) -> None:
    assert_error(trail["a"].get(AUDIT), 403, 3001)
    with server.http() as anonymous:
        assert_error(anonymous.get(AUDIT), 401, 2001)


def test_users_made_and_deleted_by_an_admin_are_kept(server: EpeServer) -> None:
    admin_name, a = server.new_client(admin=True)
    since = time.time()
    r = a.post("/omlusers/api/v1/users", json={"username": "carol_audit",
                                                "password": "pw-Secret1"})
    assert r.status_code == 201, r.text
    assert a.delete("/omlusers/api/v1/users/carol_audit").status_code == 200
    users = entries(a, kind="user", user=admin_name, since=since)
    assert [(e["action"], e["name"]) for e in users] == [("create", "CAROL_AUDIT"),
                                                         ("delete", "CAROL_AUDIT")]


def test_epe_audit_prints_what_the_api_answers(trail: dict[str, Any], server: EpeServer) -> None:
    env = {"EPE_URL": server.url, "EPE_USER": trail["admin_name"],
           "EPE_PASSWORD": trail["admin_password"]}
    filters = ["--user", trail["alice"], "--kind", "run", "--since", str(trail["since"])]
    printed = run_cli("audit", *filters, "--json", env=env)
    assert json.loads(printed.stdout) == entries(trail["admin"], user=trail["alice"],
                                                 kind="run", since=trail["since"])
    table = run_cli("audit", *filters, "--limit", "2", env=env).stdout.splitlines()
    assert table[0].split() == ["TIME", "KIND", "ACTION", "USER", "STATUS", "CODE", "OBJECT",
                                "CLIENT"]
    assert len(table) == 3 and "double" in table[1] and "1011" in table[2]
    refused = run_cli("audit", env={**env, "EPE_USER": trail["alice"],
                                    "EPE_PASSWORD": "pw-Secret1"}, check=False)
    assert refused.returncode == 1 and "errorCode 3001" in refused.stderr


def test_entries_past_the_retention_are_purged(make_server: MakeServer) -> None:
    srv = make_server()
    _admin, a = srv.new_client(admin=True)
    kept = entries(a)
    assert {e["kind"] for e in kept} == {"user", "login"}
    srv.stop()
    last = time.time()
    time.sleep(1.5)  # so that every entry so far is older than the shorter retention
    shorter = EpeServer(srv.data_dir, {"EPE_AUDIT_RETENTION": "1"}).start()
    try:
        _admin, a = shorter.new_client(admin=True)
        wait_for(lambda: a.get(AUDIT, params={"until": last}).json()["result"]["items"] == [])
    finally:
        shorter.stop()
