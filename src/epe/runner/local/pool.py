"""The local executor: a warm pool of one user's worker processes.

Workers are forked by the fork server of their Python environment (``host``), which
has imported numpy, pandas and matplotlib already, so a new worker costs a fork and a
task one frame each way over a pipe. Every worker of a pool serves the pool's user
alone, for its whole life, in that user's sandbox when the server can isolate
(``runner.worker.sandbox``). A pool starts with one worker and grows, up to its size,
when a task finds none idle and the server's warm bound has room (``may_grow``): a user
who makes one call at a time costs one process.
A worker that runs past its time limit, or whose task is cancelled, is killed with its
whole process group and replaced; one that dies is replaced; each is retired after
``worker_max_tasks`` tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from epe import errors
from epe.observe import metrics
from epe.runner import protocol
from epe.runner.executor import (
    TIME_LIMIT,
    CallHandler,
    ExecutorStatus,
    Rows,
    Shared,
    Task,
    TaskResult,
    Tenant,
)
from epe.runner.identity import WorkerIdentity
from epe.runner.limits import ResourceLimits, WorkerGroup, size
from epe.runner.local.exchange import Exchange
from epe.runner.local.forkserver import ForkServer, WorkerProcess
from epe.settings import Settings


@dataclass(frozen=True)
class Placement:
    """Where one pool's workers run: their fork server, and their sandbox (or, without
    one, the user they run as on the host and their own working folder); the limits
    their user's group has (``memory_limit``: bytes, all of them together)."""

    forks: ForkServer
    exchange: Exchange
    sandbox: dict[str, Any] | None
    run_as: WorkerIdentity | None
    limits: ResourceLimits
    memory_limit: int


class Host(Protocol):
    """What a pool needs of its host (``runner.local.host.LocalHost``)."""

    settings: Settings

    async def placement(self, python: str, tenant: Tenant) -> Placement: ...

log = logging.getLogger("epe.runner")


@dataclass(eq=False)  # identity, not value: workers live in sets
class _Worker:
    proc: WorkerProcess
    workdir: str | None  # on the host, when the worker has no sandbox of its own
    max_tasks: int
    group: WorkerGroup  # its place in its user's cgroup, and what the kernel counts of it
    tasks: int = 0
    retiring: bool = False  # a successor is starting; keep serving until it is ready
    retired: bool = False  # the successor is ready: never hand this one out again
    idle: bool = False  # waiting in the pool's queue to be handed out
    out_of_memory: bool = False  # once reaped: whether its user's memory limit killed it
    pid: int = field(init=False)

    def __post_init__(self) -> None:
        self.pid = self.proc.pid

    async def request(self, header: protocol.Header,
                      calls: CallHandler | None) -> tuple[protocol.Header, bytes]:
        """Send a task and read frames until its reply, answering calls on the way."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        await self._send(protocol.encode(header))
        while True:
            reply, payload = await protocol.read_async(self.proc.stdout)
            if not protocol.is_call(reply):
                return reply, payload
            answer, data = await protocol.answer_call(calls, reply, payload)
            await self._send(protocol.encode(answer, data))

    async def _send(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame)
        await self.proc.stdin.drain()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def reap(self) -> int | None:
        code = await self.proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.out_of_memory = self.group.out_of_memory()
        self.group.remove()
        return code


SPARE_ATTEMPTS = 3


class _SpareLost(Exception):
    """The spare handed a worker's request ended before it said it was ready."""


