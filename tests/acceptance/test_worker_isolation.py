"""Workers reach the server's state only through their channel (docs/security.md).

The server runs as root here and workers as an unprivileged user (``nobody``):
user code can open neither the metadata database (which also holds the
datastores' objects) nor the token signing key, nor list the data folder, and
holds no inherited handle on any of them. What it may ask over its channel is
checked on the server as the calling user, whatever the call claims."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serverproc import API, EpeServer, unique_name, wait_for

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def two(server: EpeServer) -> Iterator[tuple[tuple[str, httpx.Client], tuple[str, httpx.Client]]]:
    alice, bob = server.new_client(), server.new_client()
    yield alice, bob
    alice[1].close()
    bob[1].close()


def value(c: httpx.Client, source: str, **params: Any) -> Any:
    r = c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


PROBE = '''import os

def attempt(action):
    try:
        action()
        return "allowed"
    except Exception as e:
        return type(e).__name__

def f(data_dir):
    def read(path):
        return lambda: open(path, "rb").read(16)

    def sqlite():
        import sqlite3
        db = sqlite3.connect("file:" + os.path.join(data_dir, "metadata.sqlite") + "?mode=ro",
                             uri=True)
        try:
            return db.execute("select count(*) from datastore_objects").fetchall()
        finally:
            db.close()

    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return {
        "metadata": attempt(read(os.path.join(data_dir, "metadata.sqlite"))),
        "metadata_wal": attempt(read(os.path.join(data_dir, "metadata.sqlite-wal"))),
        "sqlite": attempt(sqlite),
        "key": attempt(read(os.path.join(data_dir, "token-signing.key"))),
        "listdir": attempt(lambda: os.listdir(data_dir)),
        "tables": attempt(lambda: os.listdir(os.path.join(data_dir, "tables"))),
        "write": attempt(lambda: open(os.path.join(data_dir, "planted"), "w").close()),
        "server_environ": attempt(read("/proc/%d/environ" % os.getppid())),
        "server_fds": attempt(lambda: os.listdir("/proc/%d/fd" % os.getppid())),
        "uid": os.geteuid(),
        "epe_env": sorted(k for k in os.environ if k.startswith("EPE")),
        "fds": fds,
    }
'''


def test_worker_cannot_reach_the_data_folder(server: EpeServer, two: Any) -> None:
    (_alice, c), _bob = two
    data_dir = str(server.data_dir.resolve())
    # Make sure the datastore tables hold something worth stealing.
    value(c, "def f():\n    import oml\n    oml.ds.save({'secret': 42}, 'iso_secret', "
             "overwrite=True)\n")
    got = value(c, PROBE, data_dir=data_dir)
    assert got["epe_env"] == [], got["epe_env"]  # no server setting or secret reaches it
    # No descriptor inherited from the server points into the data folder.
    leaked = {fd: target for fd, target in got["fds"].items()
              if target.startswith(data_dir) or "metadata.sqlite" in target
              or target.endswith("token-signing.key")}
    assert leaked == {}, leaked
    if not AS_ROOT:
        # Not root: workers cannot drop privileges and run as the server's user
        # (docs/security.md); the checks above are what holds then.
        assert got["uid"] == os.getuid()
        return
    assert got["uid"] != 0
    denied = {k: got[k] for k in ("metadata", "metadata_wal", "key", "listdir", "tables",
                                  "write", "server_environ", "server_fds")}
    # In its sandbox the data folder and the server's process are not even there.
    assert denied == dict.fromkeys(denied, "FileNotFoundError"), got
    assert got["sqlite"] == "OperationalError", got  # sqlite3's "unable to open"
    assert not (server.data_dir / "planted").exists()


# User code talking to the channel directly, with every argument it likes.
RAW_CALL = '''def f(op, args):
    from epe.runner.worker.channel import CallRefused, call
    try:
        header, data = call(op, args)
    except CallRefused as e:
        return {"refused": e.kind, "message": str(e)}
    return {"answer": header, "bytes": len(data)}
'''


def test_a_function_cannot_impersonate_another_user(two: Any) -> None:
    (alice, a), (bob, b) = two
    name = unique_name("ds_mine_")
    value(a, "def f(ds):\n    import oml\n    oml.ds.save({'secret': 42}, ds)\n", ds=name)
    claims = {"owner": alice, "user": alice, "caller": alice, "username": alice}

    for op, args in (("ds.load", {"name": name, "owner": alice}),
                     ("ds.load", {"name": name, **claims}),
                     ("ds.describe", {"name": name, **claims}),
                     ("ds.delete", {"name": name, **claims}),
                     ("grant", {"name": name, "typ": "datastore", "user": bob,
                                "caller": alice, "owner": alice}),
                     ("ds.dir", {"name": name, "dstype": "all", **claims})):
        got = value(b, RAW_CALL, op=op, args=args)
        if op == "ds.dir":  # answered, but as bob: alice's datastore is not there
            assert got["answer"]["rows"] == [], got
        else:
            assert got.get("refused") == "NotFound", (op, got)

    # A save claiming alice's identity lands in bob's own namespace.
    meta = {"name": "x", "class_name": "int", "size": 1, "length": 1, "row_count": None,
            "col_count": None, "versions": '{"python":"3","libraries":{}}'}
    source = RAW_CALL.replace("call(op, args)", "call(op, args, b'X')")
    got = value(b, source, op="ds.save", args={"name": name, "objects": [meta], **claims})
    assert "answer" in got, got
    r = b.get(f"{API}/datastores/{name}")
    assert r.status_code == 200 and r.json()["result"]["owner"] == bob, r.text

    # Alice's datastore is untouched and still hers alone.
    r = a.get(f"{API}/datastores/{name}")
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["result"]["objects"]] == ["secret"]
    assert b.get(f"{API}/datastores/{name}/{alice}").status_code == 404
    # The channel works for what bob may do: an unknown call is refused, not a crash.
    got = value(b, RAW_CALL, op="admin.users", args={})
    assert got.get("refused") == "InvalidRequest", got


# -- spares: workers forked ahead of need -------------------------------------------------

SELF = '''def f():
    import os
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink("/proc/self/fd/" + fd))
        except OSError:
            pass
    return {"uid": os.getuid(), "pid": os.getpid(), "policy": os.sched_getscheduler(0),
            "name": open("/proc/self/comm").read().strip(),
            "sockets": [t for t in targets if t.startswith("socket:")],
            "groups": open("/proc/self/cgroup").read().split()}
'''


def metric(admin: httpx.Client, name: str) -> float:
    r = admin.get("/metrics")
    assert r.status_code == 200, r.text
    return sum(s.value for family in text_string_to_metric_families(r.text)
               for s in family.samples if s.name == name)


def test_a_new_users_first_run_gets_a_spare_that_is_a_worker_like_any(server: EpeServer) -> None:
    _admin, admin = server.new_client(admin=True)
    wait_for(lambda: metric(admin, "epe_worker_spares") >= 1)
    before = metric(admin, "epe_workers_from_spares_total")
    user, c = server.new_client()
    got = value(c, SELF)
    assert metric(admin, "epe_workers_from_spares_total") == before + 1
    kind = admin.get("/health").json()["resourceLimits"]
    if kind != "rlimit":
        # In its user's groups, put there by the fork server (a sandboxed spare sees the
        # cgroup files read-only): version 1's memory, cpu and pids lines, or version 2's.
        wanted = {"memory", "cpu", "pids"} if kind == "cgroup1" else {""}
        lines = [g for g in got["groups"] if wanted & set(g.split(":")[1].split(","))]
        assert len(lines) == len(wanted), got
        assert all(f"/epe/{user}/" in g + "/" for g in lines), (user, lines)
    # Named as any worker again, at normal priority; the fork server's sockets closed.
    assert got["name"] != "epe-spare" and got["policy"] == os.SCHED_OTHER, got
    assert got["sockets"] == [], got
    if AS_ROOT:  # sandboxed, as the user's uid, process 1 of its own PID namespace
        assert got["uid"] != 0 and got["pid"] == 1, got
    admin.close()
    c.close()
