"""Warm executors keyed by environment and user, within the server's bounds.

A pool serves one user in one environment for its whole life (``Tenant``): two
users never share a worker. Pools start on first use and stop when idle for
``EPE_WORKER_IDLE_TIMEOUT``. At most ``EPE_MAX_POOLS`` pools and ``EPE_MAX_WORKERS``
workers are warm at once (on a Ray cluster: on each node, every pool having its
workers on every node), both sized from the machine unless set (``warm_bounds``); a
pool counts as the workers it has (``Executor.warm``: a local pool starts with one and
grows under load; a Ray pool counts as its size). A new pool, or a worker a pool would
add, that would pass a bound first evicts the least recently used idle pool. An evicted
pool's workers are stopped once the burst that evicted it is over (no pool started for
``BURST_GAP`` seconds, and no run in flight), or ``EVICTED_STOP_WITHIN`` seconds later
at the latest: a burst of new users, each evicting someone's pool, would otherwise wait
behind the CPU their killing takes (docs/benchmarks.md). Workers waiting so are at most
half the workers' bound; past it, an evicted pool stops at once. A pool
that cannot grow runs its tasks on the workers it has, and when every pool is busy a
new one waits its turn (first come, first served). More than ``EPE_POOL_QUEUE_LIMIT``
runs waiting is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from epe.errors import InternalError, ServerBusy
from epe.observe import metrics
from epe.runner.executor import Executor, ExecutorStatus, Tenant
from epe.runner.limits import warm_bounds
from epe.settings import Settings

log = logging.getLogger("epe.runner")

BURST_GAP = 0.5  # seconds without a new pool: a burst of them is over
EVICTED_STOP_WITHIN = 5.0  # seconds at most that an evicted pool's stop waits for it


class Backend(Protocol):
    """Where pools' workers run (``runner.local.host.LocalHost`` on this machine)."""

    @property
    def isolated(self) -> bool: ...

    @property
    def why_not_isolated(self) -> str: ...

    @property
    def resource_limits(self) -> str:
        """How workers are limited: ``cgroup2``, ``cgroup1`` or ``rlimit``."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def expect(self, tenant: Tenant) -> None:
        """``tenant`` has signed in: make ahead what their first pool needs."""
        ...

    def pool(self, python: str, size: int, tenant: Tenant,
             may_grow: Callable[[], bool] | None = None) -> Executor:
        """A pool of up to ``size`` workers; ``may_grow``: asked before it adds a worker
        past its first, where it grows by itself."""
        ...

    def stop_fork_server(self, python: str) -> None:
        """No pool of ``python`` is left: what serves it may stop."""
        ...

    def status(self) -> tuple[bool, dict[str, Any]]:
        """Whether it can start workers now, and what an operator wants to see of it."""
        ...


@dataclass(frozen=True)
class PoolKey:
    environment: str | None  # None: the server's own environment
    user: str


@dataclass(eq=False)
class _Entry:
    key: PoolKey
    python: str
    version: str  # an environment deleted and made again under its name is another one
    size: int
    tenant: Tenant  # as it was when the pool started (its memory limit)
    executor: Executor
    ready: asyncio.Future[None]
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Pools:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self._entries: dict[PoolKey, _Entry] = {}
        self._room = asyncio.Condition()
        self._waiting = 0
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Future[None]] = set()
        self._runs = 0  # in flight, in every pool
        self._quiet = asyncio.Event()  # no run in flight, or the server stopping
        self._quiet.set()
        self._closing = False
        self._last_start = 0.0  # when the newest pool was started (monotonic)
        self._evicted = 0  # workers of evicted pools not stopped yet
        self.max_workers, self.max_pools = warm_bounds(settings)

    async def start(self) -> None:
        await self.backend.start()
        self._reaper = asyncio.create_task(self._reap_forever())
        log.info("at most %d workers and %d pools warm at once", self.max_workers,
                 self.max_pools)

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        self._closing = True  # evicted pools stop now, whatever still runs
        self._quiet.set()
        entries, self._entries = list(self._entries.values()), {}
        await asyncio.gather(*(self._stop(e) for e in entries), *self._stopping,
                             return_exceptions=True)
        await self.backend.stop()

    def status(self) -> ExecutorStatus:
        """Whether runs can be served now (the readiness check): the backend can fork
        workers; and what is warm."""
        ready, detail = self.backend.status()
        return ExecutorStatus(ready, {**detail, "pools": len(self._entries),
                                      "workers": self._warm(), "waiting": self._waiting})

    @contextlib.asynccontextmanager
    async def use(self, key: PoolKey, python: str, version: str, size: int,
                  tenant: Tenant) -> AsyncIterator[Executor]:
        """The pool of ``key``, started if needed, marked busy while the block runs."""
        self._run_begins()  # counted from here: a run that evicts holds evicted pools' stop
        try:
            entry = await self._entry(key, python, version, size, tenant)
        except BaseException:
            self._run_ends()
            raise
        entry.active += 1
        try:
            await asyncio.shield(entry.ready)
            yield entry.executor
        finally:
            self._run_ends()
            entry.active -= 1
            entry.last_used = time.monotonic()
            if self._waiting:  # a run waits for room: an idle pool may make it
                async with self._room:
                    self._room.notify_all()

    def stop_environment(self, name: str) -> list[asyncio.Future[None]]:
        """Stop every pool of environment ``name`` (it was deleted)."""
        doomed = [e for k, e in self._entries.items() if k.environment == name]
        for entry in doomed:
            del self._entries[entry.key]
        return [asyncio.ensure_future(self._stop(e)) for e in doomed]

    # -- details -------------------------------------------------------------------------

    def _run_begins(self) -> None:
        self._runs += 1
        if not self._closing:
            self._quiet.clear()

    def _run_ends(self) -> None:
        self._runs -= 1
        if self._runs == 0:
            self._quiet.set()

    async def _entry(self, key: PoolKey, python: str, version: str, size: int,
                     tenant: Tenant) -> _Entry:
        entry = self._entries.get(key)
        if entry is not None and entry.version != version:  # deleted and made again
            del self._entries[key]
            self._in_background(entry)
            entry = None
        if entry is not None and entry.ready.done() and entry.ready.exception() is not None:
            del self._entries[key]  # it failed to start: try again
            entry = None
        if entry is not None and entry.tenant != tenant and entry.active == 0 and \
                entry.ready.done():
            # The user's limits changed (an admin): a new pool applies them. A busy pool
            # is left to finish its runs; its user's next run once it is idle does it.
            del self._entries[key]
            self._in_background(entry)
            entry = None
        if entry is None:
            executor = self.backend.pool(python, size, tenant,
                                         may_grow=functools.partial(self._may_grow, key))
            await self._make_room(executor.warm)
            entry = self._entries.get(key)  # another run may have started it meanwhile
            if entry is None:
                self._last_start = time.monotonic()
                entry = _Entry(key, python, version, size, tenant, executor,
                               asyncio.ensure_future(self._start(key, executor)))
                self._entries[key] = entry
        entry.last_used = time.monotonic()
        return entry

    async def _start(self, key: PoolKey, executor: Executor) -> None:
        try:
            await executor.start()
            metrics.POOLS_WARM.labels(_kind(key)).inc()
        except ServerBusy:  # where workers run cannot be reached now (a cluster): a 503
            await executor.stop()
            raise
        except Exception as e:
            await executor.stop()
            log.exception("could not start the workers of %s", key)
            raise InternalError(f"could not start workers for {key.user}"
                                f"{' in ' + key.environment if key.environment else ''}: "
                                f"{type(e).__name__}: {e}") from None

    async def _make_room(self, workers: int) -> None:
        """Wait until a pool of ``workers`` fits, stopping idle pools to make room."""
        async with self._room:
            while not self._fits(workers):
                if self._evict_one():
                    continue
                if self._waiting >= self.settings.pool_queue_limit:
                    raise ServerBusy("every worker is busy and too many runs are waiting "
                                     "for one; try again later",
                                     retry_after=self.settings.retry_after)
                self._waiting += 1
                try:
                    await self._room.wait()
                finally:
                    self._waiting -= 1

    def _fits(self, workers: int) -> bool:
        # A pool's workers are on each machine that runs them: the server's, or every
        # node of a Ray cluster. The sum bounds each machine's warm workers, which is
        # what they cost (memory, processes); nodes joining add room, not use it.
        if not self._entries:
            return True  # one pool always fits, whatever the settings
        return len(self._entries) < self.max_pools and \
            self._warm() + workers <= self.max_workers

    def _warm(self) -> int:
        return sum(e.executor.warm for e in self._entries.values())

    def _may_grow(self, key: PoolKey) -> bool:
        """Whether the pool of ``key`` may add a worker now: there is room, or an idle
        pool of someone else's was stopped to make it."""
        return self._warm() < self.max_workers or self._evict_one(sparing=key)

    def _evict_one(self, sparing: PoolKey | None = None) -> bool:
        """Stop the least recently used idle pool (never ``sparing``'s); whether there
        was one."""
        idle = [e for e in self._entries.values()
                if e.active == 0 and e.ready.done() and e.key != sparing]
        if not idle:
            return False
        victim = min(idle, key=lambda e: e.last_used)
        del self._entries[victim.key]
        workers = victim.executor.warm
        if self._evicted + workers <= self.max_workers // 2:
            self._evicted += workers
            self._in_background(victim, self._stop_evicted(victim, workers))
        else:
            self._in_background(victim)
        log.info("evicted the pool of %s to make room", victim.key)
        return True

    def _in_background(self, entry: _Entry,
                       stopping: Coroutine[Any, Any, None] | None = None) -> None:
        """Stop ``entry`` (or run ``stopping``, which does) without waiting for it."""
        task = asyncio.ensure_future(stopping if stopping is not None else self._stop(entry))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop_evicted(self, entry: _Entry, workers: int) -> None:
        """Stop an evicted pool of ``workers`` once no pool has started for ``BURST_GAP``
        seconds and no run is in flight, or ``EVICTED_STOP_WITHIN`` seconds from now.
        (No run in flight alone came too early: in a burst's tail, between one caller's
        answer and their next call.)"""
        deadline = time.monotonic() + EVICTED_STOP_WITHIN
        try:
            while not self._closing and \
                    (gap := self._last_start + BURST_GAP - time.monotonic()) > 0:
                await asyncio.sleep(min(gap, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= deadline:
                    break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._quiet.wait()
        finally:
            self._evicted -= workers
        await self._stop(entry)

    async def _stop(self, entry: _Entry) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await entry.ready
        if entry.ready.done() and not entry.ready.cancelled() and entry.ready.exception() is None:
            metrics.POOLS_WARM.labels(_kind(entry.key)).dec()
        await entry.executor.stop()
        if entry.key.environment is not None and not any(
                e.python == entry.python for e in self._entries.values()):
            self.backend.stop_fork_server(entry.python)

    def _idle_limit(self, key: PoolKey) -> float:
        """How long a pool may stay unused: a named environment's pools have their own
        limit (and its fork server stops with its last pool)."""
        if key.environment is None:
            return self.settings.worker_idle_timeout
        return min(self.settings.worker_idle_timeout, self.settings.env_idle_timeout)

    async def _reap_forever(self) -> None:
        shortest = min(self.settings.worker_idle_timeout, self.settings.env_idle_timeout)
        while True:
            await asyncio.sleep(min(30.0, max(0.5, shortest / 4)))
            now = time.monotonic()
            for key, entry in list(self._entries.items()):
                if entry.active == 0 and entry.ready.done() and \
                        now - entry.last_used >= self._idle_limit(key):
                    del self._entries[key]
                    log.info("stopping the idle pool of %s", key)
                    await self._stop(entry)
            async with self._room:
                self._room.notify_all()


def _kind(key: PoolKey) -> str:
    return "user" if key.environment is None else "environment"
