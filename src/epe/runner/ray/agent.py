"""The node's end: one Ray actor per node, running the local pool's machinery there.

A ``NodeAgent`` is what the bridge (``runner.ray.bridge``) places on every node of
the cluster. It is a ``runner.local.host.LocalHost`` of its own: a fork server per
Python environment, the isolation probe, and a ``LocalPool`` per user and
environment, so a function on a node runs in the same sandbox, under the same
limits, with the same time limit, kill and capture as on the server's machine.

What it is asked and answers is plain data (JSON-able headers and bytes, as a
worker's frames are), so that nothing of the server's classes crosses the cluster:
a task arrives as ``protocol.task_header``'s header; its input, once per node and
user, as a memory-mapped Arrow file (``runner.local.exchange``) for that user's
workers to map: on the server's own node the server's file itself, linked; on
another node a Ray object reference, fetched and written; calls the function
makes back to the server (``oml.ds.*``, ``oml.grant``) leave ``run``/``resume`` as
events and their answers come back through ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any

from epe import errors
from epe.core.operations import Calling
from epe.runner.executor import InputRef, Shared, Task, TaskFailed, TaskResult, Tenant, Usage
from epe.runner.local.host import LocalHost
from epe.runner.local.pool import LocalPool
from epe.settings import Settings

log = logging.getLogger("epe.runner")

# What ``run`` and ``resume`` hand back: ("call", header, payload) for a call the
# function makes, or ("done", reply, payload) with the worker's reply as
# ``protocol.task_result`` reads it (``raised`` naming an error of the pool's own:
# time limit, a dead worker).
Event = tuple[str, dict[str, Any], bytes]

_ERRORS = {cls.__name__: cls for cls in errors.all_errors()}


class FileUnreachable(Exception):
    """The server's input file cannot be shared on this node (see ``Exchange.adopt``)."""


@dataclass(frozen=True)
class PoolSpec:
    """One user's pool in one environment, as the server names it."""

    id: str
    python: str
    size: int
    user: str
    uid: int | None
    memory: int | None = None  # the user's memory limit on each node (None: the setting)

    @classmethod
    def of(cls, fields: dict[str, Any]) -> PoolSpec:
        return cls(str(fields["id"]), str(fields["python"]), int(fields["size"]),
                   str(fields["user"]), fields.get("uid"), fields.get("memory"))


@dataclass(frozen=True)
class _Held:
    shared: Shared
    stack: contextlib.AsyncExitStack  # closing it removes the file


async def _release(future: asyncio.Future[_Held]) -> None:
    """Remove an input's file, now or (still being written) once it is written."""
    if not future.done():
        future.add_done_callback(lambda f: asyncio.ensure_future(_release(f)))
    elif not future.cancelled() and future.exception() is None:
        await future.result().stack.aclose()


