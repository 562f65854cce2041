"""A Ray cluster as the place users' code runs (``EPE_EXECUTOR=ray``).

``RayHost`` is the pools' ``Backend``: it starts the bridge (``runner.ray.bridge``,
the Ray driver, a child process) and talks to it in ``runner.protocol`` frames;
``RayPool`` is one user's ``Executor`` in one environment, its workers on every
node (``runner.ray.agent``). The server imports no Ray: a cluster that goes away
ends the bridge, not the server, and runs are answered 503 with ``Retry-After``
until a new bridge reaches the cluster again. The bridge, and through it every
node, is given only ``Settings.for_nodes()``: no URL, key or password.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from epe import errors
from epe.runner import protocol
from epe.runner.executor import (
    ExecutorStatus,
    InputRef,
    Rows,
    Shared,
    Task,
    TaskResult,
    Tenant,
)
from epe.runner.local.exchange import Exchange
from epe.runner.ray.agent import reply_error, reply_usage
from epe.settings import Settings

log = logging.getLogger("epe.runner")

GRACE = 30.0  # seconds past a task's own time limit before the server stops waiting
STOP_TIMEOUT = 10.0
AGENTS_TIMEOUT = 180.0  # seconds for the agents of a cluster just reached to start

_LOST = {"event": "lost"}  # a stream's end when the bridge is gone


class BridgeLost(Exception):
    pass


class _Bridge:
    """One bridge process and the requests waiting on it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Queue[tuple[dict[str, Any], bytes]]] = {}
        self.reader: asyncio.Task[None] | None = None

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        assert self.proc.stdin is not None
        if self.proc.stdin.is_closing():
            raise BridgeLost()
        self.proc.stdin.write(protocol.encode(header, payload))

    def open(self) -> tuple[int, asyncio.Queue[tuple[dict[str, Any], bytes]]]:
        rid = next(self.ids)
        queue: asyncio.Queue[tuple[dict[str, Any], bytes]] = asyncio.Queue()
        self.waiting[rid] = queue
        return rid, queue

    async def request(self, header: dict[str, Any], timeout: float) -> dict[str, Any]:
        rid, queue = self.open()
        try:
            self.send({**header, "id": rid})
            reply, _ = await asyncio.wait_for(queue.get(), timeout)
        finally:
            self.waiting.pop(rid, None)
        if reply is _LOST:
            raise BridgeLost()
        return reply

    def end(self) -> None:
        """Every request still waiting learns that the bridge is gone."""
        for queue in self.waiting.values():
            queue.put_nowait((_LOST, b""))
        self.waiting.clear()


