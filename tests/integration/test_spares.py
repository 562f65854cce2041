"""Spares: children a real fork server forks ahead of need (``runner.worker.zygote``).

A spare is handed the next spawn request of its kind and becomes that worker; one that
dies before anyone asked for it is replaced and never reported as a worker's exit; all
of them die with their fork server. As root, a worker made from a spare is sandboxed
exactly like one forked when asked for (compared side by side)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from epe.runner import protocol
from epe.runner.identity import unreachable
from epe.runner.local.forkserver import ForkServer, WorkerProcess, environment
from epe.runner.local.host import _reach
from epe.runner.worker.main import WARM_UP_TASK

AS_ROOT = os.geteuid() == 0
WORKER = {"output_limit": 1 << 20, "graphics_dpi": 100, "graphics_size": [6.4, 4.8]}
LIMITS = {"memory": None, "processes": None, "open_files": 1024, **WORKER}
# What a worker reports of itself: who it runs as, where, and what it holds open.
PROBE = '''def f():
    import os, socket
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "pid": os.getpid(), "host": socket.gethostname(),
            "policy": os.sched_getscheduler(0), "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "name": open("/proc/self/comm").read().strip(),
            "sockets": sorted(t for t in fds.values() if t.startswith("socket:")),
            "fds": len(fds), "tmp": sorted(os.listdir("/tmp")), "cwd": os.getcwd(),
            # Each mount's root, place and options, and its file system's (not its ids).
            "mounts": sorted(" ".join(line.split()[3:6] + line.split(" - ")[1].split())
                             for line in open("/proc/self/mountinfo"))}
'''


def synchronously(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """An async test as pytest runs it here (no asyncio plugin): in a loop of its own, in
    a thread of its own (another test of the session may have left a loop running here)."""
    @functools.wraps(test)
    def run_it() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, test()).result()
    return run_it


@asynccontextmanager
async def fork_server(spares: int, isolate: bool = False) -> AsyncIterator[ForkServer]:
    mpl = tempfile.mkdtemp(prefix="epe-test-mpl-")
    server = ForkServer(sys.executable, environment(mpl),
                        {"isolate": isolate, "spares": spares, "worker": WORKER}, 60)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


def children(server: ForkServer) -> set[int]:
    assert server._proc is not None
    pid = server._proc.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def request(sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"limits": LIMITS, "sandbox": sandbox, "cgroups": [], "run_as": None,
            "workdir": None if sandbox else tempfile.mkdtemp(prefix="epe-test-worker-")}


def has_spares(server: ForkServer, count: int) -> bool:
    return server.spares == count


async def run(worker: WorkerProcess, source: str) -> Any:
    ready, _ = await protocol.read_async(worker.stdout)
    assert ready.get("ready"), ready
    worker.stdin.write(protocol.encode({**WARM_UP_TASK, "script_key": "probe", "source": source}))
    await worker.stdin.drain()
    reply, payload = await protocol.read_async(worker.stdout)
    assert reply["ok"], reply
    return json.loads(payload)


@synchronously
async def test_a_spare_becomes_the_worker_asked_for_and_another_takes_its_place() -> None:
    async with fork_server(spares=2) as server:
        await until(lambda: server.spares == 2, "two spares")
        waiting = children(server)
        assert len(waiting) == 2
        worker = await server.spawn(request())
        assert worker.spare and worker.pid in waiting
        got = await run(worker, PROBE)
        assert got["pid"] == worker.pid and got["sockets"] == []  # none of the fork server's
        assert got["policy"] == os.SCHED_OTHER and got["name"] != "epe-spare"
        await until(lambda: server.spares == 2, "the spare replaced")
        assert len(children(server) - waiting) == 1
        worker.stdin.close()
        assert await asyncio.wait_for(worker.wait(), 30) == 0  # its end is reported


@synchronously
async def test_a_spare_that_dies_unasked_is_replaced_and_not_reported() -> None:
    async with fork_server(spares=2) as server:
        await until(lambda: server.spares == 2, "two spares")
        killed = children(server)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        await until(lambda: server.spares == 2 and not children(server) & killed,
                    "the dead spares replaced")
        # Spares that were nobody's worker are not reported as a worker's end.
        assert server._early_ends == {}
        worker = await server.spawn(request())
        assert worker.spare and worker.pid not in killed
        assert (await run(worker, "def f():\n    return 7\n")) == 7


@synchronously
async def test_no_spares_when_none_are_asked_for() -> None:
    async with fork_server(spares=0) as server:
        await asyncio.sleep(1.0)  # past the quiet time after which spares are made
        assert children(server) == set()
        worker = await server.spawn(request())
        assert not worker.spare
        assert (await run(worker, "def f():\n    return 7\n")) == 7


@synchronously
async def test_spares_die_with_their_fork_server() -> None:
    async with fork_server(spares=2) as server:
        await until(lambda: server.spares == 2, "two spares")
        spares = children(server)
    for pid in spares:
        await until(functools.partial(ended, pid), f"spare {pid} ended")


def ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not AS_ROOT, reason="sandboxes need root")
@synchronously
async def test_a_worker_from_a_spare_is_sandboxed_like_one_forked_when_asked() -> None:
    exchange = tempfile.mkdtemp(prefix="epe-test-exchange-")
    os.chmod(exchange, 0o755)
    sandbox = {"uid": 60123, "gid": 60123, "data_dir": tempfile.mkdtemp(prefix="epe-test-data-"),
               "exchange": exchange, "reach": _reach(sys.executable), "network": False,
               "tmp_size": 1 << 24}
    seen = {}
    for spares in (1, 0):
        async with fork_server(spares=spares, isolate=True) as server:
            assert server.isolation_refused is None
            await until(functools.partial(has_spares, server, spares), "the spare")
            worker = await server.spawn(request(sandbox))
            assert worker.spare == bool(spares)
            seen[spares] = await run(worker, PROBE)
    assert seen[1] == seen[0], seen
    assert seen[1]["uid"] == 60123 and seen[1]["groups"] == [] and seen[1]["pid"] == 1
    assert seen[1]["host"] == "epe-worker" and seen[1]["sockets"] == []


@pytest.mark.skipif(not AS_ROOT, reason="runs the tests above as nobody, which needs root")
def test_spares_work_in_a_fork_server_that_is_not_root() -> None:
    """Not root, a spare cannot sandbox: it is a plain fork that becomes a worker as the
    server's user (the tests above, as nobody)."""
    repo = Path(__file__).resolve().parents[2]
    if unreachable([sys.executable, sys.base_prefix, str(repo)]):
        pytest.skip("nobody cannot reach this venv or checkout")
    done = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-m", "pytest", "-p",
         "no:cacheprovider", "-q", str(Path(__file__).resolve()), "-k",
         "not sandboxed and not not_root"],
        cwd=repo, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("EPE_")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout
