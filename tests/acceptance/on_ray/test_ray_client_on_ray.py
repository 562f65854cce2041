"""Ray Client: a second server reaching the same cluster at ``ray://`` (the head's client
server), as a server outside the cluster would. Its bridge is a Ray Client driver: the
agents are placed on both nodes through it, inputs go into the object store through it
(a run's input of several of Ray Client's transfer chunks), and the call channel
crosses it. do-eval, a group-apply spread over both nodes with an input, datastores
saved and loaded inside functions, and a function's error with its traceback all work.

The same server shows what ``EPE_MAX_WORKERS`` means on Ray: warm workers on each node
(a user's pool has ``EPE_WORKERS`` on every node). With one worker per pool and a cap of
two, two users' pools run at once on two nodes (four workers on the cluster, two on each
node); a third user's run waits until one of them is free."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.acceptance.on_ray.test_envs_on_ray import NODE_FOLDERS
from tests.acceptance.on_ray.test_faults_on_ray import executor_health
from tests.acceptance.test_datastores import listed
from tests.acceptance.test_do_eval import (  # noqa: F401  (fixtures and tests run here again)
    c,
    client,
    test_function_raising_is_400_with_traceback_and_stdout,
)
from tests.acceptance.test_jobs import submit, wait_status
from tests.raycluster import RayCluster
from tests.serverproc import API, EpeServer, unique_name, wait_for

STARTS = 3  # tries at starting the server (see ``server``)
ROWS, GROUPS = 1_000_000, 8  # 16 MB of input: several of Ray Client's 5 MiB chunks

PER_GROUP = NODE_FOLDERS + """
def f(df):
    return {'rows': len(df), 'sum': float(df['X'].sum()), 'folders': node_folders()}
"""

PANDAS = json.dumps({"oml_input_type": "pandas.DataFrame"})

# Says it has started (a datastore, through the call channel), then holds its worker.
HOLD = """def f(tag):
    import time
    import oml
    oml.ds.save({'tag': tag}, 'holding_' + tag, overwrite=True)
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def server(ray_cluster: RayCluster,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """A server whose bridge reaches the cluster through Ray Client; one worker per user
    on each node, two warm workers per node at most."""
    env = {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": ray_cluster.client_address,
           "EPE_WORKERS": "1", "EPE_MAX_WORKERS": "2"}
    started = EpeServer(tmp_path_factory.mktemp("epe-ray-client"), env)
    for attempt in range(1, STARTS + 1):
        try:
            started.start(timeout=180)
            break
        except RuntimeError as e:
            # Ray's client server now and then fails to start the server it starts for
            # each client connection ("Starting Ray client server failed": seen here,
            # mostly with other sessions' clusters on the same machine; the cause is not
            # found), and epe serve stops at start with that line. Start again; the last
            # failure fails the module, with the client server's logs.
            if attempt == STARTS or "Starting Ray client server failed" not in str(e):
                raise RuntimeError(f"{e}\n{client_server_logs(ray_cluster)}") from None
    yield started
    started.stop()


def client_server_logs(cluster: RayCluster) -> str:
    """The ends of the head's Ray Client logs: why a client's server did not start."""
    return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}"
                     for log in sorted({found.resolve() for found in
                                        cluster.root.glob("**/logs/ray_client_server*")}))


@pytest.fixture(scope="module")
def user(server: EpeServer) -> Iterator[httpx.Client]:
    _name, http = server.new_client()
    with http:
        yield http


def do_eval(user: httpx.Client, source: str, **params: Any) -> Any:
    r = user.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_the_cluster_is_reached_through_ray_client(server: EpeServer,
                                                   user: httpx.Client) -> None:
    health = executor_health(server)
    assert (health["state"], health["cluster"], health["nodes"]) == ("ok", "connected", 2)
    assert do_eval(user, "def f(x):\n    return x * 2\n", x=21) == 42


def test_a_group_apply_of_a_large_input_spreads_over_both_nodes(user: httpx.Client) -> None:
    query = f"SELECT range % {GROUPS} AS G, range::DOUBLE AS X FROM range({ROWS})"
    r = user.post(f"{API}/group-apply", json={"input": query, "groupBy": "G",
                                              "script": PER_GROUP, "parallel": 2,
                                              "parameters": PANDAS})
    assert r.status_code == 200, r.text
    groups = r.json()["result"]
    assert sorted(groups) == [str(g) for g in range(GROUPS)]
    for g, got in groups.items():
        assert got["rows"] == ROWS // GROUPS
        assert got["sum"] == sum(range(int(g), ROWS, GROUPS))
        assert len(got["folders"]) == 1, got
    assert len({got["folders"][0] for got in groups.values()}) == 2, groups


def test_datastores_are_saved_and_loaded_inside_functions(user: httpx.Client) -> None:
    name = unique_name("ds_client_")
    saved = do_eval(user, "def f(ds):\n    import oml\n"
                          "    oml.ds.save({'model': {'w': [1.5, 2.5]}, 'n': 3}, ds)\n"
                          "    return True\n", ds=name)
    assert saved is True
    assert any(ds == name for _owner, ds in listed(user))
    loaded = do_eval(user, "def f(ds):\n    import oml\n"
                           "    return oml.ds.load(ds, to_globals=False)\n", ds=name)
    assert loaded == {"model": {"w": [1.5, 2.5]}, "n": 3}


def test_max_workers_bounds_the_workers_on_each_node(server: EpeServer) -> None:
    users = [server.new_client()[1] for _ in range(3)]
    first, second, third = users
    try:
        holding = ((first, "first"), (second, "second"))
        jobs = [submit(u, f"{API}/do-eval", {"script": HOLD,
                                             "parameters": json.dumps({"tag": tag})})
                for u, tag in holding]
        for u, tag in holding:
            wait_for(lambda u=u, tag=tag: any(ds == f"holding_{tag}"
                                              for _owner, ds in listed(u)), timeout=120)
        # Two pools of one worker on each of two nodes: four workers, two per node (what
        # health counts, and the cap bounds).
        health = executor_health(server)
        assert (health["pools"], health["workers"], health["nodes"]) == (2, 2, 2)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(do_eval, third, "def f():\n    return 'served'\n")
            wait_for(lambda: executor_health(server)["waiting"] == 1, timeout=60)
            assert not waiting.done()
            assert first.delete(jobs[0]).status_code == 200
            assert waiting.result(timeout=120) == "served"
        wait_status(second, jobs[1], "RUNNING")
        assert second.delete(jobs[1]).status_code == 200
    finally:
        for u in users:
            u.close()