class RayHost:
    """The ``Backend`` of pools whose workers run on a Ray cluster."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.isolated = False
        self.why_not_isolated = "not started"
        self.resource_limits = "not started"  # the weakest of the nodes'
        self.nodes: list[str] = []
        self.exchange: Exchange | None = None
        self._bridge: _Bridge | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._stopping = False
        self._down_since: str | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if importlib.util.find_spec("ray") is None:
            raise errors.InvalidSetting("EPE_EXECUTOR=ray, but Ray is not installed: install "
                                        "epe's ray extra (pip install 'epe[ray]')")
        self.exchange = Exchange(None)
        reply = await self._connect()
        if not reply.get("ok"):
            raise errors.InvalidSetting(f"EPE_EXECUTOR=ray: {reply.get('message')}")
        self._joined(reply)
        if self.settings.require_isolation and not self.isolated:
            raise errors.InvalidSetting(f"EPE_REQUIRE_ISOLATION is set, but workers cannot be "
                                        f"isolated {self.why_not_isolated}")

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self._bridge is not None:
            await self._end(self._bridge)
        if self.exchange is not None:
            self.exchange.close()

    def status(self) -> tuple[bool, dict[str, Any]]:
        """Ready while the bridge reaches the cluster and a node can run code."""
        up = self._bridge is not None and self._down_since is None
        detail: dict[str, Any] = {"executor": "ray", "isolated": self.isolated,
                                  "cluster": "connected" if up else "unreachable",
                                  "nodes": len(self.nodes) if up else 0}
        if not up and self._down_since:
            detail["error"] = self._down_since
        return up and bool(self.nodes), detail

    # -- making pools ------------------------------------------------------------------

    async def expect(self, tenant: Tenant) -> None:
        """Nothing ahead: which nodes will run ``tenant``'s workers is not known until
        their pool starts, and each node's agent makes their group there then."""

    def pool(self, python: str, size: int, tenant: Tenant,
             may_grow: Callable[[], bool] | None = None) -> RayPool:
        """A pool; ``may_grow`` is not asked: the node agents grow pools on their nodes."""
        return RayPool(self, python, size, tenant)

    def stop_fork_server(self, python: str) -> None:
        self.tell({"op": "stop_fork_server", "python": python})

    # -- talking to the bridge ---------------------------------------------------------

    def bridge(self) -> _Bridge:
        """The bridge, if the cluster can be reached now; 503 otherwise."""
        if self._bridge is None or self._down_since is not None:
            raise errors.ServerBusy("the Ray cluster that runs users' functions cannot be "
                                    "reached now; try again later",
                                    retry_after=self.settings.retry_after)
        return self._bridge

    async def request(self, header: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        try:
            reply = await self.bridge().request(header, timeout)
        except BridgeLost:
            raise errors.ServerBusy("the connection to the Ray cluster was lost; try again "
                                    "later", retry_after=self.settings.retry_after) from None
        if not reply.get("ok"):
            raise errors.InternalError(f"the Ray cluster refused: {reply.get('message')}")
        return reply

    def tell(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """A request whose answer nobody waits for (it is dropped if the bridge is down)."""
        with contextlib.suppress(errors.ServerBusy, BridgeLost):
            self.bridge().send({"id": 0, **header}, payload)

    async def _connect(self) -> dict[str, Any]:
        # -P: not the working folder first on sys.path (one holding a ray.py would be
        # imported as Ray, there and, through the driver's path, on the nodes).
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "epe.runner.ray.bridge", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 30, env=driver_environment())
        bridge = _Bridge(proc)
        bridge.reader = asyncio.ensure_future(self._read(bridge))
        settings = self.settings.for_nodes()  # no URL, key or password (docs/security.md)
        timeout = self.settings.ray_connect_timeout
        rid, queue = bridge.open()
        try:
            bridge.send({"op": "start", "id": rid, "address": self.settings.ray_address,
                         "settings": settings})
            # First the driver joins the cluster, then agents start on its nodes (a
            # fork server each: slower on a busy node).
            reply, _ = await asyncio.wait_for(queue.get(), timeout)
            if reply.get("connected"):
                reply, _ = await asyncio.wait_for(queue.get(), AGENTS_TIMEOUT)
        except TimeoutError:
            reply = {"ok": False, "message": f"no answer from the Ray cluster at "
                                             f"{self.settings.ray_address!r} within "
                                             f"{timeout:g} s"}
        except BridgeLost:
            reply = {"ok": False, "message": "the Ray bridge ended at start"}
        finally:
            bridge.waiting.pop(rid, None)
        if reply is _LOST:
            code = await bridge.proc.wait()
            reply = {"ok": False, "message": f"the Ray bridge ended at start (exit code {code}"
                                             "; its log lines above say why)"}
        if not reply.get("ok"):
            await self._end(bridge)
            return reply
        self._bridge = bridge
        return reply

    def _joined(self, reply: dict[str, Any]) -> None:
        self.nodes = list(reply.get("nodes", []))
        self.isolated = bool(reply.get("isolated"))
        self.why_not_isolated = str(reply.get("why") or "")
        self.resource_limits = str(reply.get("resourceLimits", "rlimit"))
        self._down_since = None
        log.info("Ray cluster at %s: %d node(s) run users' code (%s)",
                 self.settings.ray_address, len(self.nodes), ", ".join(self.nodes))

    async def _read(self, bridge: _Bridge) -> None:
        assert bridge.proc.stdout is not None
        try:
            while True:
                header, payload = await protocol.read_async(bridge.proc.stdout)
                rid = int(header.get("id", 0))
                if rid == 0:
                    if "nodes" in header and bridge is self._bridge:
                        self._joined(header)
                    continue
                queue = bridge.waiting.get(rid)
                if queue is not None:
                    queue.put_nowait((header, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        bridge.end()
        if bridge is self._bridge and not self._stopping:
            code = await bridge.proc.wait()
            self._down_since = f"the Ray bridge ended (exit code {code})"
            self.nodes = []
            log.error("lost the Ray cluster at %s (%s); runs are refused until it is back",
                      self.settings.ray_address, self._down_since)
            self._reconnect = asyncio.ensure_future(self._reconnect_forever())

    async def _reconnect_forever(self) -> None:
        delay = float(self.settings.retry_after)
        while not self._stopping:
            await asyncio.sleep(delay)
            old = self._bridge
            try:
                reply = await self._connect()
            except Exception as e:  # a bridge that cannot even start
                reply = {"ok": False, "message": f"{type(e).__name__}: {e}"}
            if reply.get("ok"):
                if old is not None and old is not self._bridge:
                    await self._end(old)
                self._joined(reply)
                return
            self._down_since = str(reply.get("message"))
            log.warning("the Ray cluster is still unreachable: %s", self._down_since)
            delay = min(delay * 2, 30.0)

    async def _end(self, bridge: _Bridge) -> None:
        if bridge.proc.stdin is not None:
            bridge.proc.stdin.close()
        try:
            await asyncio.wait_for(bridge.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                bridge.proc.kill()
            await bridge.proc.wait()
        if bridge.reader is not None:
            bridge.reader.cancel()
        bridge.end()


class RayPool:
    """An ``Executor``: one user's workers in one environment, on every node."""

    def __init__(self, host: RayHost, python: str, size: int, tenant: Tenant) -> None:
        self.host = host
        self.size = size
        self.spec = {"id": uuid.uuid4().hex, "python": python, "size": size,
                     "user": tenant.name, "uid": tenant.uid, "memory": tenant.memory_limit}
        self._started = False

    @property
    def capacity(self) -> int:
        """``size`` workers on each node: as many tasks at once."""
        return self.size * max(1, len(self.host.nodes))

    @property
    def warm(self) -> int:
        return self.size  # the node agents grow it: counted at its size, on every node

    async def start(self) -> None:
        await self.host.request({"op": "open", "pool": self.spec},
                                self.host.settings.worker_start_timeout + 60)
        self._started = True

    async def stop(self) -> None:
        self._started = False
        self.host.tell({"op": "close", "pool": self.spec["id"]})

    def status(self) -> ExecutorStatus:
        ready, detail = self.host.status()
        return ExecutorStatus(ready and self._started, {**detail, "size": self.size})

    def share(self, rows: Rows) -> AbstractAsyncContextManager[Shared]:
        return self._share(rows)

    @contextlib.asynccontextmanager
    async def _share(self, rows: Rows) -> AsyncIterator[Shared]:
        """Written once as an Arrow file here and offered to the bridge, which links it
        for the workers on this node and puts it in the object store for other nodes
        (``runner.ray.bridge``). The file stays until the run ends."""
        exchange = self.host.exchange
        assert exchange is not None, "the host is not started"
        pending = [rows]
        del rows
        written = await asyncio.to_thread(exchange.write, pending.pop())
        path = written.ref.location
        try:
            reply = await self.host.request({"op": "offer", "path": path,
                                             "rows": written.rows})
            key = str(reply["key"])
            try:
                yield Shared(InputRef("ray", key), written.rows, written.bytes)
            finally:
                self.host.tell({"op": "forget", "key": key})
        finally:
            # Freeing a large file's pages takes milliseconds: not on the event loop.
            asyncio.get_running_loop().run_in_executor(None, exchange.forget, written)

    async def run(self, task: Task, timeout: float) -> TaskResult:
        bridge = self.host.bridge()
        rid, queue = bridge.open()
        try:
            bridge.send({"op": "run", "id": rid, "pool": self.spec,
                         "task": protocol.task_header(task), "timeout": timeout})
            async with asyncio.timeout(timeout + GRACE):
                while True:
                    event, payload = await queue.get()
                    if event is _LOST:
                        raise errors.WorkerDied(
                            "the connection to the Ray cluster was lost while the function "
                            "ran; the run was stopped")
                    if event["event"] == "done":
                        break
                    answer, data = await protocol.answer_call(task.calls, event["header"],
                                                              payload)
                    bridge.send({"op": "answer", "id": rid, "reply": answer}, data)
        except TimeoutError:
            self.host.tell({"op": "cancel", "id": rid})
            raise errors.TimeLimitExceeded(
                f"the function ran longer than its time limit of {timeout:g} s and was "
                "stopped") from None
        except asyncio.CancelledError:
            self.host.tell({"op": "cancel", "id": rid})
            raise
        except BridgeLost:
            raise errors.WorkerDied("the connection to the Ray cluster was lost while the "
                                    "function ran; the run was stopped") from None
        finally:
            bridge.waiting.pop(rid, None)
        reply = event["reply"]
        raised = reply_error(reply)
        if raised is not None:
            if isinstance(raised, errors.ServerBusy):
                raised.extra["retry_after"] = self.host.settings.retry_after
            raise raised
        return protocol.task_result(reply, payload, reply_usage(reply))


def driver_environment() -> dict[str, str]:
    """The bridge's environment: the server's without its settings (``EPE_``) and
    libpq's (``PG``), where a URL or a password may be. A Ray the bridge starts
    (``EPE_RAY_ADDRESS=local``) passes it on to every process of its node."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("EPE_", "PG"))}


def unreachable(address: str, timeout: float) -> str | None:
    """Why the cluster at ``address`` cannot be reached, or ``None`` (checked before the
    server starts: a TCP connection to the address named, without Ray; ``auto`` and
    ``local`` are Ray's to find or start)."""
    if address in ("auto", "local"):
        return None
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return f"EPE_RAY_ADDRESS={address!r} is not auto, local, HOST:PORT or ray://HOST:PORT"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        return f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}"
    return None
