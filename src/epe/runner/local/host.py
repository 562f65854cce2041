"""This machine as a place to run users' code: fork servers, sandboxes, identities.

``LocalHost`` starts one fork server per Python environment (the default one at
start, a named environment's on first use), decides once whether workers can be
sandboxed (``runner.worker.sandbox.probe``, run by the default fork server), and
makes the ``LocalPool`` of one user in one environment. Where it cannot sandbox it
says why, loudly, and ``/health`` reports ``tenantIsolation: false``.

When it can, each epe user's workers run as a uid of their own, given by the
services (``Tenant.uid``, allocated from ``EPE_WORKER_UID_BASE`` and never reused), in
their own namespaces; where it cannot, as ``EPE_WORKER_USER`` (root servers) or as the
server's user.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from epe.errors import InternalError, InvalidSetting
from epe.runner.executor import Tenant
from epe.runner.identity import WorkerIdentity, unreachable, worker_identity
from epe.runner.limits import ResourceLimits, UserLimits, choose, size, user_memory_limit
from epe.runner.local.exchange import Exchange, remove_stale
from epe.runner.local.forkserver import (
    ForkServer,
    Launched,
    configuration,
    environment,
    matplotlib_folder,
)
from epe.runner.local.pool import LocalPool, Placement
from epe.settings import Settings

log = logging.getLogger("epe.runner")


class LocalHost:
    def __init__(self, settings: Settings, launched: Launched | None = None) -> None:
        """``launched``: the default fork server, if it was launched already (it is
        adopted at ``start``, and stopped with the host)."""
        self.settings = settings
        self._launched = launched
        self.isolated = False
        self.why_not_isolated = "not started"
        self._servers: dict[str, asyncio.Future[ForkServer]] = {}
        self._fallback: WorkerIdentity | None = None
        self._mpl_dir = ""
        self.limits: ResourceLimits | None = None
        self._limited: dict[str, UserLimits] = {}  # the users' groups made, with these limits
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------

    @property
    def resource_limits(self) -> str:
        """``cgroup2``, ``cgroup1`` or ``rlimit`` (``/health`` says)."""
        return "not started" if self.limits is None else self.limits.kind

    async def start(self) -> None:
        self.limits = await asyncio.to_thread(choose, self.settings)
        self._say_limits(self.limits)
        if self._launched is not None:
            self._mpl_dir = self._launched.mpl_dir
        else:
            self._mpl_dir = matplotlib_folder()
        default = await self.fork_server(sys.executable)
        refused = default.isolation_refused
        self.isolated = refused is None
        self.why_not_isolated = refused or ""
        if not self.isolated:
            self._fallback = self._fallback_identity()
            log.warning("TENANTS ARE NOT ISOLATED: workers of different users share a user "
                        "id and see each other's processes and the network (%s); run the "
                        "server as root on Linux to isolate them (docs/security.md)", refused)
            if self.settings.require_isolation:
                raise InvalidSetting(f"EPE_REQUIRE_ISOLATION is set, but workers cannot be "
                                     f"isolated here: {refused}")
        if stale := remove_stale():
            log.info("removed %d input folders that stopped servers left in shared memory",
                     stale)
        Exchange(None).warm_up_and_close()

    async def stop(self) -> None:
        self._stopping = True
        servers = [f for f in self._servers.values() if f.done() and not f.exception()]
        for future in servers:
            future.result().stop()
        self._servers.clear()
        if self._launched is not None:  # never adopted: the host did not start
            self._launched.discard()
            self._launched = None
        shutil.rmtree(self._mpl_dir, ignore_errors=True)
        if self.limits is not None:
            await asyncio.to_thread(self.limits.close)

    def status(self) -> tuple[bool, dict[str, Any]]:
        """Ready while the default environment's fork server runs."""
        future = self._servers.get(sys.executable)
        alive = future is not None and future.done() and future.exception() is None \
            and future.result().alive
        return alive, {"isolated": self.isolated, "forkServers": len(self._servers),
                       "resourceLimits": self.resource_limits}

    # -- making pools ------------------------------------------------------------------

    def pool(self, python: str, size: int, tenant: Tenant,
             may_grow: Callable[[], bool] | None = None) -> LocalPool:
        return LocalPool(self, python, size, tenant, may_grow)

    async def fork_server(self, python: str) -> ForkServer:
        """The fork server of ``python``'s environment, started on first need."""
        future = self._servers.get(python)
        if future is None or (future.done() and future.exception() is not None):
            future = self._servers[python] = asyncio.ensure_future(self._start_server(python))
        return await asyncio.shield(future)

    def stop_fork_server(self, python: str) -> None:
        """Stop an environment's fork server (its environment is idle or deleted)."""
        future = self._servers.pop(python, None)
        if future is not None and future.done() and future.exception() is None:
            future.result().stop()

    async def expect(self, tenant: Tenant) -> None:
        """``tenant`` signed in: make their groups now, so that their first run on this
        machine does not wait for them (a cgroup's making is most of what cgroups add to
        a first run: docs/benchmarks.md)."""
        if self.limits is not None and self.limits.kind != "rlimit" and not self._stopping:
            self._limit(tenant)  # (stopping: its groups would outlive their removal)

    async def placement(self, python: str, tenant: Tenant) -> Placement:
        forks = await self.fork_server(python)
        memory = self._limit(tenant)
        assert self.limits is not None, "the host is not started"
        if self.isolated:
            if tenant.uid is None:
                raise InternalError(f"no worker uid was given for {tenant.name}")
            exchange = Exchange(tenant.uid)
            return Placement(forks, exchange, self._sandbox(python, tenant.uid, exchange),
                             None, self.limits, memory)
        exchange = Exchange(None if self._fallback is None else self._fallback.gid)
        return Placement(forks, exchange, None, self._fallback, self.limits, memory)

    # -- details -----------------------------------------------------------------------

    def _limit(self, tenant: Tenant) -> int:
        """Make ``tenant``'s group, or set its limits anew if they changed; the bytes
        of memory their workers may hold together. A group another server's sweep
        removed meanwhile is made again with its worker (``ResourceLimits.worker``)."""
        assert self.limits is not None, "the host is not started"
        memory = tenant.memory_limit or user_memory_limit(self.settings)
        wanted = UserLimits(memory, self.settings.worker_max_processes)
        if self._limited.get(tenant.name) == wanted:
            return memory
        try:
            self.limits.user(tenant.name, wanted)
        except OSError as e:  # e.g. lowered below what the user's workers hold now
            log.warning("could not set the limits of %s's group: %s; it keeps those it had",
                        tenant.name, e)
        else:
            self._limited[tenant.name] = wanted
        return memory

    def _say_limits(self, limits: ResourceLimits) -> None:
        if limits.kind != "rlimit":
            log.info("resource limits: %s: each user's workers in a group of their own under "
                     "%s (memory %s a user unless set otherwise, equal CPU weight, at most %d "
                     "processes)", limits.kind, limits.where,
                     size(user_memory_limit(self.settings)), self.settings.worker_max_processes)
            return
        log.warning("resource limits: rlimit: no cgroup can be used here (%s); each worker's "
                    "address space is limited to %s (EPE_WORKER_MEMORY_LIMIT), nothing bounds "
                    "a user's workers together and users share the CPU by their busy workers "
                    "(docs/operations.md#resource-limits)", limits.where,
                    size(self.settings.worker_memory_limit))

    async def _start_server(self, python: str) -> ForkServer:
        if self._launched is not None and python == self._launched.server.python:
            server, self._launched = self._launched.server, None
        else:
            server = ForkServer(python, environment(self._mpl_dir),
                                configuration(self.settings, python),
                                self.settings.worker_start_timeout)
        try:
            await server.start()
        except Exception as e:
            raise InternalError(f"could not start the fork server of {python}: "
                                f"{type(e).__name__}: {e}") from None
        log.info("fork server of %s started", python)
        return server

    def _sandbox(self, python: str, uid: int, exchange: Exchange) -> dict[str, Any]:
        network = self.settings.worker_network == "allow"
        return {"uid": uid, "gid": uid, "data_dir": str(self.settings.data_dir.absolute()),
                "exchange": exchange.dir, "reach": _reach(python), "network": network,
                "tmp_size": self.settings.worker_tmp_size}

    def _fallback_identity(self) -> WorkerIdentity | None:
        identity = worker_identity(self.settings)
        if identity is not None and (blocked := unreachable([sys.executable,
                                                             sys.base_prefix])):
            log.warning("workers run as root: the worker user %r cannot reach %s; build the "
                        "venv on a Python every user can execute (see docs/security.md)",
                        identity.name, ", ".join(blocked))
            return None
        return identity


@functools.cache  # resolving every path costs more than the rest of a pool's start
def _reach(python: str) -> list[str]:
    """The folders a worker of ``python`` reads: the environment, its base Python, and
    what the server's ``sys.path`` holds (the venv's site-packages, the project)."""
    env_root = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    found = {env_root, os.path.realpath(env_root), sys.prefix, sys.base_prefix,
             os.path.realpath(sys.prefix), os.path.dirname(os.path.realpath(sys.executable))}
    found |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    return sorted(p for p in found if os.path.isdir(p) and p != "/")
