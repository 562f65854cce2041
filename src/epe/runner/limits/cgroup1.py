"""Limits through cgroup version 1: one hierarchy per controller (or a few together).

The ``memory``, ``cpu``, ``cpuacct`` and ``pids`` hierarchies are each mounted under
``/sys/fs/cgroup`` (``cpu`` and ``cpuacct`` often together). In each, beneath this
process's own group, ``epe/<user>`` holds the user's limits (the kernel's
Documentation/admin-guide/cgroup-v1/): ``memory.limit_in_bytes`` and, where swap
is accounted, ``memory.memsw.limit_in_bytes`` alike (so swap is no way around it);
``cpu.shares`` 1024 for every user; ``pids.max``. A worker joins a leaf of its own
below its user's in the hierarchies that count for one task (``memory``:
``memory.max_usage_in_bytes``, reset before each task, and ``memory.oom_control``'s
``oom_kill``; ``cpuacct``: ``cpuacct.usage``) and its user's group in the others.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from epe.runner.executor import Usage
from epe.runner.limits.groups import Kind, Unavailable, UserLimits
from epe.runner.limits.hierarchy import (
    Made,
    check_writable,
    close_fds,
    make,
    mounts,
    own_dir,
    own_paths,
    read_int,
    read_key,
    remove,
    sweep_dead,
    write,
)

KIND: Kind = "cgroup1"
CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
COUNTED = {"memory", "cpuacct"}  # a worker's own leaf in these
TOP = "epe"
SHARES = "1024"  # the kernel's default: every user the same weight


def prepare() -> Cgroup1:
    """The version 1 hierarchies of this process, if it may make groups in all four."""
    paths, found = own_paths(), mounts()
    dirs = {}
    for controller in CONTROLLERS:
        mount = next((m for m in found if m.fstype == "cgroup" and controller in m.options),
                     None)
        if mount is None or controller not in paths:
            raise Unavailable(f"no {controller} hierarchy of version 1 is mounted")
        dirs[controller] = own_dir(mount, paths[controller])
    made = []
    try:
        for folder in set(dirs.values()):
            try:
                make(folder / TOP)
            except OSError as e:
                raise Unavailable(f"cannot make {folder / TOP}: {e.strerror} (uid "
                                  f"{os.geteuid()}; delegate the folder to the server's "
                                  "user)") from None
            made.append(folder / TOP)
            check_writable(folder / TOP)  # made by another server, as another user
        if (dirs["memory"] / TOP / "memory.use_hierarchy").read_text().strip() != "1":
            raise Unavailable(f"{dirs['memory']} does not account its children's memory "
                              "(memory.use_hierarchy is 0)")
    except Unavailable:
        for top in made:
            remove(top)
        raise
    return Cgroup1(dirs)


class Cgroup1:
    def __init__(self, dirs: dict[str, Path]) -> None:
        # Each hierarchy once (cpu and cpuacct may be one), with the controllers it has.
        self._hierarchies: dict[Path, set[str]] = {}
        for controller, folder in dirs.items():
            self._hierarchies.setdefault(folder / TOP, set()).add(controller)
        self._top = {c: folder / TOP for c, folder in dirs.items()}
        self._ids = itertools.count(1)
        self._made = Made()
        self._users: dict[str, UserLimits] = {}
        self._sweep()

    @property
    def kind(self) -> Kind:
        return KIND

    @property
    def where(self) -> str:
        return ", ".join(str(top) for top in self._hierarchies)

    def user(self, name: str, limits: UserLimits) -> None:
        self._users[name] = limits
        for top in self._hierarchies:
            make(top / name)
            self._made.users.add(top / name)
        _limit_memory(self._top["memory"] / name, limits.memory)
        write(self._top["cpu"] / name / "cpu.shares", SHARES)
        write(self._top["pids"] / name / "pids.max", str(limits.processes))

    def worker(self, user: str) -> _Worker:
        self._made.sweep()
        leaf = f"w{os.getpid()}-{next(self._ids)}"
        try:
            os.mkdir(self._top["memory"] / user / leaf)
        except FileExistsError:  # left by an earlier instance in this process: it is empty
            pass
        except FileNotFoundError:  # the user's groups were removed by another server's sweep
            self.user(user, self._users[user])
        joins, leaves = [], []
        for top, controllers in self._hierarchies.items():
            group = top / user
            if controllers & COUNTED:
                group = group / leaf
                make(group)  # made already in ``memory``
                leaves.append(group)
            # ``tasks``, not ``cgroup.procs``: a new worker has one thread, and moving the
            # writer's own thread spares the kernel the RCU grace period (~10 ms) that
            # moving a whole process waits for.
            joins.append(str(group / "tasks"))
        memory = self._top["memory"] / user / leaf
        cpuacct = self._top["cpuacct"] / user / leaf
        return _Worker(tuple(joins), leaves, memory, cpuacct, self._made)

    def close(self) -> None:
        self._made.close(list(self._hierarchies))

    def _sweep(self) -> None:
        """What servers that died without stopping left: their leaves, the users' groups
        that empties, and those users' groups in the hierarchies without leaves (``cpu``,
        ``pids``), which the user's ``memory`` group no longer stands beside."""
        for top in self._hierarchies:
            sweep_dead(top)
        memory = self._top["memory"]
        for top in self._hierarchies:
            if top != memory and top.is_dir():
                for group in top.iterdir():
                    if group.is_dir() and not (memory / group.name).exists():
                        remove(group)  # only if empty: a live server's keeps its processes


def _limit_memory(group: Path, limit: int) -> None:
    memory, with_swap = group / "memory.limit_in_bytes", group / "memory.memsw.limit_in_bytes"
    if not with_swap.exists():
        write(memory, str(limit))
        return
    # memsw may never be below the memory limit: raise it first, lower it last.
    try:
        write(with_swap, str(limit))
        write(memory, str(limit))
    except OSError:
        write(memory, str(limit))
        write(with_swap, str(limit))


class _Worker:
    def __init__(self, join: tuple[str, ...], leaves: list[Path], memory: Path,
                 cpuacct: Path, made: Made) -> None:
        self.join = join
        self._leaves, self._made = leaves, made
        self._peak = os.open(memory / "memory.max_usage_in_bytes", os.O_RDWR)
        self._oom = os.open(memory / "memory.oom_control", os.O_RDONLY)
        self._cpu = os.open(cpuacct / "cpuacct.usage", os.O_RDONLY)
        self._start = 0
        self._removed = False

    def started(self, pid: int, sandboxed: bool) -> None:
        """Nothing to record: the worker joined its groups itself (``join``), before any
        user code ran, and its usage is read from them."""

    def begin(self) -> None:
        os.write(self._peak, b"0")  # the peak from now: what the worker holds already
        self._start = read_int(self._cpu)

    def usage(self) -> Usage:
        return Usage(cpu_seconds=(read_int(self._cpu) - self._start) / 1e9,
                     peak_memory=read_int(self._peak))

    def out_of_memory(self) -> bool:
        return read_key(self._oom, "oom_kill") > 0

    def remove(self) -> None:
        if not self._removed:
            self._removed = True
            close_fds(self._peak, self._oom, self._cpu)
            self._made.gone(self._leaves)
