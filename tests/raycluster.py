"""A real Ray cluster of two nodes on this machine for the tests (and the benchmark):
``ray start --head`` on free ports, then ``ray start --address`` for a second node,
each with one CPU, both under a temporary folder of this session's own.

``ray start`` daemonizes, so the cluster's processes are found by that folder in
their command lines; a node is its raylet and everything under it (Ray's workers,
epe's agent, its fork server and sandboxed workers). Stopping kills exactly those,
never another session's Ray (``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.pgserver import alive, free_port

RAY = str(Path(sys.executable).parent / "ray")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _kill_trees(roots: list[int]) -> None:
    """SIGKILL ``roots`` and every process under them."""
    tree, doomed, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(tree.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class RayCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="epe-ray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{free_port()}"  # the head's Ray Client server

    def _ray_start(self, *args: str) -> None:
        ports = {"--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--metrics-export-port": free_port(),
                 "--runtime-env-agent-port": free_port()}
        command = [RAY, "start", "--num-cpus=1", "--disable-usage-stats",
                   "--node-ip-address=127.0.0.1",
                   *(f"{k}={v}" for k, v in ports.items()), *args]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed: {done.stdout}\n{done.stderr}")

    def start(self, nodes: int = 2) -> RayCluster:
        (self.root / "owner").write_text(str(os.getpid()))
        self._ray_start("--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--ray-client-server-port={self.client_address.rsplit(':', 1)[1]}",
                        f"--temp-dir={self.root / 't'}")
        for _ in range(nodes - 1):
            self.add_node()
        return self

    def add_node(self) -> None:
        before = set(self.raylets())
        self._ray_start(f"--address={self.address}", f"--temp-dir={self.root / 't'}")
        deadline = time.monotonic() + 60
        while not set(self.raylets()) - before and time.monotonic() < deadline:
            time.sleep(0.2)

    def pids(self) -> list[int]:
        marker = str(self.root)
        return [int(p) for p in os.listdir("/proc")
                if p.isdigit() and int(p) != os.getpid() and marker in _cmdline(int(p))]

    def raylets(self) -> list[int]:
        """The nodes' raylets, the head's first."""
        found = [p for p in self.pids() if "/raylet/raylet " in _cmdline(p)]
        return sorted(found)

    def kill_node(self, raylet: int) -> None:
        """A node dies at once: its raylet and all under it, by SIGKILL."""
        _kill_trees([raylet])

    def stop(self) -> None:
        _kill_trees(self.pids())
        deadline = time.monotonic() + 10
        while any(alive(p) for p in self.pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def stop_orphans() -> None:
    """Stop the clusters of sessions that ended without stopping theirs."""
    for owner in Path(tempfile.gettempdir()).glob("epe-ray-*/owner"):
        with contextlib.suppress(OSError, ValueError):
            if not alive(int(owner.read_text())):
                cluster = RayCluster.__new__(RayCluster)
                cluster.root = owner.parent
                cluster.stop()
