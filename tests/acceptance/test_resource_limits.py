"""Each user's workers are held to their share (docs/operations.md#resource-limits).

Against real servers: ``/health`` and the log say how workers are limited here; a
function touching more memory than its user's limit (an admin's, for that user) is
killed with a 400 naming the limit, its size and the setting, while another user's run
finishes; each worker lives in its user's group beneath the server's own cgroup. As an
ordinary user, the server gets cgroups where a subtree was delegated to it (made here
as root, as an administrator would) and says why not where none was
(``test_tenants``'s server as ``nobody``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from epe.runner.identity import unreachable
from epe.runner.limits import Unavailable, cgroup1, cgroup2, choose
from epe.runner.limits.hierarchy import mounts, own_dir, own_paths
from epe.settings import Settings
from tests.serverproc import API, EPE, TOKEN_URL, USERS, EpeServer, assert_error

MB = 1024**2
HOLD = ("def f(mb, seconds):\n    import time\n    block = bytearray(mb * 2**20)\n"
        "    time.sleep(seconds)\n    return len(block) // 2**20\n")
# The worker's memory cgroup: version 1's memory line, else version 2's only line.
WHERE = ("def f():\n    lines = open('/proc/self/cgroup').read().split()\n"
         "    return [l for l in lines if ':memory:' in l] or [l for l in lines if "
         "l.startswith('0::')]\n")


@functools.cache
def here() -> str:
    """How a server started like this test process limits its workers (found once: the
    limits made to find it sweep the groups that hold nothing, a live server's too)."""
    limits = choose(Settings(data_dir=Path(tempfile.gettempdir())))
    limits.close()
    return limits.kind


def user_groups(user: str) -> list[Path]:
    """Where a server started by this test process makes ``user``'s groups."""
    paths, found = own_paths(), mounts()
    if here() == "cgroup1":
        return [own_dir(next(m for m in found if m.fstype == "cgroup" and c in m.options),
                        paths[c]) / cgroup1.TOP / user for c in cgroup1.CONTROLLERS]
    own = own_dir(next(m for m in found if m.fstype == "cgroup2"), paths[""])
    # The server moves the processes of its group into a leaf of it (cgroup2's docstring).
    return [(own.parent if own.name == cgroup2.SERVER else own) / cgroup2.TOP / user]


def made_soon(groups: list[Path]) -> bool:
    """Whether all of ``groups`` exist within a while: a sign-in makes them just after
    its answer is sent."""
    deadline = time.monotonic() + 30
    while not all(g.exists() for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(g.exists() for g in groups)


def value(c: httpx.Client, source: str, **params: Any) -> Any:
    r = c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_health_and_the_log_say_how_workers_are_limited(server: EpeServer) -> None:
    kind = here()
    with server.http() as c:
        assert c.get("/health").json()["resourceLimits"] == kind
    if server.env.get("EPE_EXECUTOR") != "ray":  # on Ray, the nodes' agents log it
        assert any(f"resource limits: {kind}" in line for line in server.output)
    if kind != "rlimit":  # and each worker is in its user's group, in epe's
        user, c = server.new_client()
        with c:
            groups = value(c, WHERE)
        assert groups and all(f"/epe/{user}/w" in g for g in groups), groups


def test_a_users_groups_are_made_when_they_sign_in(server: EpeServer) -> None:
    """Not on their first run's path: making them is most of what cgroups add to a new
    user's first call (docs/benchmarks.md)."""
    if here() == "rlimit":
        pytest.skip("no cgroup here")
    if server.env.get("EPE_EXECUTOR") == "ray":
        pytest.skip("on Ray, each node's agent makes them when the user's pool starts there")
    user, password = server.add_user()
    groups = user_groups(user)
    assert not any(g.exists() for g in groups), groups
    with server.client(user, password) as c:  # a password grant: the user signs in
        assert made_soon(groups), groups
        # Their first run's worker is in them.
        assert all(f"/{cgroup1.TOP}/{user}/w" in g for g in value(c, WHERE))


def test_a_users_groups_are_made_again_when_they_refresh_their_token_after_a_restart(
        make_server: Callable[..., EpeServer]) -> None:
    """A server's start removes the groups that hold nothing: a user signed in before
    it finds theirs made again by the refresh, not by their next run."""
    if here() == "rlimit":
        pytest.skip("no cgroup here")
    srv = make_server()
    user, password = srv.add_user()
    groups = user_groups(user)
    token = srv.token(user, password)
    assert made_soon(groups), groups
    srv.stop()
    srv.start()
    assert not any(g.exists() for g in groups), groups  # swept: nothing ran in them
    with srv.http() as c:
        r = c.post(TOKEN_URL, json={"grant_type": "refresh_token", "token": token})
        assert r.status_code == 200, r.text
        assert made_soon(groups), groups
    refreshed = {"Authorization": f"Bearer {r.json()['accessToken']}"}
    with srv.http(headers=refreshed) as c:  # and their next run's worker is in them
        assert all(f"/{cgroup1.TOP}/{user}/w" in g for g in value(c, WHERE))


def test_a_worker_past_its_users_memory_is_killed_and_another_users_run_finishes(
        server: EpeServer, admin: httpx.Client) -> None:
    if here() == "rlimit":
        pytest.skip("no cgroup here: each worker's address space is its only limit")
    (name, greedy), (_, other) = server.new_client(), server.new_client()
    r = admin.patch(f"{USERS}/{name}", json={"limits": {"memory": 256 * MB}})
    assert r.status_code == 200, r.text
    with greedy, other, concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(value, other, HOLD, mb=100, seconds=3)
        r = greedy.post(f"{API}/do-eval", json={"script": HOLD, "parameters": json.dumps(
            {"mb": 600, "seconds": 0})})
        body = assert_error(r, 400, 1013)
        assert "256 MiB" in body["errorMessage"] and "EPE_USER_MEMORY_LIMIT" in \
            body["errorMessage"], body
        assert running.result(timeout=120) == 100  # another user's run: untouched
        # Its pool has a worker again, and what fits runs.
        assert value(greedy, HOLD, mb=50, seconds=0) == 50


# -- as an ordinary user ---------------------------------------------------------------


@pytest.fixture
def delegated() -> Iterator[list[Path]]:
    """A group of this process's in each version 1 hierarchy, given to ``nobody``, as an
    administrator delegates a subtree: the folder and its files."""
    if os.geteuid() != 0:
        pytest.skip("delegating a cgroup takes root")
    try:
        cgroup1.prepare().close()
    except Unavailable as e:
        pytest.skip(f"no cgroup version 1 here: {e}")
    paths, found, groups = own_paths(), mounts(), []
    for controller in cgroup1.CONTROLLERS:
        mount = next(m for m in found if m.fstype == "cgroup" and controller in m.options)
        group = own_dir(mount, paths[controller]) / f"delegated{os.getpid()}"
        if group not in groups:
            group.mkdir()
            groups.append(group)
            for path in [group, *group.iterdir()]:
                os.chown(path, 65534, 65534)
    yield groups
    for group in groups:
        group.rmdir()


def test_an_ordinary_user_given_a_cgroup_limits_its_users_there(delegated: list[Path]) -> None:
    if unreachable([sys.executable, sys.base_prefix]):
        pytest.skip("this venv is where an ordinary user cannot run it")
    parent = Path(tempfile.mkdtemp(prefix="epe-delegated-"))
    parent.chmod(0o755)
    data = parent / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPE_")}
    as_nobody = ["runuser", "-u", "nobody", "--"]
    subprocess.run([*as_nobody, *EPE, "user", "add", "DELEGATED", "--data-dir", str(data),
                    "--password-stdin"], input="pw-Secret1\n", text=True, check=True,
                   env=env, cwd="/", capture_output=True, timeout=120)
    # The server starts in the delegated groups, as a service manager would start it.
    joins = " ".join(f"'{g / 'cgroup.procs'}'" for g in delegated)
    wrapper = ("sh", "-c", f'for f in {joins}; do echo $$ > "$f"; done; '
                           f'cd / && exec {" ".join(as_nobody)} "$@"', "sh")
    server = EpeServer(data, wrapper=wrapper)
    try:
        server.start()
        with server.http() as c:
            assert c.get("/health").json()["resourceLimits"] == "cgroup1"
        with server.client("DELEGATED", "pw-Secret1") as c:
            groups = value(c, WHERE)
        assert any(f"/delegated{os.getpid()}/epe/DELEGATED/w" in g for g in groups), groups
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)
    for group in delegated:  # what it made in them, it removed
        assert not (group / "epe").exists(), group
