"""What each kind of resource limits must do (``runner.limits``), on this machine's kernel.

Each of ``cgroup2``, ``cgroup1`` and ``rlimit`` is set up as the server sets it up and
given real processes, which join their groups as the fork server's children do
(writing themselves to the files named): what a task used is what the
kernel counted; with cgroups, a user's workers share one memory limit (the one that
crosses it is killed, and its group says so), users share the CPU equally however
many workers each keeps busy, a user's processes are bounded, and what was made is
removed at close. A kind this machine cannot have is skipped, saying why (this
machine: cgroup version 1, so ``cgroup2`` is skipped; docs/operations.md says what of
it is untested).

Two hosts then show the memory limit that counts: with cgroups an address space far
past ``EPE_WORKER_MEMORY_LIMIT`` is no refusal; with rlimits it is, and the message
names the setting.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from epe.runner.executor import TaskFailed, Tenant
from epe.runner.limits import (
    ResourceLimits,
    Unavailable,
    UserLimits,
    WorkerGroup,
    cgroup1,
    cgroup2,
    rlimit,
)
from epe.runner.local.host import LocalHost
from epe.settings import Settings
from tests.integration.test_executor_conformance import Loop, task

MB = 1024**2
_names = itertools.count(1)

# Runs as a worker would: told what to do on its command line.
CHILD = """
import sys, time
what, amount, linger = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
if what == "burn":
    end = time.process_time() + amount
    while time.process_time() < end:
        pass
elif what == "hold":  # touch ``amount`` MB
    block = bytearray(int(amount) * 2**20)
    block[::4096] = b"x" * len(block[::4096])
elif what == "burn_until":
    while time.time() < amount:
        pass
elif what == "threads":
    import threading
    started = 0
    try:
        for _ in range(int(amount)):
            threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
            started += 1
    except RuntimeError:
        pass
    print(started)
print("done", flush=True)
time.sleep(linger)  # still there: /proc is read while it runs, as a worker's is
"""


KINDS: dict[str, ModuleType] = {"cgroup2": cgroup2, "cgroup1": cgroup1}


def _prepare(kind: str) -> ResourceLimits:
    if kind == "rlimit":
        return rlimit.RLimits("asked for")
    try:
        made: ResourceLimits = KINDS[kind].prepare()
    except Unavailable as e:
        pytest.skip(f"{kind} cannot be had here: {e}")
    return made


@pytest.fixture(params=["cgroup2", "cgroup1", "rlimit"])
def limits(request: pytest.FixtureRequest) -> Iterator[ResourceLimits]:
    made = _prepare(request.param)
    yield made
    made.close()


@pytest.fixture(params=["cgroup2", "cgroup1"])
def cgroups(request: pytest.FixtureRequest) -> Iterator[ResourceLimits]:
    """Limits over a user's workers together (rlimits bound each worker alone)."""
    made = _prepare(request.param)
    yield made
    made.close()


def user(limits: ResourceLimits, memory: int = 1024 * MB, processes: int = 256) -> str:
    name = f"TEST{os.getpid()}_{next(_names)}"
    limits.user(name, UserLimits(memory, processes))
    return name


def start(group: WorkerGroup, *args: object) -> subprocess.Popen[str]:
    """A process in ``group``, as a worker joins its groups before it runs anything."""
    def join() -> None:
        for procs in group.join:
            with open(procs, "w") as f:
                f.write("0")

    proc = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], text=True,
                            stdout=subprocess.PIPE, preexec_fn=join)
    group.started(proc.pid, sandboxed=False)
    return proc


def done(proc: subprocess.Popen[str]) -> None:
    """Wait until ``proc`` has done its work (it lingers after, as a worker would)."""
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"


def test_a_task_is_counted_as_the_kernel_counts_it(limits: ResourceLimits) -> None:
    holder, burner = limits.worker(user(limits)), limits.worker(user(limits))
    try:
        proc = start(holder, "hold", 120, 10)
        holder.begin()
        done(proc)
        assert holder.usage().peak_memory >= 120 * MB, holder.usage()
        proc.kill()
        proc.wait()
        proc = start(burner, "burn", 0.6, 10)
        burner.begin()
        done(proc)
        assert burner.usage().cpu_seconds >= 0.5, burner.usage()
        assert not burner.out_of_memory()
        proc.kill()
        proc.wait()
    finally:
        holder.remove()
        burner.remove()


def test_a_users_workers_share_one_memory_limit(cgroups: ResourceLimits) -> None:
    name = user(cgroups, memory=200 * MB)
    first, second = cgroups.worker(name), cgroups.worker(name)
    try:
        holding = start(first, "hold", 120, 5)
        done(holding)
        crossing = start(second, "hold", 120, 0)
        assert crossing.wait(30) == -9 or holding.wait(30) == -9
        assert first.out_of_memory() != second.out_of_memory()  # one killed, not both
        holding.kill()
        # Another user's process is not bounded by it.
        other = cgroups.worker(user(cgroups, memory=400 * MB))
        assert start(other, "hold", 250, 0).wait(30) == 0
        assert not other.out_of_memory()
        other.remove()
    finally:
        first.remove()
        second.remove()


