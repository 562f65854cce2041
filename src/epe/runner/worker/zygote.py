"""The fork server: one process per Python environment that has imported what every
worker needs, and forks a new worker in milliseconds (in the worker's environment).

Started by the local pool as ``python -m epe.runner.worker CONFIG_JSON`` with one end of
a Unix socket pair as fd ``CONFIG["control"]``. It imports numpy, pandas, pyarrow and
matplotlib once, says ``{"ready": true, "isolation": ...}``, then answers two kinds of
messages:

- ``{"spawn": id, "limits": {...}, "sandbox": {...} | null, "workdir": path | null,
  "run_as": [uid, gid] | null, "cgroups": [path, ...]}``
  with two file descriptors (the worker's ends of its task pipes): it forks; the child
  joins its user's cgroups (writing itself to each ``cgroup.procs`` or ``tasks`` file
  named), enters the sandbox (``sandbox.enter``) or, without one, its own session, then becomes
  a worker (``main.serve``). The answer is ``{"spawned": id, "pid": pid}``, or
  ``{"spawned": id, "error": message}`` when the kernel refused the fork.
- none for exits: when a child ends it sends ``{"exited": pid, "code": returncode}``
  (negative: killed by that signal), which is how the pool learns how a worker died.

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
from typing import Any

import orjson

from epe.runner.worker import main as worker
from epe.runner.worker import sandbox

MESSAGE_LIMIT = 1 << 20


class ForkServer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # Made once here (its figure capture sets matplotlib up: tens of milliseconds),
        # and every worker forked from this process starts with it.
        self.prototype = worker.Worker(config["worker"])
        self.control = socket.socket(fileno=int(config["control"]))
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector
        isolation = sandbox.probe() if self.config.get("isolate") else "not asked for"
        self._send({"ready": True, "pid": os.getpid(), "isolation_refused": isolation})
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(self.wake_read, selectors.EVENT_READ, "child")
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    os.read(self.wake_read, 4096)
                    self._reap()
                elif not self._serve_one():
                    return

    def _serve_one(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, MESSAGE_LIMIT, 2)
        except ConnectionError:
            return False
        if not data:
            return False  # the server closed its end
        request = orjson.loads(data)
        try:
            pid = self._fork(sandboxed=request.get("sandbox") is not None)
        except (OSError, sandbox.SandboxError) as e:  # the kernel refused: this worker is
            for fd in fds:  # not made, and this process serves on
                os.close(fd)
            self._send({"spawned": request["spawn"], "error": f"{type(e).__name__}: {e}"})
            return True
        if pid == 0:
            self._become_worker(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self._send({"spawned": request["spawn"], "pid": pid})
        return True

    @staticmethod
    def _fork(sandboxed: bool) -> int:
        return sandbox.fork_into_new_pid_namespace() if sandboxed else os.fork()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _send(self, message: dict[str, Any]) -> None:
        self.control.sendall(orjson.dumps(message))

    def _become_worker(self, request: dict[str, Any], fds: list[int]) -> None:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (self.wake_read, self.wake_write, self.control.fileno()):
                os.close(fd)
            os.dup2(fds[0], 0)
            os.dup2(fds[1], 1)
            for fd in fds:
                os.close(fd)
            os.setsid()  # its own process group: the pool kills the whole group
            for procs in request.get("cgroups", ()):  # its user's, before anything else
                _join(procs)
            spec = request.get("sandbox")
            if spec is not None:
                sandbox.enter(sandbox.Spec.from_json(spec))
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


def _join(procs: str) -> None:
    """Move this process into the cgroup of ``procs`` (its ``cgroup.procs``, or ``tasks``:
    this process has one thread)."""
    try:
        fd = os.open(procs, os.O_WRONLY)
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
