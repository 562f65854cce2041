"""The one place that decides how much a user may hold (docs/operations.md#limits).

``UserLimits.for_user(name)`` is what everything that enforces a limit asks: the job
queue (jobs running and waiting), the storage checks, and the executor (the memory of
a user's workers on a node, ``Limits.memory_on``). It combines the defaults of
``EPE_USER_*`` with what an admin set for the user (``epe.core.limits.resolve``), and
keeps the answer briefly, as the store keeps users: a change made through this server
is seen at once, one made through another within the store's cache time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epe.core.limits import API_NAMES, Limits, resolve
from epe.runner.limits import node_memory
from epe.settings import Settings
from epe.store import Store
from epe.store.cache import Snapshot, TTLCache


def defaults_of(settings: Settings) -> Limits:
    return Limits(running_jobs=settings.user_running_jobs,
                  waiting_jobs=settings.user_waiting_jobs,
                  memory=settings.user_memory_limit, storage=settings.user_storage_quota)


class UserLimits:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.defaults = defaults_of(settings)
        self.store = store
        self._cache: TTLCache[Limits] = TTLCache(store.cache_ttl)
        # Every user's overrides at once (few users have any): a new user's limits need
        # no lookup of their own.
        self._overrides: Snapshot[str, dict[str, int]] = Snapshot(
            store.cache_ttl, store.limits.every_override)

    def for_user(self, name: str) -> Limits:
        """``name``'s limits (blocking the first time in a while: one lookup)."""
        if (cached := self._cache.get(name)) is not None:
            return cached
        every = self._overrides.get()
        overrides = every.get(name, {}) if every is not None else \
            self.store.limits.overrides(name)  # more users have some than is kept at hand
        limits = resolve(self.defaults, overrides)
        self._cache.put(name, limits)
        return limits

    def cached(self, name: str) -> Limits | None:
        """``name``'s limits if they are at hand (no store access), else ``None``."""
        if (cached := self._cache.get(name)) is not None:
            return cached
        if self._overrides.fresh():
            return self.for_user(name)  # from the overrides read a moment ago
        return None

    def change(self, name: str, changes: Mapping[str, int | None]) -> Limits:
        """Set or (None) clear some of ``name``'s overrides (blocking); the limits after."""
        self.store.limits.change(name, changes)
        self._overrides.clear()
        self._cache.drop(name)
        return self.for_user(name)

    def shown(self, name: str) -> dict[str, Any]:
        """What ``GET .../users/{name}`` shows of ``name``'s limits and what they hold now
        (blocking): ``limits`` (memory: on this server's machine), ``limitsSet`` (those an
        admin set for them; the others are the defaults) and ``usage``."""
        running, waiting = self.store.jobs.counts(name)
        stored = self.store.storage.stored(name)
        return {"limits": self.for_user(name).shown(node_memory()),
                "limitsSet": sorted(API_NAMES[k] for k in self.store.limits.overrides(name)),
                "usage": {"runningJobs": running, "waitingJobs": waiting,
                          "storage": stored.total,
                          "storageDetail": {"tables": stored.tables,
                                            "datastores": stored.datastores,
                                            "models": stored.models,
                                            "jobResults": stored.job_results}}}