def test_users_share_the_cpu_equally_however_many_workers_each_keeps_busy(
        cgroups: ResourceLimits) -> None:
    """B's one burner against A's four, all busy together: B gets about half of what
    both get (one core of two; without cgroups a fifth)."""
    many, one = user(cgroups), user(cgroups)
    groups = [cgroups.worker(many) for _ in range(4)] + [cgroups.worker(one)]
    until = time.time() + 2.0
    procs = [start(g, "burn_until", until, 10) for g in groups]
    try:
        for g in groups:
            g.begin()
        for p in procs:
            done(p)
        cpu = [g.usage().cpu_seconds for g in groups]
        assert cpu[-1] / sum(cpu) >= 0.35, cpu
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for g in groups:
            g.remove()


def test_a_users_processes_are_bounded(cgroups: ResourceLimits) -> None:
    group = cgroups.worker(user(cgroups, processes=20))
    try:
        proc = start(group, "threads", 60, 0)
        out, _ = proc.communicate(timeout=30)
        assert int(out.split()[0]) < 20, out  # the pids limit counts threads too
    finally:
        group.remove()


def test_a_users_groups_that_another_server_removed_are_made_again(
        cgroups: ResourceLimits) -> None:
    """A server that starts sweeps the empty groups of servers that died, and may take an
    idle user's groups of a live one: that server's next worker makes them again, with
    the user's limits."""
    name = user(cgroups, memory=300 * MB)
    group = cgroups.worker(name)
    users = {next(f for f in Path(p).parents if f.name == name) for p in group.join}
    group.remove()
    for folder in sorted(users, key=lambda f: -len(f.parts)):
        for leftover in [f for f in folder.iterdir() if f.is_dir()]:
            leftover.rmdir()
        folder.rmdir()
    group = cgroups.worker(name)
    try:
        proc = start(group, "hold", 1, 0)
        assert proc.wait(30) == 0
        limit = {f.name: f.read_text().strip() for folder in users for f in folder.iterdir()
                 if f.name in ("memory.limit_in_bytes", "memory.max")}
        assert set(limit.values()) == {str(300 * MB)}, limit
    finally:
        group.remove()


def test_a_users_groups_never_run_in_are_swept_by_the_next_server() -> None:
    """Made at a sign-in by a server that then died without stopping: no leaf in them
    says whose they were, and the next server to start removes them."""
    for kind, module in KINDS.items():
        try:
            died = module.prepare()
        except Unavailable:
            continue
        name = user(died)
        groups = [p for p in Path("/sys/fs/cgroup").rglob(name) if p.is_dir()]
        assert groups, kind
        module.prepare().close()  # the next server: it starts, sweeps, stops
        assert not [p for p in groups if p.exists()], (kind, groups)
        died.close()


@pytest.mark.parametrize("removed_by_its_pool", [True, False])
def test_what_it_made_is_removed_at_close(removed_by_its_pool: bool) -> None:
    """Whether its pool removed the worker's group or not (a worker that died with its
    fork server, as the server stopped), closing removes the leaf and the user's groups."""
    for kind, module in KINDS.items():
        try:
            made = module.prepare()
        except Unavailable:
            continue
        group = made.worker(user(made))
        assert start(group, "burn", 0.01, 0).wait(30) == 0
        if removed_by_its_pool:
            group.remove()
        made.close()
        for procs in group.join:
            assert not Path(procs).parent.exists(), (kind, procs)


# -- the worker's own limits, by kind --------------------------------------------------


def test_without_cgroups_the_address_space_is_the_limit(tmp_path: Path) -> None:
    """With rlimits, a worker may not map more than EPE_WORKER_MEMORY_LIMIT, and the
    message says so; with cgroups it may (memory it touches is what counts)."""
    mapping = "def f():\n    import mmap\n    m = mmap.mmap(-1, 6 * 2**30)\n    return len(m)\n"
    loop = Loop()
    try:
        for limits in ("rlimit", "auto"):
            settings = Settings(data_dir=tmp_path / limits, resource_limits=limits)
            host = LocalHost(settings)
            loop.run(host.start())
            uid = settings.worker_uid_base if host.isolated else None
            pool = host.pool(sys.executable, 1, Tenant("MAPPING", uid))
            try:
                loop.run(pool.start())
                if host.resource_limits == "rlimit":
                    with pytest.raises(TaskFailed) as failed:
                        loop.run(pool.run(task("do_eval", mapping), 60))
                    assert "EPE_WORKER_MEMORY_LIMIT" in failed.value.error.message
                else:
                    result = loop.run(pool.run(task("do_eval", mapping), 60))
                    assert result.fragments[0].json == str(6 * 2**30).encode()
            finally:
                loop.run(pool.stop())
                loop.run(host.stop())
    finally:
        loop.close()
