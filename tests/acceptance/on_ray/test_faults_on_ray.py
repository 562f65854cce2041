"""A Ray node killed while a group-apply job runs on it: the job fails, naming the node
that left, instead of hanging; the next run goes to the node that is left; and the
cluster is whole again (a new node joins, its agent placed) before the next test. The
server's link to the cluster cut (its bridge process killed, as when the cluster goes
away): runs are 503 with Retry-After and health says so until it is back. A cluster that
cannot be reached at start is one line and exit code 1."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.test_datastores import listed
from tests.acceptance.test_jobs import result, status_of, submit
from tests.pgserver import free_port
from tests.raycluster import RayCluster, _children, _cmdline
from tests.serverproc import (
    API,
    EpeServer,
    assert_error,
    put_table,
    run_cli,
    wait_for,
)

GROUPS = 4  # one per worker: two workers per node, two nodes

# Each group says it has started (a datastore of its own, saved through the call
# channel), then works a while: the node is killed with every group under way.
STARTED_THEN_WORK = """def f(df):
    import time
    import oml
    g = str(df['G'].iloc[0])
    oml.ds.save({'g': g}, 'started_' + g, overwrite=True)
    time.sleep(3)
    return len(df)
"""


@pytest.fixture(scope="module")
def c(ray_server: EpeServer) -> Iterator[httpx.Client]:
    _user, client = ray_server.new_client()
    with client:
        rows = "\n".join(f"g{i},{i}" for i in range(GROUPS))
        put_table(client, "GROUPS", "G,X\n" + rows + "\n")
        yield client


def executor_health(server: EpeServer) -> dict[str, Any]:
    with server.http() as h:
        return dict(h.get("/health/ready").json()["parts"]["executor"])


def test_a_node_killed_mid_group_apply_fails_the_job_and_never_hangs_it(
        c: httpx.Client, ray_server: EpeServer, ray_cluster: RayCluster) -> None:
    assert executor_health(ray_server)["nodes"] == 2
    url = submit(c, f"{API}/group-apply", {"input": "select * from GROUPS", "groupBy": "G",
                                           "script": STARTED_THEN_WORK, "parallel": GROUPS})
    started = {f"started_g{i}" for i in range(GROUPS)}
    wait_for(lambda: started <= {name for _owner, name in listed(c)}, timeout=60)
    _head, worker = ray_cluster.raylets()
    ray_cluster.kill_node(worker)
    try:
        failed = assert_error(result(c, url, timeout=90), 400, 1013)
        assert "left the cluster" in failed["errorMessage"]
        assert status_of(c, url) == "FAILED"
        # The node that is left serves the next run, and health says one node.
        r = c.post(f"{API}/group-apply", json={"input": "select * from GROUPS",
                                               "groupBy": "G", "script": "def f(df):\n"
                                               "    return len(df)\n"})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == {f"g{i}": 1 for i in range(GROUPS)}
        wait_for(lambda: executor_health(ray_server)["nodes"] == 1, timeout=30)
    finally:
        ray_cluster.add_node()
        wait_for(lambda: executor_health(ray_server)["nodes"] == 2, timeout=120)


def bridge_of(server: EpeServer) -> int:
    assert server.proc is not None
    [pid] = [p for p in _children().get(server.proc.pid, [])
             if "epe.runner.ray.bridge" in _cmdline(p)]
    return pid


def test_runs_are_503_while_the_cluster_cannot_be_reached_and_served_once_it_can(
        c: httpx.Client, ray_server: EpeServer) -> None:
    os.kill(bridge_of(ray_server), signal.SIGKILL)
    wait_for(lambda: executor_health(ray_server)["state"] == "unavailable", timeout=30)
    assert executor_health(ray_server)["cluster"] == "unreachable"
    r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"})
    assert_error(r, 503, 5003)
    assert int(r.headers["Retry-After"]) >= 1
    # A new bridge reaches the cluster again: runs are served.
    wait_for(lambda: executor_health(ray_server)["state"] == "ok", timeout=120)
    r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"})
    assert r.status_code == 200, r.text


def test_an_unreachable_cluster_is_one_line_at_start(tmp_path: Path) -> None:
    env = {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": f"127.0.0.1:{free_port()}"}
    done = run_cli("serve", "--data-dir", str(tmp_path), "--port", "0", env=env, check=False)
    assert done.returncode == 1
    assert "cannot reach the Ray cluster at '127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
