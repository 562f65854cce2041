"""The Ray driver: a child process of the server (``python -m epe.runner.ray.bridge``).

Ray's driver shares its fate with the cluster: when the head goes away for long,
Ray ends the driver's process. So the server is never the driver itself; this
process is, and the server (``runner.ray.host``) starts it again when it ends,
answering 503 meanwhile. Between the two go ``runner.protocol`` frames over the
process's stdin and stdout, each carrying the ``id`` of the request it belongs to:

- ``start``: connect to ``address``, place a ``NodeAgent`` on every node with CPUs;
- ``open``/``close``: a user's pool on every node; ``stop_fork_server``;
- ``offer``: a run's input, the Arrow file the server wrote at ``path``; ``forget``
  it when the run ends. On the node this process runs on (the server's), the agent
  links that file for its workers: no copy. For the other nodes it is read
  (memory-mapped) into Ray's object store once, when a task first goes to one of
  them, and every node fetches it from there once;
- ``run``: one task on the least busy node of its pool (a task with an input, the
  server's node when the load is equal), answered by ``call`` events the server
  answers with ``answer``, then one ``done``; ``cancel`` stops it.

It tells the server, unasked (``id`` 0), which nodes serve whenever that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from epe.runner import protocol
from epe.runner.ray.agent import NodeAgent

log = logging.getLogger("epe.ray")

WATCH_EVERY = 2.0  # seconds between looks at the cluster's nodes
GIVE_UP_AFTER = 3  # looks in a row that get no answer: the cluster is gone
LOOK_TIMEOUT = 10.0
AGENT_START_TIMEOUT = 120.0
AGENT_STOP_TIMEOUT = 5.0
LIMITS = ["rlimit", "cgroup1", "cgroup2"]  # weakest first


@dataclass(eq=False)
class _Agent:
    node: str
    address: str
    handle: Any
    files: bool  # on the server's node: may link the server's input files
    limits: str  # how the node limits its workers: cgroup2, cgroup1 or rlimit
    load: dict[str, int] = field(default_factory=dict)  # tasks under way, per pool
    given: dict[str, int] = field(default_factory=dict)  # tasks ever sent, per pool


@dataclass(eq=False)
class _Input:
    """A run's input: the server's Arrow file, and its object in Ray's store once a task
    on another node needs it (put once, whatever the tasks)."""

    path: str
    rows: int
    stored: asyncio.Future[Any] | None = None

    async def object(self) -> Any:
        if self.stored is None:
            self.stored = asyncio.ensure_future(asyncio.to_thread(_put, self.path))
        return await asyncio.shield(self.stored)


def _put(path: str) -> Any:
    """The Arrow file at ``path`` into the object store (Ray copies it once; workers on
    the node of the store read it without another)."""
    import ray

    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    return ray.put(table)


class Bridge:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.agents: dict[str, _Agent] = {}
        self.inputs: dict[str, _Input] = {}  # by the key the server names them by
        self.node: str | None = None  # the Ray node this process and the server are on
        self.answers: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.settings: dict[str, Any] = {}
        self.isolated = True
        self.why = ""
        self._starting: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.writer.write(protocol.encode(header, payload))

    # -- connecting and watching the nodes ---------------------------------------------

    async def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Agents on the nodes of the cluster ``connect`` reached."""
        self.settings = request["settings"]
        self.node = _own_node(str(request["address"]))
        await self.look()
        if not self.agents:
            return {"ok": False, "message": f"the Ray cluster at {request['address']!r} has "
                                            "no node with CPUs to run users' code on"}
        self._in_background(self.watch())
        return {"ok": True, **self.membership()}

    def membership(self) -> dict[str, Any]:
        return {"nodes": sorted(a.address for a in self.agents.values()),
                "isolated": self.isolated, "why": self.why,
                # The weakest of the nodes': what every user can count on.
                "resourceLimits": min((a.limits for a in self.agents.values()),
                                      key=LIMITS.index, default="rlimit")}

    async def watch(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await self.look()
                failures = 0
            except Exception as e:
                failures += 1
                log.warning("the Ray cluster did not answer (%s: %s)", type(e).__name__, e)
                if failures >= GIVE_UP_AFTER:
                    log.error("the Ray cluster is gone; the bridge ends")
                    os._exit(3)  # Ray's own threads may hang a normal exit

    async def look(self) -> None:
        """Agents for nodes that joined, none for nodes that left."""
        import ray

        nodes = await asyncio.wait_for(asyncio.to_thread(ray.nodes), LOOK_TIMEOUT)
        alive = {n["NodeID"]: n for n in nodes
                 if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0}
        changed = False
        for node in [n for n in self.agents if n not in alive]:
            del self.agents[node]
            changed = True
            log.warning("Ray node %s left the cluster", node)
        new = [n for n in alive if n not in self.agents and n not in self._starting]
        started = await asyncio.gather(*(self._place(n, alive[n]) for n in new))
        changed = changed or any(started)
        if changed:
            self.send({"id": 0, **self.membership()})

    async def _place(self, node: str, info: dict[str, Any]) -> bool:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._starting.add(node)
        try:
            actor: Any = ray.remote(NodeAgent)
            actor = actor.options(
                num_cpus=0, max_concurrency=100_000, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            handle = actor.remote(self.settings)
            started = await asyncio.wait_for(handle.start.remote(), AGENT_START_TIMEOUT)
        except Exception as e:
            log.error("could not start epe's agent on Ray node %s: %s: %s", node,
                      type(e).__name__, e)
            return False
        finally:
            self._starting.discard(node)
        if not started["isolated"]:
            self.isolated, self.why = False, f"on {info['NodeManagerAddress']}: {started['why']}"
        self.agents[node] = _Agent(node, str(info.get("NodeManagerAddress", node)), handle,
                                   files=node == self.node,
                                   limits=str(started["resourceLimits"]))
        log.info("epe's agent runs on Ray node %s", node)
        return True

    async def stop(self) -> None:
        """Stop the agents' pools, so they remove what they made on their nodes (Ray
        would end them with the driver, cgroups left behind)."""
        stopping = [a.handle.stop.remote() for a in self.agents.values()]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*stopping, return_exceptions=True),
                                   AGENT_STOP_TIMEOUT)

    def lost(self, agent: _Agent) -> None:
        if self.agents.pop(agent.node, None) is not None:
            self.send({"id": 0, **self.membership()})

    # -- requests -----------------------------------------------------------------------

    async def handle(self, request: dict[str, Any], payload: bytes) -> None:
        op, rid = request.get("op"), int(request.get("id", 0))
        if op == "answer":
            future = self.answers.pop(rid, None)
            if future is not None and not future.done():
                future.set_result((request["reply"], payload))
            return
        if op == "cancel":
            running = self.tasks.pop(rid, None)
            if running is not None:
                running.cancel()
            return
        if op == "run":
            self.tasks[rid] = asyncio.current_task()  # type: ignore[assignment]
            try:
                await self.run(rid, request)
            finally:
                self.tasks.pop(rid, None)
            return
        try:
            reply = await self.simple(op, request)
        except Exception as e:
            log.exception("the bridge failed to %s", op)
            reply = {"ok": False, "message": f"{type(e).__name__}: {e}"}
        if rid:
            self.send({"id": rid, **reply})

    async def simple(self, op: Any, request: dict[str, Any]) -> dict[str, Any]:
        if op == "open":
            await asyncio.gather(*(a.handle.open.remote(request["pool"])
                                   for a in list(self.agents.values())))
        elif op == "close":
            for agent in self.agents.values():
                agent.handle.close.remote(request["pool"])
                agent.load.pop(request["pool"], None)
                agent.given.pop(request["pool"], None)
        elif op == "stop_fork_server":
            for agent in self.agents.values():
                agent.handle.stop_fork_server.remote(request["python"])
        elif op == "offer":
            key = uuid.uuid4().hex
            self.inputs[key] = _Input(str(request["path"]), int(request["rows"]))
            return {"ok": True, "key": key}
        elif op == "forget":
            self.inputs.pop(request["key"], None)
            for agent in self.agents.values():
                agent.handle.forget.remote(request["key"])
        else:
            return {"ok": False, "message": f"no such request: {op!r}"}
        return {"ok": True}

    async def run(self, rid: int, request: dict[str, Any]) -> None:
        import ray

        pool, header = request["pool"], request["task"]
        given: _Input | None = None
        if header.get("input") is not None:
            given = self.inputs.get(header["input"]["location"])
            if given is None:
                self._done(rid, "InternalError", "the run's input was not offered to Ray")
                return
        agent = self._pick(pool["id"], near=given is not None)
        if agent is None:
            self._done(rid, "ServerBusy", "no Ray node can run users' code now; try again later")
            return
        agent.load[pool["id"]] = agent.load.get(pool["id"], 0) + 1
        try:
            kind, reply, data = await self._start(agent, pool, rid, header, given,
                                                  request["timeout"])
            while kind == "call":
                answer = self.answers[rid] = asyncio.get_running_loop().create_future()
                self.send({"id": rid, "event": "call", "header": reply}, data)
                answered, answer_data = await answer
                kind, reply, data = await agent.handle.resume.remote(str(rid), answered,
                                                                     answer_data)
            self.send({"id": rid, "event": "done", "reply": reply}, data)
        except asyncio.CancelledError:
            agent.handle.cancel.remote(str(rid))
            raise
        except ray.exceptions.RayActorError as e:
            self.lost(agent)
            log.warning("Ray node %s died under a task: %s", agent.address, e)
            self._done(rid, "WorkerDied",
                       f"the Ray node running this part of the run ({agent.address}) left "
                       "the cluster while it ran; the run was stopped, not retried (its "
                       "function may have saved datastores or granted access already); run "
                       "it again")
        except Exception as e:
            log.exception("a task failed in the bridge")
            self._done(rid, "InternalError", f"the Ray bridge failed: {type(e).__name__}: {e}")
        finally:
            self.answers.pop(rid, None)
            agent.load[pool["id"]] = agent.load.get(pool["id"], 1) - 1

    async def _start(self, agent: _Agent, pool: dict[str, Any], rid: int,
                     header: dict[str, Any], given: _Input | None, timeout: float) -> Any:
        """The task started on ``agent``; its first event. Its input: the server's file
        on the server's node, else the object in the store."""
        refs: list[Any] = []
        if given is not None and agent.files:
            linked = {**header, "input": {**header["input"], "file": given.path,
                                          "rows": given.rows}}
            event = await agent.handle.run.remote(pool, str(rid), linked, refs, timeout)
            if event[1].get("raised") != "FileUnreachable":
                return event
            agent.files = False  # nothing ran; from now on the store, as for other nodes
            log.warning("Ray node %s cannot link the server's input files (%s); they reach "
                        "it through the object store", agent.address, event[1]["message"])
        if given is not None:
            refs = [await given.object()]
        return await agent.handle.run.remote(pool, str(rid), header, refs, timeout)

    def _pick(self, pool: str, near: bool) -> _Agent | None:
        """The node with the fewest of this pool's tasks under way (a run's batches
        spread over every node); for a task with an input (``near``), the server's node
        of those, where the input is already; else the one given fewest tasks without an
        input so far (one call after another takes turns over the nodes)."""
        agents = list(self.agents.values())
        if not agents:
            return None
        chosen = min(agents, key=lambda a: (a.load.get(pool, 0), near and not a.files,
                                            a.given.get(pool, 0)))
        if not near:
            chosen.given[pool] = chosen.given.get(pool, 0) + 1
        return chosen

    def _done(self, rid: int, raised: str, message: str) -> None:
        self.send({"id": rid, "event": "done",
                   "reply": {"ok": False, "raised": raised, "message": message}})

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _own_node(address: str) -> str | None:
    """The Ray node this driver runs on: the server's machine, whose files its agent can
    link. ``None`` through Ray Client (``ray://``), where the driver is not on a node."""
    import ray

    if address.startswith("ray://"):
        return None
    return str(ray.get_runtime_context().get_node_id())


