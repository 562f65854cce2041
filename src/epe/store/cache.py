"""A small time-limited cache for the lookups every request makes.

Authentication and script lookup run on every call; through SQLAlchemy each
costs ~100 µs, more than the rest of a do-eval. The store caches positive
answers for a short time and drops them on every write it makes itself, so a
change made through this server is seen at once; one made by another process
(``epe user add`` creates, never changes) is seen within the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, ttl: float, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: Hashable, value: V) -> None:
        if len(self._entries) >= self.max_size:
            self._entries.clear()  # rare; simpler and safe
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


K = TypeVar("K", bound=Hashable)


class Snapshot(Generic[K, V]):
    """A whole small table, read in one query and kept for ``ttl``: one lookup per
    ``ttl`` answers every key, where ``TTLCache`` asks once for each new key (each new
    token's revocation, each new user's limits: a burst of new users asked them all).

    ``load(limit)`` returns up to ``limit`` rows as a dict; a table holding more than
    ``max_rows`` is not kept (``get`` says ``None`` until the next look), and callers
    ask for their key alone, as before.
    """

    def __init__(self, ttl: float, load: Callable[[int], dict[K, V]],
                 max_rows: int = 10_000) -> None:
        self.ttl = ttl
        self.max_rows = max_rows
        self._load = load
        self._taken = -float("inf")
        self._rows: dict[K, V] | None = None
        self._changes = 0  # ``clear`` calls: a read begun before one is not kept

    def get(self) -> dict[K, V] | None:
        """The rows, read again if older than ``ttl``; None when there are too many."""
        if self.fresh():
            return self._rows
        changes, began = self._changes, time.monotonic()
        loaded = self._load(self.max_rows + 1)
        rows = loaded if len(loaded) <= self.max_rows else None
        if changes == self._changes:  # else a write of ours may have come after the read
            self._rows, self._taken = rows, began
        return rows

    def fresh(self) -> bool:
        """Whether ``get`` answers without reading (within ``ttl`` of the last read)."""
        return time.monotonic() - self._taken < self.ttl

    def clear(self) -> None:
        """Read again at the next ``get`` (this process changed the table)."""
        self._changes += 1
        self._taken = -float("inf")
