"""How a run's input reaches the nodes (docs/scale-out.md, "What travels where"): on
the server's own node the workers map the server's file itself, hard-linked into the
user's input folder; where that file cannot be linked, the input goes through Ray's
object store, and the run is the same.

A function sees which it got: the Arrow file its worker mapped is in
``/proc/self/maps``, and its link count is 2 when it is the server's file linked (the
server's name and the user's folder's), 1 when the node wrote it from the object store.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.raycluster import RayCluster
from tests.serverproc import API, EpeServer, put_table, wait_for

ROWS = 1000

LINKS = """def f(df):
    import os
    mapped = {line.split()[-1] for line in open('/proc/self/maps')
              if line.rstrip().endswith('.arrow')}
    return {'rows': len(df), 'total': int(df['X'].sum()),
            'links': sorted(os.stat(p).st_nlink for p in mapped)}
"""


def table_apply(c: httpx.Client) -> dict[str, object]:
    r = c.post(f"{API}/table-apply", json={
        "script": LINKS, "input": "SELECT * FROM NUMBERS",
        "parameters": json.dumps({"oml_input_type": "pandas.DataFrame"})})
    assert r.status_code == 200, r.text
    return dict(r.json()["result"])


def numbers(c: httpx.Client) -> None:
    put_table(c, "NUMBERS", "X\n" + "\n".join(str(i) for i in range(ROWS)) + "\n")


EXPECTED = {"rows": ROWS, "total": ROWS * (ROWS - 1) // 2}


def test_on_the_servers_node_workers_map_the_servers_own_file(
        ray_server: EpeServer) -> None:
    _user, c = ray_server.new_client()
    with c:
        numbers(c)
        # The cluster is idle between tests: a whole-input run goes to the server's node.
        got = table_apply(c)
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["links"] == [2], got


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a /dev/shm of the server's own needs a mount namespace: root and unshare")


@pytest.fixture(scope="module")
def walled(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EpeServer]:
    """A server on the cluster whose ``/dev/shm`` is its own (a mount namespace with a
    tmpfs there): as in a container beside a node, its files are not the node's."""
    env = {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": ray_cluster.address,
           "EPE_WORKERS": "1"}
    private_shm = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh")
    server = EpeServer(tmp_path_factory.mktemp("epe-walled"), env, wrapper=private_shm)
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


@needs_root
def test_an_input_file_the_node_cannot_link_goes_through_the_object_store(
        walled: EpeServer) -> None:
    _user, c = walled.new_client()
    with c:
        numbers(c)
        first, second = table_apply(c), table_apply(c)
    for got in (first, second):
        assert {k: got[k] for k in EXPECTED} == EXPECTED
        assert got["links"] == [1], got  # written on the node from the object store
    wait_for(lambda: any("cannot link the server's input files" in line
                         for line in walled.output))
    # Found out once: the second run went straight to the store.
    assert sum("cannot link" in line for line in walled.output) == 1
