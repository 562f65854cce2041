"""Warm pools per named environment: started when first needed, stopped idle.

A run naming an environment gets an executor (made by the factory it was given:
a ``LocalPool`` today) whose workers start from that environment's Python. The pool
starts on the first run there and stops after ``env_idle_timeout`` seconds without one.
While a run or a job uses an environment it holds a *lease*: a shared lock on the
environment's ``env.lock`` (see ``epe.envs.registry``), so neither
``DELETE /envs/{name}`` nor ``epe env delete`` can take it away underneath (they
answer 409 instead). Environments are read from disk on every lookup, so one
``epe env create`` made while the server runs is found at once, and one deleted and
made again under the same name gets a fresh pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epe.envs import (
    Base,
    Environment,
    RunAs,
    Spec,
    build,
    check_spec,
    describe,
    listing,
    registry,
)
from epe.errors import Conflict, InternalError, NotFound
from epe.observe import metrics
from epe.runner.executor import Executor
from epe.runner.identity import worker_identity
from epe.settings import Settings

# Makes the executor of one environment: given its Python and how many workers to run.
ExecutorFactory = Callable[[str, int], Executor]

log = logging.getLogger("epe.envs")


@dataclass
class _Hold:
    fd: int
    env: Environment
    count: int = 0


@dataclass
class _Pool:
    env_id: str
    pool: Executor
    ready: asyncio.Future[None]
    last_used: float = field(default_factory=time.monotonic)


class Lease:
    """One run's (or job's) use of an environment; ``release`` exactly once."""

    def __init__(self, owner: EnvironmentPools, name: str, env: Environment) -> None:
        self._owner, self.name, self.env = owner, name, env
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._owner._release(self.name)


class EnvironmentPools:
    def __init__(self, settings: Settings, default: Executor, factory: ExecutorFactory,
                 base: Base | None = None) -> None:
        self.settings = settings
        self.default = default
        self.factory = factory
        self.base = base or Base.current()
        self.root = registry.envs_root(settings.data_dir)
        self._holds: dict[str, _Hold] = {}
        self._pools: dict[str, _Pool] = {}
        self._building: set[str] = set()
        self._build_gate = asyncio.Semaphore(1)  # one pip at a time: they share caches
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        registry.prepare_root(self.settings.data_dir)
        for name in await asyncio.to_thread(registry.sweep, self.root):
            log.info("removed %s, left behind by a build or deletion that did not end", name)
        self._reaper = asyncio.create_task(self._reap_forever())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(self._stop_pool(p) for p in pools), *self._background,
                             return_exceptions=True)
        for hold in self._holds.values():
            registry.release(hold.fd)
        self._holds.clear()

    # -- looking up ----------------------------------------------------------------------

    def find(self, name: str) -> Environment | None:
        return registry.read(self.root, name)

    def check(self, name: str) -> Environment:
        """The environment a run names; 400 if there is none."""
        env = self.find(name)
        if env is None:
            raise registry.unknown(name)
        return env

    def all(self) -> list[Environment]:
        return listing(self.root)

    def describe(self, env: Environment) -> dict[str, object]:
        return describe(env, list(self.base.sites))

    def in_use(self, name: str) -> int:
        hold = self._holds.get(name)
        return hold.count if hold else 0

    # -- using ---------------------------------------------------------------------------

    def hold(self, name: str) -> Lease:
        """Mark ``name`` in use until the lease is released; 400 if there is no such one.

        Synchronous, so that a check and a hold made in one step of the event loop cannot
        be split by a delete.
        """
        hold = self._holds.get(name)
        if hold is None:
            held = registry.hold_shared(self.root, name)
            if held is None:
                raise registry.unknown(name)
            hold = self._holds[name] = _Hold(*held)
        hold.count += 1
        return Lease(self, name, hold.env)

    def _release(self, name: str) -> None:
        hold = self._holds.get(name)
        if hold is None:  # released by ``stop`` already
            return
        hold.count -= 1
        if name in self._pools:
            self._pools[name].last_used = time.monotonic()
        if hold.count == 0:
            del self._holds[name]
            registry.release(hold.fd)

    @contextlib.asynccontextmanager
    async def executor(self, name: str | None) -> AsyncIterator[Executor]:
        """The executor for runs in ``name`` (the default one for ``None``), held meanwhile."""
        if name is None:
            yield self.default
            return
        lease = self.hold(name)  # before any await: see ``hold``
        try:
            yield await self._pool(lease.env)
        finally:
            lease.release()

    async def _pool(self, env: Environment) -> Executor:
        entry = self._pools.get(env.name)
        if entry is not None and entry.env_id != env.id:  # deleted and made again
            del self._pools[env.name]
            self._in_background(self._stop_pool(entry))
            entry = None
        if entry is None:
            entry = self._pools[env.name] = self._start_pool(env)
        entry.last_used = time.monotonic()
        try:
            await asyncio.shield(entry.ready)
        except InternalError:
            if self._pools.get(env.name) is entry:
                del self._pools[env.name]
            raise
        return entry.pool

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_pool(self, env: Environment) -> _Pool:
        pool = self.factory(str(env.python), self.settings.env_workers)
        return _Pool(env.id, pool, asyncio.ensure_future(self._start(env, pool)))

    async def _start(self, env: Environment, pool: Executor) -> None:
        # Where the pool would fall back to running workers as root, refuse instead.
        identity = worker_identity(self.settings)
        if identity and (unreachable := _unreachable(env.python)):
            raise InternalError(
                f"the worker user {identity.name!r} cannot reach environment "
                f"{env.name!r}: {unreachable} is not traversable by other users; the data "
                "folder must be mode 0711 (see docs/environments.md)")
        try:
            await pool.start()
        except Exception as e:
            await pool.stop()
            log.exception("could not start the workers of environment %r", env.name)
            raise InternalError(f"could not start the workers of environment {env.name!r}: "
                                f"{type(e).__name__}: {e}") from None
        metrics.POOLS_WARM.labels("environment").inc()
        log.info("started the pool of environment %r", env.name)

    async def _stop_pool(self, entry: _Pool) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await entry.ready
        if entry.ready.done() and not entry.ready.cancelled() \
                and entry.ready.exception() is None:
            metrics.POOLS_WARM.labels("environment").dec()
        await entry.pool.stop()

    async def _reap_forever(self) -> None:
        idle = self.settings.env_idle_timeout
        while True:
            await asyncio.sleep(min(30.0, max(0.5, idle / 4)))
            now = time.monotonic()
            for name, entry in list(self._pools.items()):
                if self.in_use(name) == 0 and now - entry.last_used >= idle \
                        and entry.ready.done():
                    del self._pools[name]
                    log.info("stopping the pool of environment %r: idle", name)
                    await self._stop_pool(entry)

    # -- creating and deleting -----------------------------------------------------------

    def check_new(self, spec: Spec) -> None:
        """Refuse now what ``create`` would refuse: bad names and packages, taken names."""
        check_spec(spec, self.root)
        if spec.name in self._building:
            raise Conflict(f"environment {spec.name!r} is being built")

    async def create(self, spec: Spec, output: list[str]) -> Environment:
        """Build ``spec`` (one build at a time), appending pip's output to ``output``."""
        self.check_new(spec)
        self._building.add(spec.name)
        try:
            async with self._build_gate:
                return await build(spec, self.root, self.base, run_as=run_as(self.settings),
                                   timeout=self.settings.env_build_timeout, log=output.append)
        finally:
            self._building.discard(spec.name)

    async def delete(self, name: str) -> None:
        """Delete ``name``; 409 while runs or jobs use it (they are never stopped for it)."""
        if (n := self.in_use(name)) > 0:
            raise Conflict(f"environment {name!r} is in use by {n} run(s) or job(s); delete it "
                           "when they have ended")
        if registry.read(self.root, name) is None:
            raise NotFound(f"no environment {name!r}")
        await asyncio.to_thread(registry.remove, self.root, name)
        entry = self._pools.pop(name, None)
        if entry is not None:
            await self._stop_pool(entry)


def run_as(settings: Settings) -> RunAs:
    """Who an environment's build checks its Python as: who its workers will run as."""
    identity = worker_identity(settings)
    return RunAs() if identity is None else RunAs(identity.name, identity.subprocess_args())


def _unreachable(python: Path) -> str | None:
    """The first folder on the way to ``python`` that other users cannot traverse."""
    for folder in reversed(python.parents):
        if not os.stat(folder).st_mode & 0o001:
            return str(folder)
    return None
