"""The servers a test needs listen on 127.0.0.1 only, Ray's included: every listening TCP
socket of the tests' Ray cluster (GCS, raylets, agents, the Ray client server, workers)
and of the server whose bridge is one of its drivers is bound to loopback
(tests/raycluster.py says how Ray is told). And what reaches a Ray node holds no
password or key of the server's: read from the memory of every process of the node."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

from tests.pgserver import PostgresServer, alive
from tests.raycluster import (
    DRIVER_ENV,
    RayCluster,
    _cmdline,
    descendants,
    held_in,
    is_loopback,
    listeners,
)
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


def test_a_ray_of_its_own_listens_on_loopback_only_holds_no_secret_and_ends_with_the_server(
        tmp_path: Path, postgres: PostgresServer) -> None:
    # EPE_RAY_ADDRESS=local: the bridge starts a one-machine Ray, so all of it is under
    # the server's process. The server's metadata URL carries a password: no process of
    # the node (Ray's own, the agent and the workers under it; the bridge too) may hold
    # it, nor the token signing key kept in that database (docs/security.md, Ray nodes).
    password = f"pw-{secrets.token_hex(12)}"
    url = postgres.new_database(migrated=True).replace("postgres@", f"postgres:{password}@")
    server = EpeServer(tmp_path / "data", {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": "local",
                                           "EPE_METADATA_URL": url, **DRIVER_ENV})
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
        assert_no_secret(pids[1:], password, signing_key(url), str(server.data_dir.absolute()))
    finally:
        server.stop()
    wait_for(lambda: not any(alive(pid) for pid in pids))


def signing_key(url: str) -> bytes:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM server_secrets WHERE name = %s",
                           ("token-signing-key",)).fetchone()
    assert row is not None
    return bytes(row[0])


def assert_no_secret(pids: list[int], password: str, key: bytes, data_dir: str) -> None:
    """None of ``pids`` holds the password or the key; the agent holds what it was sent
    (the data folder's path), so its memory was read, not missed."""
    needles = [password.encode(), key, data_dir.encode()]
    held = {pid: held_in(pid, needles) for pid in pids}
    leaks = {_cmdline(pid)[:80]: sorted(n[:12] for n in found - {needles[2]})
             for pid, found in held.items() if found and found - {needles[2]}}
    assert leaks == {}
    agents = [pid for pid in pids if "NodeAgent" in _cmdline(pid)]
    assert agents, [_cmdline(pid)[:80] for pid in pids]
    assert all(held[pid] == {needles[2]} for pid in agents), {p: held[p] for p in agents}
    assert any("gcs_server" in _cmdline(pid) and held[pid] is not None for pid in pids)
