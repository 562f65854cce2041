"""What bounds users' workers on one machine: cgroups, or rlimits where none can be had.

Each user's workers on a machine live in a control group of their own,
``epe/<user>``, beneath the cgroup the server (or a Ray node's agent) was started
in: a memory limit over all of them together (resident memory and the tmpfs of
their sandboxes), a CPU weight equal for every user, and a pids limit. Each worker
has a leaf group of its own below its user's, which is what the kernel's
accounting of one task is read from (``WorkerGroup.usage``). Nothing is made at the
root of a hierarchy, no process leaves the server's subtree, and what was made is
removed at ``close``.

One module per version of the kernel's interface, behind ``ResourceLimits``:
``cgroup2`` (a delegated subtree, as systemd's ``Delegate=yes`` or a container
gives), ``cgroup1`` (the ``memory``, ``cpu``, ``cpuacct`` and ``pids``
hierarchies), and ``rlimit`` (neither: each worker's own address space is limited,
and /proc is read for accounting). ``choose`` picks one at start, the first that
works, and says why the others did not (docs/operations.md#resource-limits).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Literal, Protocol

from epe.errors import InvalidSetting
from epe.runner.executor import Usage
from epe.settings import Settings

log = logging.getLogger("epe.runner")

Kind = Literal["cgroup2", "cgroup1", "rlimit"]


class Unavailable(Exception):
    """A kind of limits cannot be had here; the message says why."""


@dataclass(frozen=True)
class UserLimits:
    """What all of one user's workers on this machine may hold together."""

    memory: int  # bytes: resident memory and tmpfs
    processes: int  # processes and threads


class WorkerGroup(Protocol):
    """One worker's place in its user's group, and what the kernel counted of it."""

    @property
    def join(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files a new worker writes ``0`` to (itself), before it
        drops its privileges and reads a task (``runner.worker.zygote``)."""
        ...

    def started(self, pid: int, sandboxed: bool) -> None:
        """The worker is process ``pid`` (with a sandbox: the process that waits for
        the worker, its only child)."""
        ...

    def begin(self) -> None:
        """A task starts: count from now."""
        ...

    def usage(self) -> Usage:
        """CPU seconds and peak memory since ``begin``."""
        ...

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process of this worker for its user's memory limit."""
        ...

    def remove(self) -> None:
        """The worker has ended: remove its group."""
        ...


class ResourceLimits(Protocol):
    @property
    def kind(self) -> Kind: ...

    @property
    def where(self) -> str:
        """Where its groups are (or, for rlimits, why no cgroup could be had)."""
        ...

    def user(self, name: str, limits: UserLimits) -> None:
        """Make (or update) ``name``'s group with ``limits``."""
        ...

    def worker(self, user: str) -> WorkerGroup:
        """A group for one new worker of ``user`` (whose group ``user`` made)."""
        ...

    def close(self) -> None:
        """Remove every group this made that is empty now."""
        ...


def choose(settings: Settings) -> ResourceLimits:
    """The strongest limits this machine lets the server have (``EPE_RESOURCE_LIMITS``)."""
    from epe.runner.limits import cgroup1, cgroup2, rlimit

    refusals = []
    if settings.resource_limits != "rlimit":
        for version in (cgroup2, cgroup1):
            try:
                return version.prepare()
            except Unavailable as e:
                refusals.append(f"{version.KIND}: {e}")
    why = "; ".join(refusals) or "EPE_RESOURCE_LIMITS=rlimit"
    if settings.resource_limits == "cgroup":
        raise InvalidSetting(f"EPE_RESOURCE_LIMITS=cgroup, but no cgroup can be used here: {why}")
    return rlimit.RLimits(why)


@functools.cache  # asked at every pool's start; what a machine has does not change
def node_memory() -> int:
    """The memory this machine gives the server: its RAM, or less if the server's own
    cgroup is limited to less."""
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    from epe.runner.limits.hierarchy import own_memory_limit

    own = own_memory_limit()
    return min(physical, own) if own else physical


def user_memory_limit(settings: Settings) -> int:
    """``EPE_USER_MEMORY_LIMIT``, or three quarters of the node's memory when it is 0."""
    return settings.user_memory_limit or node_memory() * 3 // 4


def size(n: int) -> str:
    """Bytes as a person reads them: ``512 MiB``, ``1.5 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
