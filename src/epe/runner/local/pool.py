"""The local executor: a warm pool of worker processes.

Workers are started ahead of need and already hold numpy, pandas and
matplotlib, so a task costs one frame each way over a pipe. A worker that runs
past its time limit, or whose task is cancelled, is killed with its whole
process group and replaced; one that dies is replaced; each is retired after
``worker_max_tasks`` tasks. When the server runs as root, workers run as an
unprivileged user in their own temporary folder, so they cannot read the data
folder (the metadata database, the token signing key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson

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
)
from epe.runner.identity import WorkerIdentity, subprocess_args, unreachable, worker_identity
from epe.runner.local.exchange import Exchange
from epe.settings import Settings

log = logging.getLogger("epe.runner")

@dataclass(eq=False)  # identity, not value: workers live in sets
class _Worker:
    proc: asyncio.subprocess.Process
    workdir: str
    max_tasks: int
    tasks: int = 0
    retiring: bool = False  # a successor is starting; keep serving until it is ready
    retired: bool = False  # the successor is ready: never hand this one out again
    idle: bool = False  # waiting in the pool's queue to be handed out
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
        with contextlib.suppress(ProcessLookupError):
            await self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode


def _death(code: int | None) -> str:
    """Why a worker died on its own, as its metric says: the kernel's OOM killer (or a
    memory cgroup) sends SIGKILL; anything else is a crash."""
    return "memory" if code == -signal.SIGKILL else "crash"


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class LocalPool:
    """An ``Executor`` backed by worker processes on this machine."""

    def __init__(self, settings: Settings, size: int | None = None,
                 python: str = sys.executable) -> None:
        self.settings = settings
        self.size = size or settings.workers
        self.python = python
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._busy: set[_Worker] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._started = False
        self._counts = {"idle": 0, "busy": 0}  # live workers; the gauges sum every pool's
        self._identity = self._worker_identity(settings, python)
        self._exchange: Exchange | None = None

    @property
    def capacity(self) -> int:
        return self.size

    def share(self, rows: Rows) -> AbstractAsyncContextManager[Shared]:
        assert self._exchange is not None, "the pool is not started"
        return self._exchange.share(rows)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._exchange = Exchange(None if self._identity is None else self._identity.gid)
        spawning = asyncio.gather(*(self._spawn() for _ in range(self.size)))
        _, workers = await asyncio.gather(asyncio.to_thread(self._exchange.warm_up), spawning)
        for w in workers:
            self._offer(w)
        self._started = True
        log.info("started %d workers", self.size)

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
        try:
            reply, payload = await asyncio.wait_for(
                worker.request(protocol.task_header(task), task.calls), timeout)
        except TimeoutError:
            self._discard(worker, "timeout")
            raise errors.TimeLimitExceeded(
                f"the function ran longer than its time limit of {timeout:g} s and was "
                "stopped") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            code = await self._discard(worker, wait=True)
            metrics.WORKERS_KILLED.labels(_death(code)).inc()
            raise errors.WorkerDied(
                f"the worker process running the function died ({_describe_exit(code)}); "
                "a crash in native code, os._exit() or running out of memory can cause "
                "this") from None
        except asyncio.CancelledError as e:  # the run's time limit, or the caller is gone
            self._discard(worker, "timeout" if TIME_LIMIT in e.args else "cancelled")
            raise
        except BaseException:  # our bug
            self._discard(worker, "error")
            raise
        self._release(worker)
        return protocol.task_result(reply, payload)

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

    def _discard(self, worker: _Worker, reason: str | None = None, wait: bool = False) -> Any:
        """Kill ``worker`` (counted under ``reason``) and start its replacement; awaitable
        for the exit code."""
        if worker in self._busy:
            self._busy.discard(worker)
            self._count("busy", -1)
        if reason is not None:
            metrics.WORKERS_KILLED.labels(reason).inc()
        worker.kill()
        if not worker.retiring:  # a retiring worker's successor is already on its way
            self._in_background(self._replace())
        reaped = asyncio.ensure_future(worker.reap())
        if wait:
            return reaped
        return None

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _replace(self) -> None:
        successor = await self._spawn_retrying()
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
        workdir = self._make_workdir()
        limits = {"memory": self.settings.worker_memory_limit,
                  "processes": self.settings.worker_max_processes,
                  "open_files": self.settings.worker_max_open_files,
                  "output_limit": self.settings.output_limit, "parent": os.getpid(),
                  "graphics_dpi": self.settings.graphics_dpi,
                  "graphics_size": [self.settings.graphics_width, self.settings.graphics_height]}
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "epe.runner.worker", orjson.dumps(limits).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=workdir, env=self._environment(workdir), start_new_session=True,
            limit=2**20, **subprocess_args(self._identity))
        # Up to 20% fewer tasks at random, so workers started together (the whole
        # pool, at start) do not all retire, and make callers wait, at once.
        cap = self.settings.worker_max_tasks
        worker = _Worker(proc, workdir, max(1, cap - random.randrange(cap // 5 + 1)))
        try:
            assert proc.stdout is not None
            ready, _ = await asyncio.wait_for(protocol.read_async(proc.stdout),
                                              self.settings.worker_start_timeout)
        except BaseException:
            worker.kill()
            await worker.reap()
            raise
        if not ready.get("ready"):
            raise errors.InternalError(f"a worker started badly: {ready}")
        metrics.WORKERS_STARTED.inc()
        metrics.WORKER_START_SECONDS.observe(time.monotonic() - started)
        return worker

    def _make_workdir(self) -> str:
        workdir = tempfile.mkdtemp(prefix="epe-worker-")
        if self._identity is not None:
            os.chown(workdir, self._identity.uid, self._identity.gid)
        return workdir

    @staticmethod
    def _worker_identity(settings: Settings, python: str) -> WorkerIdentity | None:
        """Who this pool's workers run as: the worker user, if it can run ``python``."""
        identity = worker_identity(settings)
        if identity is None:
            return None
        if blocked := unreachable([python, sys.base_prefix]):
            log.warning("workers run as root: the worker user %r cannot reach %s; build the "
                        "venv on a Python every user can execute (see docs/security.md)",
                        identity.name, ", ".join(blocked))
            return None
        return identity

    @staticmethod
    def _environment(workdir: str) -> dict[str, str]:
        # Built from nothing: no server secret or EPE_ setting reaches user code.
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": workdir,
            # One thread per worker: parallelism comes from workers, and more
            # threads would only fight over the same cores.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