def _loopback(address: str) -> bool:
    """Whether a cluster's ``HOST:PORT`` names this machine's loopback."""
    host = address.rpartition(":")[0].strip("[]")
    if address.startswith("ray://") or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect(request: dict[str, Any]) -> str | None:
    """Join the cluster as its driver (on the main thread: Ray wants it); why not, or
    ``None``."""
    address = request["address"]
    kwargs: dict[str, Any] = {"namespace": "epe", "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if address == "local" or _loopback(address):
        # Ray binds its servers to loopback only when the node's address is 127.0.0.1,
        # and on Linux swaps 127.0.0.1 for the machine's outward address unless told
        # not to (docs/scale-out.md): a cluster on loopback would not be found, and a
        # Ray of our own would listen on every interface. Ray reads this when
        # imported; the processes it starts inherit it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address == "local":  # a one-machine Ray of our own, to try things
        kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        kwargs["address"] = address
    import ray

    try:
        ray.init(**kwargs)
    except Exception as e:
        return f"cannot reach the Ray cluster at {address!r}: {type(e).__name__}: {e}"
    return None


async def serve(channel: Any, start: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, stream = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                      channel)
    writer = asyncio.StreamWriter(transport, stream, None, loop)
    bridge = Bridge(writer)
    bridge.send({"id": start["id"], "connected": True})
    bridge.send({"id": start["id"], **await bridge.start(start)})
    while True:
        try:
            request, payload = await protocol.read_async(reader)
        except asyncio.IncompleteReadError:  # the server closed our stdin: stop
            await bridge.stop()
            return
        bridge._in_background(bridge.handle(request, payload))


def main() -> None:
    # Frames go out on what was stdout; anything else printing there (Ray, a library)
    # goes to stderr, which is the server's log.
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s epe.ray-bridge: %(message)s")
    first = protocol.read_sync(sys.stdin.buffer)
    if first is None:
        return
    start = first[0]
    refused = connect(start)
    if refused is not None:
        channel.write(protocol.encode({"id": start["id"], "ok": False, "message": refused}))
        return
    started = time.monotonic()
    try:
        asyncio.run(serve(channel, start))
    finally:
        log.info("the bridge ends after %.0f s", time.monotonic() - started)
    with contextlib.suppress(Exception):
        import ray
        ray.shutdown()


if __name__ == "__main__":
    main()