def _death(code: int | None, out_of_memory: bool) -> str:
    """Why a worker died on its own, as its metric says: its user's memory limit; a
    SIGKILL from nobody we know (the kernel's OOM killer, where no cgroup says); or a
    crash."""
    if out_of_memory or code == -signal.SIGKILL:
        return "memory"
    return "crash"


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class LocalPool:
    """An ``Executor`` backed by one user's worker processes on this machine."""

    def __init__(self, host: Host, python: str, size: int, tenant: Tenant,
                 may_grow: Callable[[], bool] | None = None) -> None:
        self.host = host
        # Asked before each worker past the first: whether the server's warm bound has
        # room for one more (``runner.pools``, which may stop an idle pool to make it).
        self.may_grow = may_grow or (lambda: True)
        self.settings = host.settings
        self.size = size
        self.python = python
        self.tenant = tenant
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._busy: set[_Worker] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._placement: Placement | None = None
        self._started = False
        self._counts = {"idle": 0, "busy": 0}  # live workers; the gauges sum every pool's
        self._pending = 0  # workers being started
        self._exchange: Exchange | None = None

    @property
    def capacity(self) -> int:
        return self.size

    @property
    def warm(self) -> int:
        return max(1, self._counts["idle"] + self._counts["busy"] + self._pending)

    def share(self, rows: Rows) -> AbstractAsyncContextManager[Shared]:
        assert self._exchange is not None, "the pool is not started"
        return self._exchange.share(rows)

    def adopt(self, path: str, rows: int) -> AbstractAsyncContextManager[Shared]:
        """An Arrow file already on this machine, shared with the workers as it is
        (``Exchange.adopt``)."""
        assert self._exchange is not None, "the pool is not started"
        return self._exchange.adopt(path, rows)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._placement = await self.host.placement(self.python, self.tenant)
        self._exchange = self._placement.exchange
        # One worker before the first run; more when runs wait for one (``_acquire``).
        self._offer(await self._spawn())
        self._started = True
        log.info("started a pool for %s: 1 worker, up to %d", self.tenant.name, self.size)

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self._background):
            t.cancel()
        doomed = list(self._busy)
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            if worker.idle:
                worker.idle = False
                self._count("idle", -1)
            doomed.append(worker)
        for w in doomed:
            w.kill()
        await asyncio.gather(*(w.reap() for w in doomed))
        if self._exchange is not None:
            self._exchange.close()
    # -- running -----------------------------------------------------------------

    async def run(self, task: Task, timeout: float) -> TaskResult:
        worker = await self._acquire()
        self._busy.add(worker)
        self._count("busy", 1)
        worker.group.begin()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps the request in a
        # task of its own, a cost every sync run paid.
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                reply, payload = await worker.request(protocol.task_header(task), task.calls)
        except TimeoutError:
            self._discard(worker, "timeout")
            raise errors.TimeLimitExceeded(
                f"the function ran longer than its time limit of {timeout:g} s and was "
                "stopped") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            code = await self._bury(worker)
            metrics.WORKERS_KILLED.labels(_death(code, worker.out_of_memory)).inc()
            if worker.out_of_memory:
                raise errors.WorkerDied(self._memory_message()) from None
            raise errors.WorkerDied(
                f"the worker process running the function died ({_describe_exit(code)}); "
                "a crash in native code, os._exit() or running out of memory can cause "
                "this") from None
        except asyncio.CancelledError as e:  # the run's time limit, or the caller is gone
            # When the run's limit and this task's come together, the second cancellation
            # can wipe the first one's message: this task's expired deadline says it too.
            timed_out = TIME_LIMIT in e.args or deadline.expired()
            self._discard(worker, "timeout" if timed_out else "cancelled")
            raise
        except BaseException:  # our bug
            self._discard(worker, "error")
            raise
        usage = worker.group.usage()
        self._release(worker)
        return protocol.task_result(reply, payload, usage)

    def _memory_message(self) -> str:
        assert self._placement is not None
        limit = self._placement.memory_limit
        return (f"the function's worker was killed for memory: the workers of "
                f"{self.tenant.name} on this machine together reached their memory limit of "
                f"{size(limit)} ({limit} bytes: EPE_USER_MEMORY_LIMIT, or the user's own "
                f"limit); use less memory at once, or ask an admin to raise it (epe user "
                f"limits {self.tenant.name} --memory BYTES)")

    def status(self) -> ExecutorStatus:
        idle, busy = self._counts["idle"], self._counts["busy"]
        ready = self._started and not self._stopping and idle + busy > 0
        return ExecutorStatus(ready, {"workers": idle + busy, "idle": idle, "busy": busy,
                                      "size": self.size})

    # -- worker bookkeeping ------------------------------------------------------

    def _count(self, state: str, change: int) -> None:
        self._counts[state] += change
        metrics.series(metrics.WORKERS, state).inc(change)

    def _offer(self, worker: _Worker) -> None:
        worker.idle = True
        self._count("idle", 1)
        self._idle.put_nowait(worker)

    async def _acquire(self) -> _Worker:
        if self._idle.empty() and self._counts["idle"] + self._counts["busy"] + \
                self._pending < self.size and self.may_grow():
            self._add_worker()  # grow: this task waits for a worker
        # Otherwise it waits for one of the pool's own workers to be free.
        metrics.TASKS_WAITING.inc()
        try:
            while True:
                worker = await self._idle.get()
                if not worker.retired:
                    worker.idle = False
                    self._count("idle", -1)
                    return worker
        finally:
            metrics.TASKS_WAITING.dec()

    def _release(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        self._count("busy", -1)
        worker.tasks += 1
        if worker.retired:
            self._retire(worker)
            return
        if worker.tasks >= worker.max_tasks and not worker.retiring:
            # Recycle without a gap: the old worker serves until its successor has
            # imported its libraries, so no caller waits for a cold start.
            worker.retiring = True
            self._in_background(self._succeed(worker))
        self._offer(worker)

    async def _succeed(self, worker: _Worker) -> None:
        successor = await self._spawn_retrying()
        if successor is None:
            return
        worker.retired = True
        self._offer(successor)
        metrics.WORKERS_RECYCLED.inc()
        log.info("recycled worker %d after %d tasks", worker.pid, worker.tasks)
        if worker.idle:  # it will be skipped when dequeued
            worker.idle = False
            self._count("idle", -1)
        if worker not in self._busy:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._in_background(worker.reap())

    def _discard(self, worker: _Worker, reason: str | None = None) -> None:
        """Kill ``worker`` (counted under ``reason``) and start its replacement."""
        if worker in self._busy:
            self._busy.discard(worker)
            self._count("busy", -1)
        if reason is not None:
            metrics.WORKERS_KILLED.labels(reason).inc()
        worker.kill()
        if not worker.retiring:  # a retiring worker's successor is already on its way
            self._add_worker()
        self._in_background(worker.reap())

    async def _bury(self, worker: _Worker) -> int | None:
        """A worker whose pipe closed: its exit code once it has ended (the fork server
        reports it a moment later), and its successor."""
        if worker in self._busy:
            self._busy.discard(worker)
            self._count("busy", -1)
        if not worker.retiring:
            self._add_worker()
        try:
            await asyncio.wait_for(worker.proc.wait(), 2.0)
        except TimeoutError:
            worker.kill()  # its pipe closed but it lingers: not a worker any more
        return await worker.reap()

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _add_worker(self) -> None:
        """Start one more worker, counted as starting from now (``_acquire`` grows the
        pool only while the workers alive and starting are fewer than its size)."""
        self._pending += 1
        self._in_background(self._replace())

    async def _replace(self) -> None:
        try:
            successor = await self._spawn_retrying()
        finally:
            self._pending -= 1
        if successor is not None:
            self._offer(successor)

    async def _spawn_retrying(self) -> _Worker | None:
        """A new worker, retrying with back-off; ``None`` if the pool is stopping."""
        delay = 0.5
        while not self._stopping:
            try:
                return await self._spawn()
            except Exception:
                log.exception("could not start a worker; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        return None

    async def _spawn(self) -> _Worker:
        # A spare that died just as it was handed the request (killed from outside)
        # never answers: the next one, or a fork, does.
        for _ in range(SPARE_ATTEMPTS - 1):
            try:
                return await self._spawn_once()
            except _SpareLost:
                log.warning("a spare worker ended before it was ready as %s's worker; "
                            "asking for another", self.tenant.name)
        return await self._spawn_once()

    async def _spawn_once(self) -> _Worker:
        assert self._placement is not None
        placement = self._placement
        workdir = None if placement.sandbox is not None else self._make_workdir(placement)
        limits: dict[str, Any] = {"memory": self.settings.worker_memory_limit,
                  "processes": self.settings.worker_max_processes,
                  "open_files": self.settings.worker_max_open_files,
                  "output_limit": self.settings.output_limit,
                  "graphics_dpi": self.settings.graphics_dpi,
                  "graphics_size": [self.settings.graphics_width, self.settings.graphics_height]}
        group = placement.limits.worker(self.tenant.name)
        if placement.limits.kind != "rlimit":  # the user's cgroup bounds them instead
            limits.update(memory=None, processes=None)
        started = time.monotonic()
        try:
            proc = await placement.forks.spawn({
                "limits": limits, "sandbox": placement.sandbox, "workdir": workdir,
                "cgroups": group.join,
                "run_as": None if placement.run_as is None else [placement.run_as.uid,
                                                                 placement.run_as.gid]})
        except BaseException:
            group.remove()
            raise
        group.started(proc.pid, sandboxed=placement.sandbox is not None)
        # Up to 20% fewer tasks at random, so workers started together (the whole
        # pool, at start) do not all retire, and make callers wait, at once.
        cap = self.settings.worker_max_tasks
        worker = _Worker(proc, workdir, max(1, cap - random.randrange(cap // 5 + 1)), group)
        try:
            ready, _ = await asyncio.wait_for(protocol.read_async(proc.stdout),
                                              self.settings.worker_start_timeout)
        except BaseException as e:
            worker.kill()
            await worker.reap()
            if proc.spare and isinstance(e, asyncio.IncompleteReadError):
                raise _SpareLost from e
            raise
        if not ready.get("ready"):
            raise errors.InternalError(f"a worker started badly: {ready}")
        metrics.WORKERS_STARTED.inc()
        if proc.spare:
            metrics.WORKERS_FROM_SPARES.inc()
        metrics.WORKER_START_SECONDS.observe(time.monotonic() - started)
        return worker

    @staticmethod
    def _make_workdir(placement: Placement) -> str:
        workdir = tempfile.mkdtemp(prefix="epe-worker-")
        if placement.run_as is not None:
            os.chown(workdir, placement.run_as.uid, placement.run_as.gid)
        return workdir
