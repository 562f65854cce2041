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
import pwd
import random
import shutil
import signal
import sys
import tempfile
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson

from epe import errors
from epe.core.assemble import Fragment
from epe.runner import protocol
from epe.runner.exchange import Exchange
from epe.runner.executor import CallHandler, Rows, Shared, Task, TaskFailed, TaskResult
from epe.settings import Settings

log = logging.getLogger("epe.runner")

# The errors a worker may report by name; anything else is our bug.
_WORKER_ERRORS: dict[str, type[errors.EpeError]] = {
    cls.__name__: cls for cls in (errors.ScriptFailed, errors.ScriptInvalid,
                                  errors.ResultNotSerializable, errors.OutputTooLarge,
                                  errors.InvalidRequest)
}


def _failure(reply: protocol.Header) -> TaskFailed:
    kind = _WORKER_ERRORS.get(reply.get("error", ""), errors.InternalError)
    error = kind(reply.get("message", "the function failed"),
                 traceback=reply.get("traceback"), stdout=reply.get("stdout") or None,
                 stderr=reply.get("stderr") or None)
    return TaskFailed(error, reply.get("unit"))


@dataclass(eq=False)  # identity, not value: workers live in sets
class _Worker:
    proc: asyncio.subprocess.Process
    workdir: str
    max_tasks: int
    tasks: int = 0
    retiring: bool = False  # a successor is starting; keep serving until it is ready
    retired: bool = False  # the successor is ready: never hand this one out again
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
            if "call" not in reply:
                return reply, payload
            answer, data = await _answer(calls, reply, payload)
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


async def _answer(calls: CallHandler | None, call: protocol.Header,
                  payload: bytes) -> tuple[protocol.Header, bytes]:
    """A worker's call answered, or its refusal as an error reply (never a crash)."""
    try:
        if calls is None:
            raise errors.InvalidRequest("this task cannot call back to the server")
        answer, data = await calls(call, payload)
        return {"ok": True, **answer}, data
    except errors.EpeError as e:
        return {"ok": False, "error": type(e).__name__, "message": e.message}, b""
    except Exception:
        log.exception("answering a worker's %r call failed", call.get("call"))
        return {"ok": False, "error": "InternalError",
                "message": "the server failed to answer this call; this is a bug in epe"}, b""


