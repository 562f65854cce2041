"""The servers a test needs listen on 127.0.0.1 only, Ray's included: every listening TCP
socket of the tests' Ray cluster (GCS, raylets, agents, the Ray client server, workers)
and of the server whose bridge is one of its drivers is bound to loopback
(tests/raycluster.py says how Ray is told)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.pgserver import alive
from tests.raycluster import DRIVER_ENV, RayCluster, _cmdline, descendants, is_loopback, listeners
from tests.serverproc import API, EpeServer, wait_for


def test_every_listening_socket_of_the_cluster_and_the_server_is_on_loopback(
        ray_server: EpeServer, ray_cluster: RayCluster) -> None:
    _user, client = ray_server.new_client()
    with client:  # a run: the user's pool and its workers on the nodes
        r = client.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"})
        assert r.status_code == 200, r.text
    assert ray_server.proc is not None
    pids = set(descendants([*ray_cluster.pids(), ray_server.proc.pid]))
    found = listeners(sorted(pids))
    wide = [(address, port, _cmdline(pid)[:120]) for pid, address, port in found
            if not is_loopback(address)]
    assert wide == []
    # What was looked at holds the GCS, the server's HTTP port and, on each of the two
    # nodes, the raylet's servers and those of the processes under it (agents, workers).
    assert {ray_cluster.port, urlsplit(ray_server.url).port} <= {p for _, _, p in found}
    raylets = ray_cluster.raylets()
    assert len(raylets) == 2
    for raylet in raylets:
        under = set(descendants([raylet])) - {raylet}
        assert {pid for pid, _, _ in found} & under, f"no listener under the raylet {raylet}"


def test_a_ray_of_its_own_listens_on_loopback_only_and_ends_with_the_server(
        tmp_path: Path) -> None:
    # EPE_RAY_ADDRESS=local: the bridge starts a one-machine Ray, so all of it is under
    # the server's process.
    server = EpeServer(tmp_path / "data", {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": "local",
                                           **DRIVER_ENV})
    # What keeps Ray on loopback is the server's to ask for, not the environment's.
    server.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    server.start(timeout=180)
    try:
        _user, client = server.new_client()
        with client:
            r = client.post(f"{API}/do-eval", json={"script": "def f():\n    return 1\n"})
            assert r.status_code == 200, r.text
        assert server.proc is not None
        pids = descendants([server.proc.pid])
        found = listeners(pids)
        assert [(address, port, _cmdline(pid)[:120]) for pid, address, port in found
                if not is_loopback(address)] == []
        assert any("raylet" in _cmdline(pid) for pid, _, _ in found)  # Ray's were looked at
    finally:
        server.stop()
    wait_for(lambda: not any(alive(pid) for pid in pids))
