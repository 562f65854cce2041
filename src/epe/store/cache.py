"""A small time-limited cache for the lookups every request makes.

Authentication and script lookup run on every call; through SQLAlchemy each
costs ~100 µs, more than the rest of a do-eval. The store caches positive
answers for a short time and drops them on every write it makes itself, so a
change made through this server is seen at once; one made by another process
(``epe user add`` creates, never changes) is seen within the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
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