def _world_reachable(path: str) -> bool:
    """Whether any user may traverse to ``path`` and read or run it: every folder on
    the way, both as written (a venv's own) and after symlinks are resolved."""
    def chain(start: str) -> list[str]:
        parents = [start]
        while (parent := os.path.dirname(parents[-1])) != parents[-1]:
            parents.append(parent)
        return parents

    on_the_way = set(chain(os.path.abspath(path))) | set(chain(os.path.realpath(path)))
    try:
        return all(os.stat(p).st_mode & 0o005 for p in on_the_way)
    except OSError:
        return False


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
        self._identity = self._worker_identity()
        self._exchange: Exchange | None = None

    @property
    def capacity(self) -> int:
        return self.size

    def share(self, rows: Rows) -> AbstractAsyncContextManager[Shared]:
        assert self._exchange is not None, "the pool is not started"
        return self._exchange.share(rows)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._exchange = Exchange(self._identity.get("group"))
        spawning = asyncio.gather(*(self._spawn() for _ in range(self.size)))
        _, workers = await asyncio.gather(asyncio.to_thread(self._exchange.warm_up), spawning)
        for w in workers:
            self._idle.put_nowait(w)
        log.info("started %d workers", self.size)

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self._background):
            t.cancel()
        doomed = list(self._busy)
        while not self._idle.empty():
            doomed.append(self._idle.get_nowait())
        for w in doomed:
            w.kill()
        await asyncio.gather(*(w.reap() for w in doomed))
        if self._exchange is not None:
            self._exchange.close()

    # -- running -----------------------------------------------------------------

    async def run(self, task: Task, timeout: float) -> TaskResult:
        worker = await self._acquire()
        self._busy.add(worker)
        try:
            reply, payload = await asyncio.wait_for(
                worker.request(self._header(task), task.calls), timeout)
        except TimeoutError:
            self._discard(worker)
            raise errors.TimeLimitExceeded(
                f"the function ran longer than its time limit of {timeout:g} s and was "
                "stopped") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            code = await self._discard(worker, wait=True)
            raise errors.WorkerDied(
                f"the worker process running the function died ({_describe_exit(code)}); "
                "a crash in native code, os._exit() or running out of memory can cause "
                "this") from None
        except BaseException:  # cancelled (client gone, job cancelled) or our bug
            self._discard(worker)
            raise
        self._release(worker)
        return self._result(reply, payload)

    @staticmethod
    def _header(task: Task) -> protocol.Header:
        return {"kind": task.kind, "source": task.source, "script_key": task.script_key,
                "kwargs": task.kwargs, "graphics": task.graphics, "units": task.units,
                "input": task.input_ref, "input_type": task.input_type,
                "pickled_kwargs": task.pickled_kwargs, "result_format": task.result_format}

    @staticmethod
    def _result(reply: protocol.Header, payload: bytes) -> TaskResult:
        if not reply.get("ok"):
            raise _failure(reply)
        fragments, offset = [], 0
        for size, is_frame in zip(reply["sizes"], reply["frames"], strict=True):
            fragments.append(Fragment(payload[offset:offset + size], is_frame))
            offset += size
        return TaskResult(fragments, stdout=reply.get("stdout", ""),
                          stderr=reply.get("stderr", ""))

    # -- worker bookkeeping ------------------------------------------------------

    async def _acquire(self) -> _Worker:
        while True:
            worker = await self._idle.get()
            if not worker.retired:
                return worker

    def _release(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        worker.tasks += 1
        if worker.retired:
            self._retire(worker)
            return
        if worker.tasks >= worker.max_tasks and not worker.retiring:
            # Recycle without a gap: the old worker serves until its successor has
            # imported its libraries, so no caller waits for a cold start.
            worker.retiring = True
            self._in_background(self._succeed(worker))
        self._idle.put_nowait(worker)

    async def _succeed(self, worker: _Worker) -> None:
        successor = await self._spawn_retrying()
        if successor is None:
            return
        worker.retired = True
        self._idle.put_nowait(successor)
        log.info("recycled worker %d after %d tasks", worker.pid, worker.tasks)
        if worker not in self._busy:
            self._retire(worker)  # idle: it will be skipped when dequeued

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._in_background(worker.reap())

    def _discard(self, worker: _Worker, wait: bool = False) -> Any:
        """Kill ``worker`` and start its replacement; awaitable for the exit code."""
        self._busy.discard(worker)
        worker.kill()
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
            self._idle.put_nowait(successor)

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
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "epe.runner.worker", orjson.dumps(limits).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=workdir, env=self._environment(workdir), start_new_session=True,
            limit=2**20, **self._identity)
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
        return worker

    def _make_workdir(self) -> str:
        workdir = tempfile.mkdtemp(prefix="epe-worker-")
        if self._identity:
            os.chown(workdir, self._identity["user"], self._identity["group"])
        return workdir

    def _worker_identity(self) -> dict[str, Any]:
        """Who workers run as: an unprivileged user when we are root."""
        if os.geteuid() != 0 or not self.settings.worker_user:
            return {}
        try:
            entry = pwd.getpwnam(self.settings.worker_user)
        except KeyError:
            log.warning("workers run as the server's user: EPE_WORKER_USER %r does not exist",
                        self.settings.worker_user)
            return {}
        unreachable = [p for p in (self.python, sys.base_prefix) if not _world_reachable(p)]
        if unreachable:
            log.warning("workers run as root: the worker user %r cannot reach %s; build the "
                        "venv on a Python every user can execute (see docs/security.md)",
                        self.settings.worker_user, ", ".join(unreachable))
            return {}
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

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
