"""Limits where no cgroup can be had: each worker's own rlimits, and /proc to count.

Each worker limits its own address space (``RLIMIT_AS``, ``EPE_WORKER_MEMORY_LIMIT``)
and processes (``RLIMIT_NPROC``, per uid) before it reads a task
(``runner.worker.main.set_limits``): nothing bounds a user's workers together, and
no CPU weight keeps users level. What a task used is read from outside the worker:
``utime + stime`` (and those of the children it waited for) of ``/proc/<pid>/stat``,
and ``VmHWM`` of ``/proc/<pid>/status``, whose high-water mark is reset before each
task (``clear_refs``). A sandboxed worker is the only child of the process the pool
knows (``/proc/<pid>/task/<pid>/children``).
"""

from __future__ import annotations

import contextlib
import os

from epe.runner.executor import Usage
from epe.runner.limits.groups import Kind, UserLimits

KIND: Kind = "rlimit"
TICK = os.sysconf("SC_CLK_TCK")


class RLimits:
    def __init__(self, why: str) -> None:
        self.where = why  # why no cgroup could be had

    @property
    def kind(self) -> Kind:
        return KIND

    def user(self, name: str, limits: UserLimits) -> None:
        """Nothing to make: without cgroups nothing holds a user's workers together;
        each worker's own rlimits are its limits."""

    def worker(self, user: str) -> _Process:
        return _Process()

    def close(self) -> None:
        """Nothing to remove: no group was made."""


class _Process:
    join: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._pid = 0
        self._sandboxed = False
        self._target = 0
        self._start = 0

    def started(self, pid: int, sandboxed: bool) -> None:
        self._pid, self._sandboxed = pid, sandboxed

    def begin(self) -> None:
        self._target = self._worker_pid()
        # Where it is not ours to reset: the peak since the worker started.
        with contextlib.suppress(OSError), open(f"/proc/{self._target}/clear_refs", "w") as f:
            f.write("5")
        self._start = _cpu_ticks(self._target)

    def usage(self) -> Usage:
        return Usage(cpu_seconds=max(0, _cpu_ticks(self._target) - self._start) / TICK,
                     peak_memory=_high_water_mark(self._target))

    def out_of_memory(self) -> bool:
        return False  # a SIGKILL may be the kernel's OOM killer, but nothing says so

    def remove(self) -> None:
        """Nothing to remove: a worker's rlimits end with it."""

    def _worker_pid(self) -> int:
        if not self._sandboxed:
            return self._pid
        try:
            with open(f"/proc/{self._pid}/task/{self._pid}/children") as f:
                children = f.read().split()
        except OSError:
            return self._pid
        return int(children[0]) if children else self._pid


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime, in clock ticks (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(v) for v in fields[11:15])


def _high_water_mark(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0  # the worker has ended: nothing left to read
    return 0
