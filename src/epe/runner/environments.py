"""Named environments as runs use them: looked up, held while in use, built, deleted.

A run naming an environment gets the pool of its user in that environment
(``runner.pools``), whose workers start from that environment's Python. While a run
or a job uses an environment it holds a *lease*: a shared lock on the environment's
``env.lock`` (see ``epe.envs.registry``), so neither ``DELETE /envs/{name}`` nor
``epe env delete`` can take it away underneath (they answer 409 instead).
Environments are read from disk on every lookup, so one ``epe env create`` made while
the server runs is found at once, and one deleted and made again under the same name
gets fresh pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
from epe.errors import Conflict, NotFound
from epe.runner.executor import Executor, Tenant
from epe.runner.identity import worker_identity
from epe.runner.pools import Backend, PoolKey, Pools
from epe.settings import Settings

log = logging.getLogger("epe.envs")


@dataclass
class _Hold:
    fd: int
    env: Environment
    count: int = 0


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
    def __init__(self, settings: Settings, backend: Backend, base: Base | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self.pools = Pools(settings, backend)
        self.base = base or Base.current()
        self.root = registry.envs_root(settings.data_dir)
        self._holds: dict[str, _Hold] = {}
        self._building: set[str] = set()
        self._build_gate = asyncio.Semaphore(1)  # one pip at a time: they share caches

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        registry.prepare_root(self.settings.data_dir)
        for name in await asyncio.to_thread(registry.sweep, self.root):
            log.info("removed %s, left behind by a build or deletion that did not end", name)
        await self.pools.start()

    async def stop(self) -> None:
        await self.pools.stop()
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
        if hold.count == 0:
            del self._holds[name]
            registry.release(hold.fd)

    @contextlib.asynccontextmanager
    async def executor(self, name: str | None, tenant: Tenant) -> AsyncIterator[Executor]:
        """The pool of ``tenant`` in environment ``name`` (the server's own for ``None``),
        the environment held meanwhile."""
        if name is None:
            async with self.pools.use(PoolKey(None, tenant.name), sys.executable, "",
                                      self.settings.workers, tenant) as executor:
                yield executor
            return
        lease = self.hold(name)  # before any await: see ``hold``
        try:
            env = lease.env
            async with self.pools.use(PoolKey(name, tenant.name), str(env.python), env.id,
                                      self.settings.env_workers, tenant) as executor:
                yield executor
        finally:
            lease.release()

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
                return await build(spec, self.root, self.base,
                                   run_as=run_as(self.settings, self.backend.isolated),
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
        await asyncio.gather(*self.pools.stop_environment(name), return_exceptions=True)


def run_as(settings: Settings, isolated: bool) -> RunAs:
    """Who an environment's build checks its Python as: who its workers will run as
    when users are not isolated; the server's user when they are, since a sandboxed
    worker is given read access to the environment whatever the folders above it."""
    identity = None if isolated else worker_identity(settings)
    return RunAs() if identity is None else RunAs(identity.name, identity.subprocess_args())
