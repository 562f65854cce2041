"""The worker process: the only place user code runs.

Forked by the fork server (``zygote``), which has imported the heavy libraries
already, into its sandbox (``sandbox``). ``serve`` then lowers the worker's
resource limits, moves the protocol off fds 0/1 (so that anything user code
writes to the real stdout can't corrupt a frame), says it is ready, and answers
one frame per task.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import linecache
import os
import resource
import select
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

from epe.runner import protocol
from epe.runner.worker import channel, heap, inputs

CAPTURE_LIMIT = 1024 * 1024  # characters of stdout/stderr kept per task
SCRIPT_CACHE_SIZE = 256


def set_limits(limits: dict[str, int | None]) -> None:
    """The worker's own rlimits. Memory and processes are ``None`` where its user's
    cgroup bounds them (``runner.limits``): an address-space limit would refuse work
    that fits in memory."""
    for name, value in (("RLIMIT_AS", limits["memory"]),
                        ("RLIMIT_NPROC", limits["processes"]),
                        ("RLIMIT_NOFILE", limits["open_files"])):
        if value is None:
            continue
        kind = getattr(resource, name)
        _soft, hard = resource.getrlimit(kind)
        cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files of user crashes


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the server dies, even by kill -9: user
    code of a job the restarted server reports FAILED must not go on running."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the server died before the line above
        os._exit(1)


def take_protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """Keep private copies of fds 0 and 1 for frames; point 0 and 1 at /dev/null."""
    reader = os.fdopen(os.dup(0), "rb", buffering=0)
    writer = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    return reader, writer


class _Capture(io.TextIOBase):
    """A text sink that keeps at most ``CAPTURE_LIMIT`` characters."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        room = CAPTURE_LIMIT - self._size
        if room > 0:
            self._parts.append(s[:room])
            self._size += min(len(s), room)
        if len(s) > room:
            self.truncated = True
        return len(s)

    def text(self) -> str:
        return "".join(self._parts) + ("\n[output truncated]" if self.truncated else "")


