"""A real Ray cluster of two nodes on this machine for the tests (and the benchmark):
``ray start --head`` on free ports, then a second node joining it (tests/raynode.py),
each with one CPU, both under a temporary folder of this session's own.

**Loopback only.** Ray binds its servers (GCS, raylets and object managers, dashboard
and runtime-env agents, metrics exporters, the Ray client server, every worker's and
driver's gRPC server) to ``127.0.0.1`` when, and only when, the node's IP address is
``127.0.0.1``; for any other node IP most of them listen on every interface. Given
``--node-ip-address=127.0.0.1``, ``ray start`` still swaps in the machine's outward
address, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (what Ray does by default on
macOS and Windows: loopback as the node IP). So ``ENV`` sets it, for the cluster's
processes and for every driver joining it (a driver with it unset turns
``127.0.0.1:PORT`` into the outward address, where nothing listens). ``ray start``
refuses to add a node under that variable, so the second node is started the way Ray's
own multi-node test cluster starts its nodes (tests/raynode.py).
tests/acceptance/on_ray/test_loopback_on_ray.py checks every listening socket.

``ray start`` daemonizes, so the cluster's processes are found by that folder (or, for
the Ray client server, the cluster's address) in their command lines, and everything
under them; a node is its raylet and everything under it (Ray's workers, epe's agent,
its fork server and sandboxed workers). Stopping kills exactly those, never another
session's Ray (``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
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
NODE = str(Path(__file__).with_name("raynode.py"))

# What the drivers that join the cluster (the servers' bridges, the executor suite's)
# need of the tests: no Ray token authentication, whatever a ~/.ray/auth_token left by
# another Ray says (Ray turns it on when that file exists). Loopback as the node IP is
# the bridge's own to ask for (runner/ray/bridge.py), on an address of 127.0.0.1.
DRIVER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
# The environment of the cluster's own processes: the same, and loopback as the node IP
# (above).
ENV = {**DRIVER_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


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


def descendants(roots: list[int]) -> list[int]:
    """``roots`` and every process under them."""
    tree, found, todo = _children(), [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _kill_trees(roots: list[int]) -> None:
    """SIGKILL ``roots`` and every process under them."""
    for pid in descendants(roots):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _listening() -> dict[int, tuple[str, int]]:
    """Every listening TCP socket of this network namespace: inode -> (address, port)."""
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            raw, port = fields[1].split(":")
            # The kernel prints the address as 32-bit words in host (little-endian) order.
            packed = b"".join(bytes.fromhex(raw[i:i + 8])[::-1] for i in range(0, len(raw), 8))
            found[int(fields[9])] = (str(ipaddress.ip_address(packed)), int(port, 16))
    return found


def listeners(pids: list[int]) -> list[tuple[int, str, int]]:
    """The listening TCP sockets the processes ``pids`` hold: (pid, address, port)."""
    sockets = _listening()
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and int(link[8:-1]) in sockets:
                        found.append((pid, *sockets[int(link[8:-1])]))
    return found


LARGEST_REGION = 256 * 1024**2  # bigger private mappings are reservations, never filled


def held_in(pid: int, needles: list[bytes]) -> set[bytes] | None:
    """Which of ``needles`` the process holds: in its environment, its command line or
    its writable memory (heap, stacks, anonymous mappings: where everything it was sent
    or decoded lives); ``None`` if it cannot be read (gone, or not ours to read)."""
    found: set[bytes] = set()

    def look(blob: bytes) -> None:
        found.update(n for n in needles if n in blob)

    try:
        look(Path(f"/proc/{pid}/environ").read_bytes())
        look(Path(f"/proc/{pid}/cmdline").read_bytes())
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                name = fields[5] if len(fields) > 5 else ""
                if "rw" not in fields[1] or end - start > LARGEST_REGION or \
                        (name and name not in ("[heap]", "[stack]")):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    mem.seek(start)
                    look(mem.read(end - start))
    except (OSError, ValueError):
        return None
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, written either way (IPv4 on a dual-stack socket is ::ffff:…)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class RayCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="epe-ray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()  # the head's Ray Client server
        self.client_address = f"ray://127.0.0.1:{self.client_port}"

    def _ports(self) -> dict[str, int]:
        """A node's own ports (Ray's defaults would collide between two nodes here)."""
        return {"dashboard_agent_listen_port": free_port(), "metrics_agent_port": free_port(),
                "metrics_export_port": free_port(), "runtime_env_agent_port": free_port()}

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                              env={**os.environ, **ENV})
        if done.returncode != 0:
            raise RuntimeError(f"{command[1]} failed: {done.stdout}\n{done.stderr}")

    def start(self, nodes: int = 2) -> RayCluster:
        (self.root / "owner").write_text(str(os.getpid()))
        (self.root / "address").write_text(self.address)
        flags = {"dashboard_agent_grpc_port" if k == "metrics_agent_port" else k: v
                 for k, v in self._ports().items()}
        self._run([RAY, "start", "--head", "--num-cpus=1", "--disable-usage-stats",
                   "--node-ip-address=127.0.0.1", f"--port={self.port}",
                   "--include-dashboard=false", f"--ray-client-server-port={self.client_port}",
                   f"--temp-dir={self.root / 't'}",
                   *(f"--{k.replace('_', '-')}={v}" for k, v in flags.items())])
        for _ in range(nodes - 1):
            self.add_node()
        return self

    def add_node(self) -> None:
        before = set(self.raylets())
        params = {"gcs_address": self.address, "node_ip_address": "127.0.0.1", "num_cpus": 1,
                  "temp_dir": str(self.root / "t"), **self._ports()}
        self._run([sys.executable, NODE, json.dumps(params)])
        deadline = time.monotonic() + 60
        while not set(self.raylets()) - before and time.monotonic() < deadline:
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """Every process of the cluster: Ray's daemons (their command lines name its
        folder), the Ray client server (it names the cluster's address), and all under
        them (agents, workers)."""
        markers = [str(self.root)] + ([f"--address={self.address} "] if self.address else [])
        roots = [int(p) for p in os.listdir("/proc")
                 if p.isdigit() and int(p) != os.getpid()
                 and any(m in _cmdline(int(p)) for m in markers)]
        return sorted(set(descendants(roots)))

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
                address = owner.parent / "address"  # none from before it was written
                cluster.address = address.read_text() if address.exists() else ""
                cluster.stop()
