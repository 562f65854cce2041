"""The fork server: one process per Python environment that has imported what every
worker needs, and forks a new worker in milliseconds (in the worker's environment).

Started by the local pool as ``python -m epe.runner.worker CONFIG_JSON`` with one end of
a Unix socket pair as fd ``CONFIG["control"]``. It imports numpy, pandas, pyarrow and
matplotlib once, says ``{"ready": true, "isolation": ...}``, then answers two kinds of
messages:

- ``{"spawn": id, "limits": {...}, "sandbox": {...} | null, "workdir": path | null,
  "run_as": [uid, gid] | null, "cgroups": [path, ...]}``
  with two file descriptors (the worker's ends of its task pipes): a child forked now
  joins its user's cgroups (writing itself to each ``cgroup.procs`` or ``tasks`` file
  named), enters the sandbox (``sandbox.enter``) or, without one, its own session, then
  becomes a worker (``main.serve``); a spare does the same, its sandbox half entered
  already. The answer is ``{"spawned": id,
  "pid": pid}`` (with ``"spare": true`` for a spare), or ``{"spawned": id, "error":
  message}`` when the kernel refused the fork.
- none for exits: when a worker ends it sends ``{"exited": pid, "code": returncode}``
  (negative: killed by that signal), which is how the pool learns how a worker died.

**Spares** (``CONFIG["spares"]``, ``EPE_WORKER_SPARES``): once no worker has been asked
for during ``QUIET_BEFORE_SPARES``, it forks children ahead of need, each into a PID
namespace of its own when workers are sandboxed. A spare enters the part of the
sandbox that is the same for every user (``sandbox.prepare``: the namespaces, the
read-only view), runs a task of epe's own (``main.warm_up``), named ``epe-spare``
meanwhile, so that the copy-on-write faults of a first task are taken before any user
waits, then waits on a socket of its own for a spawn request; it is nobody's worker
until then, and ``{"spares": n}`` tells the server how many wait. What a new user's
first run pays is then the user's part of the sandbox and the run, not the fork, the
namespaces and the faults (docs/architecture.md#spares).

User code never runs in this process: only in its children, after they have entered
their sandbox and dropped to their user's uid.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import socket
import sys
import time
from collections import OrderedDict
from typing import Any

import orjson

from epe.runner.worker import main as worker
from epe.runner.worker import sandbox

MESSAGE_LIMIT = 1 << 20
# Spares are made only once no worker was asked for during this long: never in the
# middle of a burst of new users, whose runs want the CPU.
QUIET_BEFORE_SPARES = 0.5
SPARE_NAME = "epe-spare"  # a spare's process name until it becomes someone's worker


class ForkServer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # Made once here (its figure capture sets matplotlib up: tens of milliseconds),
        # and every worker forked from this process starts with it.
        self.prototype = worker.Worker(config["worker"])
        self.control = socket.socket(fileno=int(config["control"]))
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        self.spares_wanted = int(config.get("spares", 0))
        self.sandboxed = False  # whether workers are sandboxed here: what spares are made for
        self.network = bool(config.get("network"))  # whether sandboxed workers may use it
        # Children forked ahead, not yet anyone's worker, oldest first: pid -> our end of
        # the socket the request that makes one a worker comes over.
        self.spares: OrderedDict[int, socket.socket] = OrderedDict()
        self.lost_spares: set[int] = set()  # died before they were handed anything
        self.last_request = time.monotonic()
        self.left = False  # in a child: the fork server's descriptors are closed
        self.host_root: int | None = None  # in a sandboxed spare, until it joins its groups

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector
        isolation = sandbox.probe() if self.config.get("isolate") else "not asked for"
        self.sandboxed = isolation is None
        self._send({"ready": True, "pid": os.getpid(), "isolation_refused": isolation})
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(self.wake_read, selectors.EVENT_READ, "child")
        while True:
            events = selector.select(self._until_next_spare())
            for key, _ in events:
                if key.data == "child":
                    os.read(self.wake_read, 4096)
                    self._reap()
                elif not self._serve_one():
                    return
            if not events and len(self.spares) < self.spares_wanted:
                self._make_spare()

    def _until_next_spare(self) -> float | None:
        """How long to wait for a message before making a spare (None: enough of them)."""
        if len(self.spares) >= self.spares_wanted:
            return None
        return max(0.0, self.last_request + QUIET_BEFORE_SPARES - time.monotonic())

    def _serve_one(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, MESSAGE_LIMIT, 2)
        except ConnectionError:
            return False
        if not data:
            return False  # the server closed its end
        request = orjson.loads(data)
        self.last_request = time.monotonic()
        try:
            pid = self._hand_to_spare(request, data, fds)
            if pid is not None:
                self._send({"spawned": request["spawn"], "pid": pid, "spare": True})
                return True
            pid = self._fork(sandboxed=request.get("sandbox") is not None)
        except (OSError, sandbox.SandboxError) as e:  # the kernel refused: this worker is
            for fd in fds:  # not made, and this process serves on
                os.close(fd)
            self._send({"spawned": request["spawn"], "error": f"{type(e).__name__}: {e}"})
            return True
        if pid == 0:
            self._become_worker(request, fds, spare=False)  # never returns
        for fd in fds:
            os.close(fd)
        self._send({"spawned": request["spawn"], "pid": pid})
        return True

    @staticmethod
    def _fork(sandboxed: bool) -> int:
        return sandbox.fork_into_new_pid_namespace() if sandboxed else os.fork()

    # -- spares: workers forked ahead -------------------------------------------------

    def _make_spare(self) -> None:
        """Fork a child that takes its copy-on-write faults now (``worker.warm_up``) and
        then waits to be made someone's worker (``_wait_as_spare``)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork(self.sandboxed)
        except (OSError, sandbox.SandboxError):
            ours.close()
            theirs.close()
            self.spares_wanted = len(self.spares)  # the kernel refused: no more for now
            return
        if pid == 0:
            ours.close()
            self._wait_as_spare(theirs)  # never returns
        theirs.close()
        self.spares[pid] = ours
        self._say_spares()

    def _hand_to_spare(self, request: dict[str, Any], data: bytes,
                       fds: list[int]) -> int | None:
        """Give ``request`` to a spare of its kind; its pid, or None when there is none."""
        spec = request.get("sandbox")
        if (spec is not None) != self.sandboxed:
            return None
        if spec is not None and bool(spec.get("network")) != self.network:
            return None  # its namespaces were made for the other kind
        while self.spares:
            pid, ours = self.spares.popitem(last=False)
            try:
                socket.send_fds(ours, [data], fds)
            except OSError:  # it died: the next one (its end is reaped, not reported)
                self.lost_spares.add(pid)
                continue
            finally:
                ours.close()
            for fd in fds:
                os.close(fd)
            self._say_spares()
            return pid
        return None

    def _say_spares(self) -> None:
        self._send({"spares": len(self.spares)})

    def _wait_as_spare(self, requests: socket.socket) -> None:
        try:
            self._leave_fork_server()
            if self.sandboxed:  # the same for every user: done before anyone waits for it
                # The host's files as they are outside, to join the user's groups by:
                # here they are read-only. Closed before the user's part of the sandbox.
                self.host_root = os.open("/", os.O_PATH | os.O_DIRECTORY)
                sandbox.prepare(network=self.network)
            else:
                worker.die_with_parent(self.config["pid"])
            name = _rename(SPARE_NAME)  # what ``ps`` shows until it is someone's worker
            worker.warm_up(self.prototype)
            data, fds, _flags, _addr = socket.recv_fds(requests, MESSAGE_LIMIT, 2)
            requests.close()
            if not data:
                os._exit(0)  # the fork server is stopping
            _rename(name)
            self._become_worker(orjson.loads(data), fds, spare=True)
        except BaseException as e:  # never back into the fork server's loop
            os.write(2, f"epe spare worker failed: {type(e).__name__}: {e}\n".encode())
            os._exit(70)
        os._exit(0)

    def _leave_fork_server(self) -> None:
        """In a child: close what is the fork server's (its sockets, its spares'); once."""
        if self.left:
            return
        self.left = True
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wake_read, self.wake_write, self.control.fileno()):
            os.close(fd)  # the object stays with this process, never to close them again
        for spare in self.spares.values():  # the other spares' ends (not this one's own)
            spare.close()
        self.spares.clear()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            spare = self.spares.pop(pid, None)
            if spare is not None or pid in self.lost_spares:  # nobody's: nobody to tell
                self.lost_spares.discard(pid)
                if spare is not None:
                    spare.close()
                    self._say_spares()
                continue
            self._send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _send(self, message: dict[str, Any]) -> None:
        self.control.sendall(orjson.dumps(message))

    def _become_worker(self, request: dict[str, Any], fds: list[int], spare: bool) -> None:
        """Be the worker ``request`` asks for (``spare``: a spare, which has done
        ``sandbox.prepare`` already when sandboxed)."""
        try:
            self._leave_fork_server()
            os.dup2(fds[0], 0)
            os.dup2(fds[1], 1)
            for fd in fds:
                os.close(fd)
            os.setsid()  # its own process group: the pool kills the whole group
            for procs in request.get("cgroups", ()):  # its user's, before anything else
                _join(procs, self.host_root)
            if self.host_root is not None:
                os.close(self.host_root)
                self.host_root = None
            spec = request.get("sandbox")
            if spec is not None:
                enter = sandbox.finish if spare else sandbox.enter
                enter(sandbox.Spec.from_json(spec))
                home = "/tmp"
            else:
                if request.get("run_as"):  # the worker user, when root cannot isolate
                    uid, gid = request["run_as"]
                    os.setgroups([])
                    os.setresgid(gid, gid, gid)
                    os.setresuid(uid, uid, uid)
                worker.die_with_parent(self.config["pid"])  # after: a uid change clears it
                home = request["workdir"]
            os.chdir(home)
            os.environ.update({"HOME": home, "TMPDIR": home, "MPLCONFIGDIR": home})
            worker.serve(request["limits"], self.prototype)
        except BaseException as e:  # never back into the fork server's loop
            os.write(2, f"epe worker could not start: {type(e).__name__}: {e}\n".encode())
            os._exit(70)
        os._exit(0)


