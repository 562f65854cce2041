"""Tenants never meet: a function of one user attacks from inside its worker, and
nothing of another user's is within its reach (docs/security.md).

Each attack is tried across two users, where it must fail; where it may succeed
within one user (patching the user's own library, say), that is checked too, so
the test shows the line is where the doc draws it. On a server that cannot
isolate (not root) only what still holds is checked, and ``/health`` says so."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from epe.runner.identity import unreachable
from tests.acceptance.test_worker_isolation import metric
from tests.serverproc import (
    API,
    EPE,
    USERS,
    EpeServer,
    assert_error,
    put_table,
    unique_name,
    wait_for,
)

AS_ROOT = os.geteuid() == 0
isolated = pytest.mark.skipif(not AS_ROOT, reason="users are isolated only on a root server")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    s = EpeServer(tmp_path_factory.mktemp("epe-tenants")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def users(srv: EpeServer) -> Iterator[dict[str, tuple[str, httpx.Client]]]:
    found = {k: srv.new_client() for k in ("alice", "bob")}
    put_table(found["bob"][1], "SECRET", "CARD\n4111-1111-1111-1111\n")
    put_table(found["alice"][1], "MINE", "X\n1\n")
    yield found
    for _name, client in found.values():
        client.close()


def value(c: httpx.Client, source: str, **params: Any) -> Any:
    r = c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def table_apply(c: httpx.Client, source: str, sql: str, **params: Any) -> Any:
    params = {"oml_input_type": "pandas.DataFrame", **params}
    r = c.post(f"{API}/table-apply", json={"script": source, "input": sql,
                                           "parameters": json.dumps(params)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_health_says_whether_tenants_are_isolated(srv: EpeServer) -> None:
    with srv.http() as c:
        health = c.get("/health").json()
    assert (health["status"], health["tenantIsolation"]) == ("ok", AS_ROOT)


@isolated
def test_a_user_added_through_the_api_has_their_worker_uid_before_their_first_run(
        srv: EpeServer) -> None:
    """Given with the account (as a directory user's at first sign-in), so that a new
    user's first run makes no write for it; one added on the command line, with no
    server to say whether users are isolated, is given theirs when they sign in."""
    _admin, admin = srv.new_client(admin=True)
    name = unique_name("UIDUSER")
    r = admin.post(USERS, json={"username": name, "password": "uid-Secret1"})
    assert r.status_code == 201, r.text
    admin.close()
    cli_user = unique_name("UIDCLI")
    srv._add_with_cli(cli_user, "uid-Secret1", False)  # ``epe user add``
    cli_user = cli_user.upper()

    def uid_of(user: str) -> Any:
        with sqlite3.connect(srv.data_dir / "metadata.sqlite") as db:
            return db.execute("SELECT uid FROM worker_uids WHERE owner = ?", (user,)).fetchone()

    assert uid_of(name) is not None
    assert uid_of(cli_user) is None
    c = srv.client(cli_user, "uid-Secret1")  # signs in: given just after the token is sent
    deadline = time.monotonic() + 30
    while uid_of(cli_user) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_of(cli_user) is not None
    assert value(c, "def f():\n    import os\n    return os.getuid()\n") == uid_of(cli_user)[0]
    c.close()


# -- a patched library and another user's rows ---------------------------------------

PATCH = '''def f():
    import builtins
    import pandas as pd
    if not hasattr(builtins, "stolen"):
        builtins.stolen = []
        original = pd.DataFrame.to_dict
        def spy(self, *args, **kwargs):
            builtins.stolen.append(self.to_json())
            return original(self, *args, **kwargs)
        pd.DataFrame.to_dict = spy
    return builtins.stolen
'''
VICTIM = "def f(df):\n    return df.to_dict(orient='records')\n"


def test_a_patched_library_never_sees_another_users_rows(users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    for _ in range(4):  # every worker of alice's pool patched (runs land on either)
        value(alice, PATCH)
    assert table_apply(bob, VICTIM, "SELECT * FROM SECRET") == [
        {"CARD": "4111-1111-1111-1111"}]
    loot = [value(alice, PATCH) for _ in range(4)]
    assert not any("4111" in str(part) for part in loot), loot
    # Within one user the patch does see the user's own rows: a worker is the user's.
    for _ in range(4):
        table_apply(alice, VICTIM, "SELECT * FROM MINE")
    assert any(part for part in (value(alice, PATCH) for _ in range(4)))


# -- another run's input, in flight ----------------------------------------------------

SLOW_READER = "def f(df):\n    import time\n    time.sleep(4)\n    return len(df)\n"
# Where the server puts inputs (/dev/shm), and the other places a file could be shared.
# /tmp only at its top: below it a checkout under /tmp is bound in (read-only) to run.
HUNT = '''def f():
    import os
    found = {}
    for top in ("/dev/shm", "/tmp", "/run", "/var/tmp"):
        for root, dirs, files in os.walk(top):
            if root == "/tmp":
                dirs.clear()
            for name in files:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as fh:
                        found[path] = fh.read().count(b"4111-1111-1111-1111")
                except OSError as e:
                    found[path] = type(e).__name__
    return found
'''


@isolated
def test_another_runs_input_cannot_be_read_while_it_runs(srv: EpeServer,
                                                         users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    with srv.http(headers=dict(bob.headers)) as slow:
        running = slow.build_request("POST", f"{API}/table-apply", json={
            "script": SLOW_READER, "input": "SELECT * FROM SECRET"})
        sent = _in_thread(lambda: slow.send(running))
        # Bob's input (or his last one, which his pool keeps to write the next over).
        bobs = wait_for(lambda: _holding(CARD))
        found = value(alice, HUNT)
        assert sent().status_code == 200
    assert all(v == 0 or isinstance(v, str) for v in found.values()), found
    # Of inputs, Alice sees only her own folder (her last input, kept the same way).
    seen = {os.path.dirname(p) for p in found if p.endswith(".arrow")}
    assert not seen & {os.path.dirname(p) for p in bobs}, (found, bobs)


CARD = b"4111-1111-1111-1111"


def _holding(text: bytes) -> list[str]:
    """The input files in the server's shared memory that hold ``text``."""
    found = []
    for path in Path("/dev/shm").glob("epe-exchange-*/*.arrow"):
        try:
            if text in path.read_bytes():
                found.append(str(path))
        except FileNotFoundError:  # removed meanwhile
            continue
    return found


def _in_thread(fn: Any) -> Any:
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future.result


# -- processes ------------------------------------------------------------------------

PROCESSES = '''def f(pids):
    import os
    signalled = {}
    for pid in pids:
        try:
            os.kill(pid, 0)
            signalled[pid] = "allowed"
        except OSError as e:
            signalled[pid] = type(e).__name__
    return {"visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "signalled": signalled}
'''


@isolated
def test_other_processes_can_be_neither_seen_nor_signalled(srv: EpeServer,
                                                           users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    value(bob, "def f():\n    return 1\n")  # bob's pool is warm
    others = [int(p) for p in subprocess.run(["pgrep", "-f", "epe"], capture_output=True,
                                             text=True).stdout.split()]
    assert srv.proc is not None and srv.proc.pid in others
    got = value(alice, PROCESSES, pids=others)
    assert got["visible"] == [1], got  # its own namespace: itself alone
    assert set(got["signalled"].values()) == {"ProcessLookupError"}, got


# -- the network ---------------------------------------------------------------------

NETWORK = '''def f(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        server = "connected"
    except OSError as e:
        server = type(e).__name__
    return {"server": server, "interfaces": [name for _, name in socket.if_nameindex()]}
'''


@isolated
def test_no_network_but_its_own_loopback(srv: EpeServer, users: dict[str, Any]) -> None:
    _, alice = users["alice"]
    port = int(srv.url.rsplit(":", 1)[1])
    got = value(alice, NETWORK, port=port)
    assert got == {"server": "ConnectionRefusedError", "interfaces": ["lo"]}, got


# -- files ---------------------------------------------------------------------------

PLANT = '''def f():
    import os
    planted = {}
    for path in ("/tmp/note", "/dev/shm/note", "/var/tmp/note", "/note"):
        try:
            with open(path, "w") as fh:
                fh.write("from another user")
            planted[path] = "written"
        except OSError as e:
            planted[path] = type(e).__name__
    return planted
'''
READ_NOTES = '''def f():
    import os
    return {p: os.path.exists(p) for p in ("/tmp/note", "/dev/shm/note", "/var/tmp/note",
                                           "/note")}
'''


@isolated
def test_a_file_one_user_writes_another_never_reads(users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    planted = value(alice, PLANT)
    assert planted["/tmp/note"] == planted["/dev/shm/note"] == "written"
    assert planted["/var/tmp/note"] == planted["/note"] == "OSError"  # read-only
    assert value(bob, READ_NOTES) == dict.fromkeys(
        ["/tmp/note", "/dev/shm/note", "/var/tmp/note", "/note"], False)


# -- the server's files, environment and key ---------------------------------------------

SECRETS = '''def f(data_dir, secret, server):
    import os
    def attempt(action):
        try:
            action()
            return "allowed"
        except OSError as e:
            return type(e).__name__
    return {
        "data_dir": os.path.exists(data_dir),
        "key": attempt(lambda: open(os.path.join(data_dir, "token-signing.key")).read()),
        "root_file": attempt(lambda: open(secret).read()),
        "environ": sorted(k for k in os.environ if k.startswith("EPE")),
        "server_environ": attempt(lambda: open("/proc/%d/environ" % server).read()),
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    }
'''


@isolated
def test_the_server_and_its_secrets_are_out_of_reach(srv: EpeServer,
                                                     users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    secret = Path(f"/var/lib/epe-test-secret-{os.getpid()}")
    secret.write_text("root's alone")
    secret.chmod(0o600)
    try:
        assert srv.proc is not None
        where = {"data_dir": str(srv.data_dir.resolve()), "secret": str(secret),
                 "server": srv.proc.pid}
        got_a, got_b = value(alice, SECRETS, **where), value(bob, SECRETS, **where)
    finally:
        secret.unlink()
    for got in (got_a, got_b):
        assert got["data_dir"] is False and got["key"] == "FileNotFoundError", got
        assert got["root_file"] == "PermissionError", got  # a real host uid, not root
        assert got["environ"] == [] and got["server_environ"] == "FileNotFoundError", got
        assert got["uid"] == got["gid"] and got["uid"] >= 1000 and got["groups"] == [], got
    assert got_a["uid"] != got_b["uid"]  # each user a uid of their own


def test_a_workers_state_stays_with_its_user(users: dict[str, Any]) -> None:
    (_, alice), (_, bob) = users["alice"], users["bob"]
    mark = "def f(who):\n    import builtins\n    builtins.owner = who\n    return who\n"
    look = "def f():\n    import builtins\n    return getattr(builtins, 'owner', None)\n"
    for _ in range(4):
        value(alice, mark, who="alice")
    assert {value(bob, look) for _ in range(4)} == {None}
    assert {value(alice, look) for _ in range(4)} == {"alice"}


# -- starting without isolation ---------------------------------------------------------


@isolated
def test_a_server_that_cannot_isolate_says_so_or_refuses() -> None:
    if unreachable([sys.executable, sys.base_prefix]):
        pytest.skip("this venv is where an ordinary user cannot run it (a folder like "
                    "root's home): a server cannot run from it as one")
    data = Path(tempfile.mkdtemp(prefix="epe-nobody-")) / "data"  # where nobody may go
    data.parent.chmod(0o755)
    data.mkdir()
    os.chown(data, 65534, 65534)
    as_nobody = ["runuser", "-u", "nobody", "--", *EPE, "serve", "--data-dir", str(data),
                 "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
    refused = subprocess.run(as_nobody, env={**env, "EPE_REQUIRE_ISOLATION": "true"},
                             capture_output=True, text=True, timeout=120, cwd="/")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "EPE_REQUIRE_ISOLATION" in refused.stderr and "not run as root" in refused.stderr
    refused = subprocess.run(as_nobody, env={**env, "EPE_RESOURCE_LIMITS": "cgroup"},
                             capture_output=True, text=True, timeout=120, cwd="/")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "EPE_RESOURCE_LIMITS=cgroup, but no cgroup can be used here" in refused.stderr
    server = EpeServer(data, wrapper=("sh", "-c", 'cd / && exec runuser -u nobody -- "$@"',
                                      "sh"))
    try:
        server.start()
        # Logged while it started (lines reach the output in their own time).
        wait_for(lambda: "TENANTS ARE NOT ISOLATED" in "".join(server.output))
        # Nor can it have cgroups (none was delegated to it): it says so, and why.
        wait_for(lambda: "resource limits: rlimit: no cgroup can be used here (" in
                 "".join(server.output))
        with server.http() as c:
            health = c.get("/health").json()
        assert (health["tenantIsolation"], health["resourceLimits"]) == (False, "rlimit")
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


@isolated
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux's setpriv is missing")
def test_a_root_server_without_cap_net_admin_cannot_isolate_and_says_why(
        tmp_path: Path) -> None:
    """As in a container given CAP_SYS_ADMIN alone: namespaces can be made, but a worker's
    own loopback cannot be brought up. The start-up probe sees it (it used to pass, and then
    every run failed with a 500)."""
    command = ["setpriv", "--bounding-set=-net_admin", *EPE, "serve",
               "--data-dir", str(tmp_path / "data"), "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
    refused = subprocess.run(command, env={**env, "EPE_REQUIRE_ISOLATION": "true"},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "EPE_REQUIRE_ISOLATION" in refused.stderr, refused.stderr
    assert "CAP_NET_ADMIN" in refused.stderr, refused.stderr


def test_runs_wait_their_turn_and_a_full_queue_is_a_503(make_server: Any) -> None:
    srv = make_server(EPE_MAX_WORKERS="2", EPE_MAX_POOLS="1", EPE_POOL_QUEUE_LIMIT="0")
    (_, first), (_, second) = srv.new_client(), srv.new_client()
    sleeper = "def f():\n    import time\n    time.sleep(3)\n    return 'slept'\n"
    with srv.http(headers=dict(first.headers)) as slow:
        sent = _in_thread(lambda: slow.post(f"{API}/do-eval", json={"script": sleeper}))
        wait_for(lambda: _pool_started(srv))
        busy = second.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"})
        assert_error(busy, 503)
        assert busy.headers["retry-after"]
        assert sent().json() == {"result": "slept"}
    # Once the first user's pool is idle, the second user's run evicts it and runs.
    assert second.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"}
                       ).json() == {"result": 1}


def test_pools_count_the_workers_they_have_and_grow_into_room(make_server: Any) -> None:
    # Each pool may grow to two workers but starts with one: three users' pools are three
    # warm workers, not six, and all three stay warm under a bound of three.
    srv = make_server(EPE_WORKERS="2", EPE_MAX_WORKERS="3")
    users = [srv.new_client() for _ in range(3)]
    one = {"script": "def f():\n    return 1\n"}
    for _name, c in users:
        assert c.post(f"{API}/do-eval", json=one).json() == {"result": 1}
    assert _executor(srv)["pools"] == 3 and _executor(srv)["workers"] == 3
    assert not any("to make room" in line for line in srv.output)
    # The first user's two runs at once: its pool's second worker needs room, made by
    # stopping the least recently used idle pool (the second user's), not the third's.
    (_, c), (second, _), (third, _) = users
    sleeper = {"script": "def f():\n    import time\n    time.sleep(1.5)\n    return 'slept'\n"}
    with srv.http(headers=dict(c.headers)) as other:
        sent = _in_thread(lambda: other.post(f"{API}/do-eval", json=sleeper))
        assert c.post(f"{API}/do-eval", json=sleeper).json() == {"result": "slept"}
        assert sent().json() == {"result": "slept"}
    wait_for(lambda: any(f"evicted the pool of PoolKey(environment=None, user='{second}')"
                         in line for line in srv.output))
    assert not any(f"user='{third}')" in line and "to make room" in line
                   for line in srv.output)
    assert _executor(srv)["pools"] == 2 and _executor(srv)["workers"] == 3


def test_an_evicted_pools_workers_stop_once_no_run_is_in_flight(make_server: Any) -> None:
    # Not while other users' runs go on: a burst of new users, each evicting a pool,
    # would wait behind the killing (docs/benchmarks.md).
    srv = make_server(EPE_MAX_POOLS="2", EPE_MAX_WORKERS="2")
    _, admin = srv.new_client(admin=True)
    (a_name, a), (_, b), (_, c) = (srv.new_client() for _ in range(3))
    one = {"script": "def f():\n    return 1\n"}
    assert a.post(f"{API}/do-eval", json=one).json() == {"result": 1}
    sleeper = {"script": "def f():\n    import time\n    time.sleep(4)\n    return 'slept'\n"}
    slept = _in_thread(lambda: b.post(f"{API}/do-eval", json=sleeper))
    wait_for(lambda: metric(admin, "epe_workers") == 2)  # b's pool started: two are warm
    # c's pool evicts a's (idle), while b's run is in flight: a's worker lives on.
    assert c.post(f"{API}/do-eval", json=one).json() == {"result": 1}
    wait_for(lambda: any(f"evicted the pool of PoolKey(environment=None, user='{a_name}')"
                         in line for line in srv.output))
    assert metric(admin, "epe_workers") == 3
    assert _executor(srv)["pools"] == 2
    assert slept().json() == {"result": "slept"}
    wait_for(lambda: metric(admin, "epe_workers") == 2)  # then it stops: b's and c's left


def _executor(srv: EpeServer) -> dict[str, Any]:
    with srv.http() as anonymous:
        detail: dict[str, Any] = anonymous.get("/health/ready").json()["parts"]["executor"]
    return detail


def _pool_started(srv: EpeServer) -> bool:
    return any("started a pool for" in line for line in srv.output)


def test_an_idle_pool_stops_and_comes_back(make_server: Any) -> None:
    srv = make_server(EPE_WORKER_IDLE_TIMEOUT="1")
    _, c = srv.new_client()
    pid = "def f():\n    import os\n    return os.getppid(), os.getpid()\n"
    assert c.post(f"{API}/do-eval", json={"script": pid}).status_code == 200
    wait_for(lambda: any("stopping the idle pool" in line for line in srv.output), timeout=30)
    assert c.post(f"{API}/do-eval", json={"script": pid}).status_code == 200
    # The log is written a moment after the answer (docs/operations.md#logs).
    wait_for(lambda: sum("started a pool for" in line for line in srv.output) == 2)
