"""The server's end of a fork server (``runner.worker.zygote``): start it, ask it
for workers, learn how they end.

One fork server per Python environment, started on first need. Asking for a worker
costs a fork, not a Python start: the pool hands over the worker's ends of two pipes
(``SCM_RIGHTS`` on a Unix socket) and gets back the new process's pid; the fork
server reports each worker's exit code when it ends. A thread reads the socket and
settles the waiting futures on the event loop.

The default environment's fork server may be launched before there is an event loop
(``launch_default``): ``epe serve`` does so before it imports the app, so that the fork
server's imports (numpy, pandas, matplotlib) and the server's own run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from epe.errors import InternalError
from epe.observe import metrics
from epe.runner.limits import spare_workers
from epe.settings import Settings

log = logging.getLogger("epe.runner")

MESSAGE_LIMIT = 1 << 20


@dataclass(eq=False)
class WorkerProcess:
    """A worker the fork server made: its pid, its pipes, and its end."""

    pid: int
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader
    ended: asyncio.Future[int] = field(repr=False)
    spare: bool = False  # a spare the fork server had forked ahead of need

    @property
    def returncode(self) -> int | None:
        return self.ended.result() if self.ended.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.ended)


class ForkServer:
    def __init__(self, python: str, env: dict[str, str], config: dict[str, Any],
                 start_timeout: float) -> None:
        self.python, self.env, self.config = python, env, config
        self.start_timeout = start_timeout
        self.isolation_refused: str | None = None
        self.reports_spares = bool(config.get("spares"))  # the one fork server that has them
        self._ids = itertools.count(1)
        self._spawning: dict[int, asyncio.Future[tuple[int, bool]]] = {}
        self.spares = 0  # spares waiting in it, as it last said
        self._ends: dict[int, asyncio.Future[int]] = {}
        self._early_ends: dict[int, int] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def launch(self) -> None:
        """Start the process (it imports, then says it is ready: ``start`` waits for that);
        nothing if it was launched already."""
        if self._proc is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        config = {**self.config, "control": theirs.fileno(), "parent": os.getpid()}
        self._proc = subprocess.Popen(
            [self.python, "-m", "epe.runner.worker", orjson.dumps(config).decode()],
            env=self.env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd="/",
            start_new_session=True)
        theirs.close()

    async def start(self) -> None:
        """Launch it if need be, and wait until it is ready (what it said before this was
        called waits in the socket)."""
        self.launch()
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        threading.Thread(target=self._read, name="epe-forkserver", daemon=True).start()
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.isolation_refused = ready.get("isolation_refused")

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc is not None and self._proc.poll() is None

    async def spawn(self, request: dict[str, Any]) -> WorkerProcess:
        """A new worker; ``request`` says its limits and its sandbox (or workdir)."""
        assert self._loop is not None and self._sock is not None
        if self._closed:
            raise InternalError("the fork server has stopped")
        to_worker, from_server = os.pipe()
        from_worker, to_server = os.pipe()
        spawn_id = next(self._ids)
        answer = self._spawning[spawn_id] = self._loop.create_future()
        try:
            socket.send_fds(self._sock, [orjson.dumps({"spawn": spawn_id, **request})],
                            [to_worker, to_server])
        finally:
            os.close(to_worker)
            os.close(to_server)
        pid, spare = await answer
        ended = self._ends.setdefault(pid, self._loop.create_future())
        if pid in self._early_ends:
            ended.set_result(self._early_ends.pop(pid))
        reader = asyncio.StreamReader(limit=2**20, loop=self._loop)
        await self._loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                           os.fdopen(from_worker, "rb", buffering=0))
        transport, proto = await self._loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(from_server, "wb", buffering=0))
        writer = asyncio.StreamWriter(transport, proto, None, self._loop)
        return WorkerProcess(pid, writer, reader, ended, spare)

    def _read(self) -> None:
        assert self._sock is not None and self._loop is not None
        while True:
            try:
                data = self._sock.recv(MESSAGE_LIMIT)
            except OSError:
                data = b""
            try:
                if not data:
                    self._loop.call_soon_threadsafe(self._gone)
                    return
                self._loop.call_soon_threadsafe(self._settle, orjson.loads(data))
            except RuntimeError:  # the event loop has closed: the server is stopping
                return

    def _settle(self, message: dict[str, Any]) -> None:
        if "ready" in message and self._ready is not None and not self._ready.done():
            self._ready.set_result(message)
        elif "spawned" in message:
            future = self._spawning.pop(message["spawned"], None)
            if future is None or future.done():
                return
            if "error" in message:
                future.set_exception(InternalError(
                    f"the fork server could not start a worker: {message['error']}"))
            else:
                future.set_result((int(message["pid"]), bool(message.get("spare"))))
        elif "spares" in message:
            self.spares = int(message["spares"])
            if self.reports_spares:
                metrics.WORKER_SPARES.set(self.spares)
        elif "exited" in message:
            pid, code = int(message["exited"]), int(message["code"])
            ended = self._ends.pop(pid, None)
            if ended is None:
                self._early_ends[pid] = code  # before its spawn answer was read
            elif not ended.done():
                ended.set_result(code)

    def _gone(self) -> None:
        """The fork server ended: nothing more will come; fail what waits."""
        self._closed = True
        error = InternalError("the fork server ended")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for spawning in self._spawning.values():
            if not spawning.done():
                spawning.set_exception(error)
        for ended in self._ends.values():
            if not ended.done():
                ended.set_result(-9)  # its workers die with it (PR_SET_PDEATHSIG)
        self._spawning.clear()

    def stop(self) -> None:
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def environment(mpl_dir: str) -> dict[str, str]:
    """A fork server's environment, which its workers inherit."""
    # Built from nothing: no server secret or EPE_ setting reaches user code.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": mpl_dir,
        # One thread per worker: parallelism comes from workers, and more
        # threads would only fight over the same cores.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def configuration(settings: Settings, python: str) -> dict[str, Any]:
    """What a fork server of ``python`` is told: whether to sandbox, the workers' limits."""
    return {"isolate": os.geteuid() == 0 and python == sys.executable,
            # Spares in the server's own environment: where a user's first run goes.
            "spares": spare_workers(settings) if python == sys.executable else 0,
            "network": settings.worker_network == "allow",  # what a spare's sandbox has
            "worker": {"output_limit": settings.output_limit,
                       "graphics_dpi": settings.graphics_dpi,
                       "graphics_size": [settings.graphics_width, settings.graphics_height]}}


def matplotlib_folder() -> str:
    """A folder for matplotlib's cache, which every worker may read."""
    folder = tempfile.mkdtemp(prefix="epe-forkserver-")
    os.chmod(folder, 0o755)
    return folder


@dataclass
class Launched:
    """The default environment's fork server, launched before the host that adopts it."""

    server: ForkServer
    mpl_dir: str

    def discard(self) -> None:
        """Stop it, where no host adopted it (the server did not get as far)."""
        self.server.stop()
        shutil.rmtree(self.mpl_dir, ignore_errors=True)


def launch_default(settings: Settings) -> Launched:
    """The fork server of the server's own Python, launched now, without an event loop."""
    mpl_dir = matplotlib_folder()
    server = ForkServer(sys.executable, environment(mpl_dir),
                        configuration(settings, sys.executable), settings.worker_start_timeout)
    server.launch()
    return Launched(server, mpl_dir)
