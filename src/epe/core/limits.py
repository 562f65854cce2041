"""How much one user may hold at once (docs/operations.md#limits): pure.

Each limit has a default setting (``EPE_USER_RUNNING_JOBS``, ``EPE_USER_WAITING_JOBS``,
``EPE_USER_MEMORY_LIMIT``, ``EPE_USER_STORAGE_QUOTA``) that an admin may override for
one user; an override of ``None`` is no override. ``resolve`` is the one rule that
combines them; ``epe.service.limits`` reads the overrides and asks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from epe.errors import InvalidRequest, StorageQuotaExceeded

# The API's names of the limits, as in ``PATCH /omlusers/api/v1/users/{name}``, and the
# settings that give their defaults.
API_NAMES = {"running_jobs": "runningJobs", "waiting_jobs": "waitingJobs",
             "memory": "memory", "storage": "storage"}
SETTINGS = {"running_jobs": "EPE_USER_RUNNING_JOBS", "waiting_jobs": "EPE_USER_WAITING_JOBS",
            "memory": "EPE_USER_MEMORY_LIMIT", "storage": "EPE_USER_STORAGE_QUOTA"}
MINIMUM = {"running_jobs": 1, "waiting_jobs": 0, "memory": 64 * 1024**2, "storage": 0}
MAXIMUM = 2**62  # any limit: more than a database's 64-bit integer could hold is a typo
# Where a user's memory limit is left at 0: this share of the node's memory.
NODE_SHARE = 0.75


@dataclass(frozen=True)
class Limits:
    """What one user may hold: jobs running at once (every service level together), jobs
    waiting, bytes of memory of all their workers on one node together (0: a share of
    the node's memory, ``memory_on``), and bytes stored (tables, datastores and kept job
    results together)."""

    running_jobs: int
    waiting_jobs: int
    memory: int
    storage: int

    def memory_on(self, node_memory: int) -> int:
        """The bytes of memory the user's workers may hold together on a node with
        ``node_memory`` bytes of it."""
        return self.memory or int(node_memory * NODE_SHARE)

    def shown(self, node_memory: int) -> dict[str, int]:
        """The limits as the API shows them, memory resolved for a node of ``node_memory``."""
        values = {**vars(self), "memory": self.memory_on(node_memory)}
        return {API_NAMES[k]: v for k, v in values.items()}


FIELDS = tuple(f.name for f in fields(Limits))
Overrides = Mapping[str, int]  # field name -> the value an admin set


def resolve(defaults: Limits, overrides: Overrides) -> Limits:
    """The user's limits: each override in place of its default."""
    return replace(defaults, **overrides)


def parse_changes(body: Mapping[str, Any]) -> dict[str, int | None]:
    """An admin's changes from the API's ``"limits"`` object (field name -> value; None
    goes back to the default); ``InvalidRequest`` for an unknown name or a bad value."""
    by_api = {api: name for name, api in API_NAMES.items()}
    changes: dict[str, int | None] = {}
    for key, value in body.items():
        if key not in by_api:
            raise InvalidRequest(f"unknown limit {key!r}: use {', '.join(by_api)}")
        changes[by_api[key]] = check_value(by_api[key], value)
    return changes


def check_value(name: str, value: object) -> int | None:
    """A limit's value as an admin gave it: None, or a whole number at least its minimum."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"limit {API_NAMES[name]} must be a whole number or null; not "
                             f"{value!r}")
    if not MINIMUM[name] <= value <= MAXIMUM:
        raise InvalidRequest(f"limit {API_NAMES[name]} must be from {MINIMUM[name]} to "
                             f"{MAXIMUM}; not {value}")
    return value




def over_quota(what: str, size: int, used: int, after: int,
               quota: int) -> StorageQuotaExceeded:
    """The refusal of a write of ``size`` bytes (``what`` says which) that would take a
    user who stores ``used`` bytes to ``after``, past their ``quota``."""
    return StorageQuotaExceeded(
        f"{what} ({size} bytes) would take your storage to {after} bytes, over your quota "
        f"of {quota} bytes: you store {used} bytes now (tables, datastores and kept job "
        "results together). Nothing of it was kept: delete some of what you store, or ask "
        "an admin to raise your storage limit (its default is EPE_USER_STORAGE_QUOTA)",
        storageUsed=used, storageQuota=quota)
