"""Named environments on Ray: an environment built through the API on the session's Ray
server (from a wheel made here, no network) runs on both nodes, from its own folder at
the same path (one machine's nodes share it as a cluster's would share a volume): each
group of a group-apply spread over the nodes imports the package only that environment
has, in that environment's Python; without ``envName`` the package is not there; an
unknown environment is the same 400 as on the local pool.

Which node ran a group is told by the worker's own view: its sandbox binds the input
folder of its pool on its node (an ``epe-exchange-*`` folder of that node's agent) into
its mount table, and each node's agent has folders of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_envs import (
    IMPORTS_IT,
    create,
    make_wheel,
    run,
    test_an_unknown_environment_is_a_400,  # noqa: F401  (runs here again)
)
from tests.serverproc import API, EpeServer, assert_error, put_table, unique_name

GROUPS = 8  # over four workers: two on each node

# The input folders a worker sees (its pool's on its node), as a function's code.
NODE_FOLDERS = """
def node_folders():
    with open('/proc/self/mountinfo') as table:
        return sorted({line.split()[4] for line in table if '/epe-exchange-' in line})
"""

# Per group: the environment's Python and package, and the node's input folder.
WHERE = NODE_FOLDERS + """
def f(df):
    import sys
    import epe_envtest_pkg
    return {'prefix': sys.prefix, 'value': epe_envtest_pkg.VALUE, 'folders': node_folders(),
            'rows': len(df)}
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder, "epe_envtest_pkg", 42)
    return folder


@pytest.fixture(scope="module")
def user(ray_server: EpeServer) -> Iterator[httpx.Client]:
    _name, client = ray_server.new_client()
    with client:
        rows = "\n".join(f"g{i % GROUPS},{i}" for i in range(4 * GROUPS))
        put_table(client, "GROUPS", "G,X\n" + rows + "\n")
        yield client


@pytest.fixture(scope="module")
def built(ray_server: EpeServer, wheels: Path) -> str:
    """An environment with epe_envtest_pkg, made through the Ray server's API."""
    _admin_name, admin = ray_server.new_client(admin=True)
    with admin:
        name = unique_name("env")
        r = create(admin, name, packages=["epe_envtest_pkg"], findLinks=str(wheels))
        assert r.status_code == 200, r.text
        return name


def test_a_group_apply_in_an_environment_runs_its_python_on_both_nodes(
        ray_server: EpeServer, user: httpx.Client, built: str) -> None:
    r = user.post(f"{API}/group-apply", json={"input": "select * from GROUPS",
                                              "groupBy": "G", "script": WHERE,
                                              "envName": built, "parallel": 4})
    assert r.status_code == 200, r.text
    groups = r.json()["result"]
    assert sorted(groups) == sorted(f"g{i}" for i in range(GROUPS))
    prefix = str((ray_server.data_dir / "envs" / built).absolute())
    assert {g["prefix"] for g in groups.values()} == {prefix}
    assert {g["value"] for g in groups.values()} == {42}
    assert {g["rows"] for g in groups.values()} == {4}
    # Each worker sees one input folder, its pool's on its node; two nodes, two folders.
    assert all(len(g["folders"]) == 1 for g in groups.values()), groups
    assert len({g["folders"][0] for g in groups.values()}) == 2, groups


def test_the_package_is_the_environments_alone(user: httpx.Client, built: str) -> None:
    assert run(user, IMPORTS_IT, built).json() == {"result": 42}
    body = assert_error(run(user, IMPORTS_IT), 400, 1011)
    assert "epe_envtest_pkg" in body["errorMessage"]
