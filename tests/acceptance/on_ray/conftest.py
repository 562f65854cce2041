"""The acceptance tests of this folder are chosen tests of the five operations, async
jobs, datastores in functions and graphics, run a second time on a server whose users'
code runs on a real two-node Ray cluster (``EPE_EXECUTOR=ray``). Each module imports
the tests and fixtures it repeats; the server they get is this one, for the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_apply import CAPS, DEMO_PASSWORD
from tests.raycluster import RayCluster
from tests.serverproc import EpeServer, run_cli


@pytest.fixture(scope="session")
def ray_server(ray_cluster: RayCluster) -> Iterator[EpeServer]:
    """One server on the cluster: two workers per user on each node, the demo's user and
    scripts (the apply tests' OMLUSER). Its data folder is under a parent every user may
    traverse (pytest's tmp is 0700): workers start named environments' Pythons from
    ``<data dir>/envs`` as the worker user."""
    # EPE_RETRY_AFTER: how soon it tries the cluster again after losing it (the fault tests).
    env = {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": ray_cluster.address, "EPE_WORKERS": "2",
           "EPE_RETRY_AFTER": "1",
           **{f"EPE_SERVICE_{level}_PARALLEL": str(cap) for level, cap in CAPS.items()}}
    parent = Path(tempfile.mkdtemp(prefix="epe-on-ray-"))
    os.chmod(parent, 0o711)
    server = EpeServer(parent / "data", env)
    try:
        server.start(timeout=180)
        run_cli("demo", "--data-dir", str(server.data_dir),
                env={**env, "EPE_DEMO_PASSWORD": DEMO_PASSWORD})
        yield server
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def server(ray_server: EpeServer) -> EpeServer:
    return ray_server


@pytest.fixture(scope="module")
def srv(ray_server: EpeServer) -> EpeServer:
    return ray_server
