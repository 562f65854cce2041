"""Limits through cgroup version 2: one hierarchy, a subtree delegated to the server.

Written against the kernel's Documentation/admin-guide/cgroup-v2.rst. The server's
own cgroup must offer the ``memory``, ``cpu`` and ``pids`` controllers
(``cgroup.controllers``) and be writable by it: what systemd's ``Delegate=yes`` gives
a service, and what a container with a private cgroup namespace and a writable
``/sys/fs/cgroup`` gives its processes. Version 2 lets no cgroup with controllers
enabled for its children hold processes, so when the server's own group holds some
(the server itself, a container's other processes), they are first moved into a
leaf of it, ``server``: within the subtree, never out of it. Then

- ``epe`` enables the three controllers for its children;
- ``epe/<user>``: ``memory.max`` (and ``memory.swap.max`` 0, so swap is no way around
  it), ``cpu.weight`` 100 for every user, ``pids.max``; ``memory`` enabled for its
  children, so each worker's leaf has its own memory files;
- ``epe/<user>/<worker>``: the worker's leaf, whose ``cpu.stat`` (``usage_usec``),
  ``memory.peak`` and ``memory.events`` (``oom_kill``) count one task. ``memory.peak``
  is reset before each task where the kernel allows it (6.12 on: a write resets the
  peak seen through that open file); on older kernels it is the worker's peak so far.

At the hierarchy's root (a server not started in a cgroup of its own) nothing is
written to the root's files: its ``cgroup.subtree_control`` must enable the three
controllers already.
"""

from __future__ import annotations

import contextlib
import errno
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

KIND: Kind = "cgroup2"
CONTROLLERS = ("memory", "cpu", "pids")
TOP = "epe"
SERVER = "server"  # the leaf the processes of the server's own group move to
WEIGHT = "100"  # the kernel's default: every user the same weight


def prepare() -> Cgroup2:
    """The delegated subtree of this process, set up for users' groups."""
    paths = own_paths()
    mount = next((m for m in mounts() if m.fstype == "cgroup2"), None)
    if mount is None or "" not in paths:
        raise Unavailable("no cgroup2 hierarchy is mounted")
    own = own_dir(mount, paths[""])
    offered = (own / "cgroup.controllers").read_text().split()
    if missing := [c for c in CONTROLLERS if c not in offered]:
        raise Unavailable(f"{own} is not offered the {', '.join(missing)} controller(s) "
                          "(delegate a subtree to the server: systemd's Delegate=yes)")
    check_writable(own)
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        if not os.access(own / name, os.W_OK):
            raise Unavailable(f"{own / name} is not writable by uid {os.geteuid()}: delegate "
                              "the subtree to the server's user")
    _enable_below(own, is_root=not (own / "cgroup.type").exists())
    try:
        make(own / TOP)
        check_writable(own / TOP)  # made by another server, as another user
        _enable(own / TOP, CONTROLLERS)
    except OSError as e:
        remove(own / TOP)
        raise Unavailable(f"cannot set up {own / TOP}: {e.strerror}") from None
    except Unavailable:
        remove(own / TOP)
        raise
    if not (own / TOP / "memory.peak").exists():
        remove(own / TOP)
        raise Unavailable("the kernel has no memory.peak (Linux 5.19 or later has)")
    return Cgroup2(own / TOP)


def _enable_below(own: Path, is_root: bool) -> None:
    """Enable the controllers for the children of the server's own group, moving its
    processes into a leaf first (version 2 allows no processes there then)."""
    enabled = (own / "cgroup.subtree_control").read_text().split()
    needed = [c for c in CONTROLLERS if c not in enabled]
    if not needed:
        return
    if is_root:
        raise Unavailable(f"the root cgroup {own} does not enable {', '.join(needed)} for its "
                          "children, and epe does not change the root")
    for _ in range(5):  # processes may start in it meanwhile: move them too
        _move_all(own, own / SERVER)
        try:
            _enable(own, needed)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise Unavailable(f"cannot enable {', '.join(needed)} in {own}: "
                                  f"{e.strerror}") from None
    raise Unavailable(f"processes keep appearing in {own}; cannot enable its controllers")


def _move_all(source: Path, leaf: Path) -> None:
    make(leaf)
    for pid in (source / "cgroup.procs").read_text().split():
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            write(leaf / "cgroup.procs", pid)


def _enable(group: Path, controllers: tuple[str, ...] | list[str]) -> None:
    write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))


class Cgroup2:
    def __init__(self, top: Path) -> None:
        self._top = top
        self._ids = itertools.count(1)
        self._made = Made()
        self._users: dict[str, UserLimits] = {}
        sweep_dead(top)

    @property
    def kind(self) -> Kind:
        return KIND

    @property
    def where(self) -> str:
        return str(self._top)

    def user(self, name: str, limits: UserLimits) -> None:
        self._users[name] = limits
        group = self._top / name
        make(group)
        self._made.users.add(group)
        write(group / "memory.max", str(limits.memory))
        if (group / "memory.swap.max").exists():
            write(group / "memory.swap.max", "0")
        write(group / "cpu.weight", WEIGHT)
        write(group / "pids.max", str(limits.processes))
        if "memory" not in (group / "cgroup.subtree_control").read_text().split():
            _enable(group, ["memory"])

    def worker(self, user: str) -> _Worker:
        self._made.sweep()
        if not (self._top / user).exists():  # removed by another server's sweep
            self.user(user, self._users[user])
        leaf = self._top / user / f"w{os.getpid()}-{next(self._ids)}"
        make(leaf)
        return _Worker(leaf, self._made)

    def close(self) -> None:
        self._made.close([self._top])


class _Worker:
    def __init__(self, leaf: Path, made: Made) -> None:
        self.join = (str(leaf / "cgroup.procs"),)
        self._leaf, self._made = leaf, made
        self._cpu = os.open(leaf / "cpu.stat", os.O_RDONLY)
        self._events = os.open(leaf / "memory.events", os.O_RDONLY)
        self._peak = os.open(leaf / "memory.peak", os.O_RDWR)
        self._start = 0
        self._removed = False

    def started(self, pid: int, sandboxed: bool) -> None:
        """Nothing to record: the worker joined its group itself (``join``), before any
        user code ran, and its usage is read from it."""

    def begin(self) -> None:
        # The peak seen through this file, from now (before Linux 6.12 a write fails:
        # the worker's peak so far).
        with contextlib.suppress(OSError):
            os.write(self._peak, b"reset")
        self._start = read_key(self._cpu, "usage_usec")

    def usage(self) -> Usage:
        return Usage(cpu_seconds=(read_key(self._cpu, "usage_usec") - self._start) / 1e6,
                     peak_memory=read_int(self._peak))

    def out_of_memory(self) -> bool:
        return read_key(self._events, "oom_kill") > 0

    def remove(self) -> None:
        if not self._removed:
            self._removed = True
            close_fds(self._cpu, self._events, self._peak)
            self._made.gone([self._leaf])
