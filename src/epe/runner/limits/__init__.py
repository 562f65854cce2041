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
import os

from epe.core.limits import NODE_SHARE
from epe.errors import InvalidSetting
from epe.runner.limits import cgroup1, cgroup2, rlimit
from epe.runner.limits.groups import (
    Kind,
    ResourceLimits,
    Unavailable,
    UserLimits,
    WorkerGroup,
    size,
)
from epe.runner.limits.hierarchy import own_memory_limit
from epe.settings import Settings

__all__ = ["Kind", "ResourceLimits", "Unavailable", "UserLimits", "WorkerGroup", "choose",
           "node_memory", "size", "spare_workers", "user_memory_limit", "warm_bounds"]

def choose(settings: Settings) -> ResourceLimits:
    """The strongest limits this machine lets the server have (``EPE_RESOURCE_LIMITS``)."""
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
    own = own_memory_limit()
    return min(physical, own) if own else physical


# What a warm worker is budgeted of the machine's memory when sizing: an idle one holds
# a few MB of its own (the rest is shared with its fork server), a busy one its input.
WORKER_MEMORY = 256 * 1024**2
WORKERS_PER_CORE = 64  # warm, mostly idle: they cost memory, not cores


def warm_bounds(settings: Settings) -> tuple[int, int]:
    """(workers, pools) warm at once: ``EPE_MAX_WORKERS`` and ``EPE_MAX_POOLS``, or, where
    0, what the machine's memory and cores hold (a pool of one worker each at most)."""
    workers = settings.max_workers or max(8, min(node_memory() // WORKER_MEMORY,
                                                 WORKERS_PER_CORE * (os.cpu_count() or 1)))
    return workers, settings.max_pools or workers


SPARES_AT_MOST = 64


def spare_workers(settings: Settings) -> int:
    """``EPE_WORKER_SPARES``, or, where -1, half the warm workers' bound (at least 8, at most
    ``SPARES_AT_MOST``): a burst of new users may fill the pools the machine holds, and
    a spare costs about 3 MB where a warm worker is budgeted ``WORKER_MEMORY``."""
    if settings.worker_spares >= 0:
        return settings.worker_spares
    return min(SPARES_AT_MOST, max(8, warm_bounds(settings)[0] // 2))


def user_memory_limit(settings: Settings) -> int:
    """``EPE_USER_MEMORY_LIMIT``, or its share of this machine's memory when it is 0."""
    return settings.user_memory_limit or int(node_memory() * NODE_SHARE)