class ScriptCache:
    """Compiled entry points by script key, so a hot script is never recompiled."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, Callable[..., Any]] = OrderedDict()

    def get(self, key: str, source: str) -> Callable[..., Any]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._load(key, source)
            self._entries[key] = entry
            if len(self._entries) > SCRIPT_CACHE_SIZE:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)
        linecache.cache.pop(self._filename(key), None)

    @staticmethod
    def _filename(key: str) -> str:
        return f"<script {hashlib.sha1(key.encode()).hexdigest()[:8]}>"

    @classmethod
    def _load(cls, key: str, source: str) -> Callable[..., Any]:
        from epe.core.scripts import parse_script, pick_entry

        candidates = parse_script(source)
        filename = cls._filename(key)
        # Registered so that tracebacks show the user's source lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = {"__name__": "__epe_script__"}
        exec(compile(source, filename, "exec"), namespace)
        return pick_entry(candidates, namespace)


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of user code on (our frames are noise)."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<script"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Worker:
    def __init__(self, limits: dict[str, Any]) -> None:
        from epe.runner.worker.graphics import FigureCapture
        from epe.runner.worker.models import ModelTasks

        self.output_limit: int = limits["output_limit"]
        self.memory_note = ""  # what a MemoryError's message adds: the limit that refused
        self.scripts = ScriptCache()
        self.capture = FigureCapture(limits["graphics_dpi"], tuple(limits["graphics_size"]),
                                     self.output_limit)
        self.models = ModelTasks(self.scripts.get)  # loaded models, kept between tasks

    def handle(self, header: protocol.Header) -> tuple[protocol.Header, bytes]:
        from epe.runner.worker.invoke import Batch, BatchOutput
        from epe.runner.worker.models import ModelOutput

        out, err = _Capture(), _Capture()
        batch: Batch | None = None
        result: BatchOutput | ModelOutput
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if header["kind"] == protocol.MODEL_TASK:
                    result = self.models.run(header)
                else:
                    func = self.scripts.get(header["script_key"], header["source"])
                    batch = Batch(func, header, self.output_limit, self.capture)
                    result = batch.run()
        except BaseException as e:  # SystemExit too: user code must not end the worker
            unit = batch.position if batch is not None else None
            return self._failure(e, unit, out, err, self.memory_note), b""
        finally:
            _close_figures()
        reply = {"ok": True, "stdout": out.text(), "stderr": err.text(),
                 "sizes": [len(f) for f in result.fragments], "frames": result.frames}
        return reply, b"".join(result.fragments)

    @staticmethod
    def _failure(e: BaseException, unit: int | None, out: _Capture, err: _Capture,
                 memory_note: str) -> protocol.Header:
        from epe.errors import EpeError, ScriptFailed

        if isinstance(e, EpeError):
            error, message, tb = type(e).__name__, e.message, None
        else:
            error, message = ScriptFailed.__name__, f"{type(e).__name__}: {e}"
            if isinstance(e, MemoryError) or (isinstance(e, OSError) and
                                              e.errno == errno.ENOMEM):  # mmap's refusal
                message += memory_note
            tb = user_traceback(e)
        return {"ok": False, "error": error, "message": message, "traceback": tb,
                "unit": unit, "stdout": out.text(), "stderr": err.text()}


def _close_figures() -> None:
    # No figure may leak from one task into the next in the same worker.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


USERLIB = os.path.join(os.path.dirname(__file__), "userlib")


def preload() -> None:
    """What every worker needs imported, done once in the fork server."""
    sys.path.insert(0, USERLIB)  # ``import oml`` for user code, here only
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow

    # OMP_NUM_THREADS=1 keeps BLAS from fighting the other workers for cores, but
    # Arrow reads it too; turning the input into pandas is the one step worth
    # spreading over the cores (a table-apply has one worker, and it halves that).
    pyarrow.set_cpu_count(len(os.sched_getaffinity(0)))
    _warm_up_conversion()

    # The batch code too, not by each worker's first task: importing in a forked worker
    # touches pages it would otherwise share, which made that task ~10 ms slower.
    import epe.core.results
    import epe.core.scripts
    import epe.runner.worker.invoke
    import epe.runner.worker.models  # noqa: F401


def _warm_up_conversion() -> None:
    # The first Arrow-to-pandas conversion starts Arrow's threads and loads the code
    # and caches every later one uses: paid here, not by the first request.
    import numpy as np
    import pyarrow as pa

    batch = pa.record_batch({"i": np.arange(4096), "f": np.linspace(0.0, 1.0, 4096),
                             "s": pa.array(["x"] * 4096)})
    pa.Table.from_batches([batch, batch]).to_pandas()
    heap.give_back()


WARM_UP_TASK: protocol.Header = {
    "kind": "do_eval", "call": "kwargs", "frames_as_columns": False, "images_as_list": True,
    "source": "def f():\n    return 1\n", "script_key": "epe-warm-up", "kwargs": {},
    "graphics": False, "units": [[0, 0]], "input": None, "input_type": "default",
    "pickled_kwargs": None, "result_format": "json"}


def warm_up(worker: Worker) -> None:
    """In a spare (a child forked ahead of need): run a task of our own through the task
    path, so that the copy-on-write faults a new worker takes on its first task (the
    pages of every object that path touches) are taken now, not in a user's first run.

    At normal priority: lowering it would need the right to raise it again
    (``CAP_SYS_NICE``, which a container's root often lacks), and a spare is made only
    while no worker is being asked for."""
    worker.handle(WARM_UP_TASK)
    worker.scripts.forget(WARM_UP_TASK["script_key"])
    heap.give_back()


# What tasks freed (an input's frame, the user's objects) stays in the worker's heap,
# ready for the next task: handing it back and faulting it in again costs a few ms per
# 40 MB. Once the worker has been idle this long it goes back to the system, or each
# worker would keep the memory of the largest task it ever ran.
IDLE_BEFORE_GIVING_BACK = 0.5


def readable(stream: BinaryIO, seconds: float) -> bool:
    """Whether a frame starts arriving within ``seconds`` (the stream is unbuffered)."""
    return bool(select.select([stream], [], [], seconds)[0])


def serve(limits: dict[str, Any], worker: Worker | None = None) -> None:
    """Be a worker on fds 0 and 1 until the server closes them (``worker``: one made
    ready in the fork server already, inherited through the fork)."""
    set_limits(limits)
    reader, writer = take_protocol_streams()
    channel.install(channel.PipeTransport(reader, writer))
    worker = worker or Worker(limits)
    if limits["memory"] is not None:
        worker.memory_note = (f" (this worker's address space is limited to "
                              f"{limits['memory'] / 2**30:g} GiB: EPE_WORKER_MEMORY_LIMIT)")
    writer.write(protocol.encode({"ready": True, "pid": os.getpid()}))
    while True:
        if not readable(reader, IDLE_BEFORE_GIVING_BACK):
            heap.give_back()
        if (frame := protocol.read_sync(reader)) is None:
            break
        header, _payload = frame
        reply, payload = worker.handle(header)
        try:
            inputs.release()  # before the reply: then the server may write over the file
        except Exception as e:  # what user code holds could change under it: not here
            os.write(2, f"epe worker ends: {type(e).__name__}: {e}\n".encode())
            writer.write(protocol.encode(reply, payload))
            break
        writer.write(protocol.encode(reply, payload))