def _rename(name: str) -> str:
    """Set this process's name (``/proc/self/comm``, what ``ps`` shows); the one it had."""
    with open("/proc/self/comm", "r+") as comm:
        was = comm.read().strip()
        comm.seek(0)
        comm.write(name)
    return was


def _join(procs: str, host_root: int | None) -> None:
    """Move this process into the cgroup of ``procs`` (its ``cgroup.procs``, or ``tasks``:
    this process has one thread), found from ``host_root`` (a descriptor of the host's
    ``/``) where given.

    It writes ``0``, itself: for any other pid the kernel takes a global lock that waits
    for an RCU grace period (about 10 ms), which is why a sandboxed spare joins by itself
    through the host's view rather than being moved by the fork server."""
    try:
        if host_root is None:
            fd = os.open(procs, os.O_WRONLY)
        else:
            fd = os.open(os.path.relpath(procs, "/"), os.O_WRONLY, dir_fd=host_root)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"joining {procs}: {e.strerror}") from None


def main() -> None:
    config = orjson.loads(sys.argv[1])
    worker.die_with_parent(config["parent"])
    config["pid"] = os.getpid()
    worker.preload()
    server = ForkServer(config)
    # What is here now stays: the collector never walks it again, so it never writes to
    # its pages, and they stay shared with every worker instead of copied into each.
    gc.collect()
    gc.freeze()
    server.run()
