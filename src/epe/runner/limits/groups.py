"""What every kind of resource limits offers (``runner.limits``): a user's group made with
its limits, a worker's place in it, and what the kernel counted of a task there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from epe.runner.executor import Usage

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
        """The files a new worker writes ``0`` to (itself: ``cgroup.procs``, or version
        1's ``tasks``), before it drops its privileges and reads a task
        (``runner.worker.zygote``)."""
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


def size(n: int) -> str:
    """Bytes as a person reads them: ``512 MiB``, ``1.5 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