@dataclass(eq=False)
class _Running:
    """A task under way on this node, and the events its caller has not read yet."""

    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    answer: asyncio.Future[tuple[dict[str, Any], bytes]] | None = None
    job: asyncio.Task[None] | None = None

    async def call(self, header: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        """The function's call, handed to the server by way of the caller's next read."""
        self.answer = asyncio.get_running_loop().create_future()
        await self.events.put(("call", header, payload))
        reply, data = await self.answer
        if not reply.get("ok"):  # refused there: refused here the same way
            kind = _ERRORS.get(str(reply.get("error")), errors.InternalError)
            raise kind(str(reply.get("message", "the call was refused")))
        return {k: v for k, v in reply.items() if k != "ok"}, data


class NodeAgent:
    """A Ray actor (async: one event loop serves every task of the node)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        # ``Settings.for_nodes()``: the rest are defaults, none of them the server's.
        self.settings = Settings(**settings)
        self.host = LocalHost(self.settings)
        self._pools: dict[str, asyncio.Future[LocalPool]] = {}
        # (pool, run input) -> the file shared with the pool's workers, and what removes it
        self._inputs: dict[tuple[str, str], asyncio.Future[_Held]] = {}
        self._running: dict[str, _Running] = {}

    async def start(self) -> dict[str, Any]:
        """Start the node's default fork server; whether it can sandbox users."""
        await self.host.start()
        return {"isolated": self.host.isolated, "why": self.host.why_not_isolated,
                "resourceLimits": self.host.resource_limits, "pid": os.getpid()}

    async def stop(self) -> None:
        """Stop every pool and what serves them; the node's cgroups of epe go."""
        for pool_id in list(self._pools):
            await self.close(pool_id)
        await self.host.stop()

    # -- pools --------------------------------------------------------------------------

    async def open(self, spec: dict[str, Any]) -> None:
        """Start a user's pool now, so that their first task finds workers warm."""
        await self._pool(PoolSpec.of(spec))

    async def close(self, pool_id: str) -> None:
        future = self._pools.pop(pool_id, None)
        for key in [k for k in self._inputs if k[0] == pool_id]:
            await _release(self._inputs.pop(key))
        if future is not None and future.done() and future.exception() is None:
            await future.result().stop()

    async def stop_fork_server(self, python: str) -> None:
        self.host.stop_fork_server(python)

    async def _pool(self, spec: PoolSpec) -> LocalPool:
        future = self._pools.get(spec.id)
        if future is None or (future.done() and future.exception() is not None):
            future = self._pools[spec.id] = asyncio.ensure_future(self._start_pool(spec))
        return await asyncio.shield(future)

    async def _start_pool(self, spec: PoolSpec) -> LocalPool:
        pool = LocalPool(self.host, spec.python, spec.size,
                         Tenant(spec.user, spec.uid, spec.memory))
        try:
            await pool.start()
        except BaseException:
            await pool.stop()
            raise
        return pool

    # -- inputs -------------------------------------------------------------------------

    async def _input(self, spec: PoolSpec, pool: LocalPool, source: dict[str, Any],
                     refs: list[Any]) -> InputRef:
        """The run's input as a file the user's workers here can map, made once per node
        and pool whatever the tasks: the server's own file linked (``source["file"]``, on
        the server's node), or the object fetched from the store and written."""
        key = (spec.id, str(source["location"]))
        future = self._inputs.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = self._inputs[key] = asyncio.ensure_future(
                self._materialize(pool, source, refs))
        return (await asyncio.shield(future)).shared.ref

    async def _materialize(self, pool: LocalPool, source: dict[str, Any],
                           refs: list[Any]) -> _Held:
        stack = contextlib.AsyncExitStack()
        if refs:
            shared = await stack.enter_async_context(pool.share(await refs[0]))
        else:
            try:
                shared = await stack.enter_async_context(
                    pool.adopt(str(source["file"]), int(source["rows"])))
            except OSError as e:
                raise FileUnreachable(f"{source['file']}: {e.strerror or e}") from None
        return _Held(shared, stack)

    async def forget(self, key: str) -> None:
        """The run that ``key`` was the input of has ended: its files go."""
        for pool_key in [k for k in self._inputs if k[1] == key]:
            await _release(self._inputs.pop(pool_key))

    # -- tasks --------------------------------------------------------------------------

    async def run(self, spec: dict[str, Any], task_id: str, header: dict[str, Any],
                  refs: list[Any], timeout: float) -> Event:
        """Start a task; its first event (a call, or its end)."""
        pool_spec = PoolSpec.of(spec)
        running = self._running[task_id] = _Running()
        running.job = asyncio.ensure_future(self._execute(pool_spec, running, header, refs,
                                                          timeout))
        return await self._next(task_id, running)

    async def resume(self, task_id: str, reply: dict[str, Any], data: bytes) -> Event:
        """Answer the task's pending call; its next event."""
        running = self._running.get(task_id)
        if running is None or running.answer is None or running.answer.done():
            return "done", {"ok": False, "raised": "InternalError",
                            "message": "the node lost track of this task"}, b""
        running.answer.set_result((reply, data))
        return await self._next(task_id, running)

    async def cancel(self, task_id: str) -> None:
        """Stop a task (its time limit, or its caller went away): its worker is killed."""
        running = self._running.pop(task_id, None)
        if running is not None and running.job is not None:
            running.job.cancel()

    async def _next(self, task_id: str, running: _Running) -> Event:
        event = await running.events.get()
        if event[0] == "done":
            self._running.pop(task_id, None)
        return event

    async def _execute(self, spec: PoolSpec, running: _Running, header: dict[str, Any],
                       refs: list[Any], timeout: float) -> None:
        try:
            pool = await self._pool(spec)
            task = _task(header, running)
            if header.get("input") is not None:
                task = replace(task, input_ref=await self._input(spec, pool, header["input"],
                                                                 refs))
            event = _done(await pool.run(task, timeout))
        except TaskFailed as failed:
            event = _failed(failed)
        except FileUnreachable as e:  # nothing ran: the bridge sends the object instead
            event = "done", {"ok": False, "raised": "FileUnreachable", "message": str(e)}, b""
        except errors.EpeError as e:
            event = "done", {"ok": False, "raised": type(e).__name__, "message": e.message}, b""
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("a task failed on this node")
            event = "done", {"ok": False, "raised": "InternalError",
                             "message": f"the Ray node failed: {type(e).__name__}: {e}"}, b""
        await running.events.put(event)


def _task(header: dict[str, Any], running: _Running) -> Task:
    """``protocol.task_header``'s header as the task it was made from."""
    calling = Calling(header["call"], header["frames_as_columns"], header["images_as_list"])
    return Task(kind=header["kind"], calling=calling, source=header["source"],
                script_key=header["script_key"],
                kwargs=header["kwargs"], graphics=header["graphics"],
                units=tuple((int(a), int(b)) for a, b in header["units"]),
                input_type=header["input_type"], pickled_kwargs=header["pickled_kwargs"],
                result_format=header["result_format"], calls=running.call)


def _done(result: TaskResult) -> Event:
    """A result as the worker's reply it was read from (``protocol.task_result``)."""
    reply = {"ok": True, "sizes": [len(f.json) for f in result.fragments],
             "frames": [f.is_frame for f in result.fragments],
             "stdout": result.stdout, "stderr": result.stderr, "usage": _usage(result.usage)}
    return "done", reply, b"".join(f.json for f in result.fragments)


def _failed(failed: TaskFailed) -> Event:
    error = failed.error
    reply = {"ok": False, "error": type(error).__name__, "message": error.message,
             "unit": failed.unit, "usage": _usage(failed.usage),
             **{k: error.extra.get(k) for k in ("traceback", "stdout", "stderr")}}
    return "done", reply, b""


def _usage(usage: Usage) -> list[float]:
    return [usage.cpu_seconds, usage.peak_memory]


def reply_usage(reply: dict[str, Any]) -> Usage:
    """What the node's kernel counted for a task, as the agent (never the worker) put it
    in a ``done`` reply."""
    cpu, peak = reply.get("usage") or (0.0, 0)
    return Usage(cpu_seconds=float(cpu), peak_memory=int(peak))


def reply_error(reply: dict[str, Any]) -> errors.EpeError | None:
    """The error of the pool's own a ``done`` reply carries (``None``: the worker's)."""
    raised = reply.get("raised")
    if raised is None:
        return None
    return _ERRORS.get(str(raised), errors.InternalError)(str(reply.get("message")))

