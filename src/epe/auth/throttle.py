"""Failed logins counted per key (a user name, a client address), so that guessing a
password takes a lifetime: after a key's limit of failures within ``window`` seconds,
every login with that key is refused until the oldest failure ages out, the right
password included (a guess must not learn whether it was right).

Counted in this process's memory: a restart forgets, which only costs an attacker's
window; several servers count apart (docs/security.md).
"""

from __future__ import annotations

import math
import time
from collections import deque

from epe.errors import TooManyRequests


class LoginThrottle:
    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.window, self.max_keys = window, max_keys
        self._failures: dict[str, deque[float]] = {}

    def check(self, limits: dict[str, int]) -> None:
        """Refuse with 429 while a key has as many recent failures as its limit."""
        now = time.monotonic()
        wait = max((self._wait(key, limit, now) for key, limit in limits.items()),
                   default=0.0)
        if wait > 0:
            raise TooManyRequests("too many failed logins; try again later",
                                  retry_after=max(1, math.ceil(wait)))

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= self.max_keys:
            self._forget_old(now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _wait(self, key: str, limit: int, now: float) -> float:
        failures = self._failures.get(key)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < limit:
            return 0.0
        return failures[-limit] + self.window - now

    def _forget_old(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
            del self._failures[key]
