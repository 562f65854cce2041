"""Logging: plain lines for a terminal, or one JSON object a line (``EPE_LOG_FORMAT``).

The request being answered and the job being run are kept in context variables, set
by the HTTP middleware and the job manager; every line logged meanwhile carries them
(``asyncio`` tasks and ``asyncio.to_thread`` copy the context, so lines logged by a
job or in a worker thread do too). What is logged never includes a token, a password
or a parameter's value: only names, counts, codes and times.

A line logged on the event loop costs it only a queue put: the ids are noted on the
record there, and a thread of its own formats and writes the lines, so a slow
reader of standard error never holds up requests. That thread is woken only by the
first line after it last wrote: it lets ``WRITE_INTERVAL`` pass (the request that logged
the line goes on meanwhile) and then writes all that gathered. Waking it to write each
line made the logging thread and the event loop take turns for the CPU and the GIL,
which cost a sync run on a busy 2-core machine about a tenth of its latency
(docs/benchmarks.md); looking at the queue every interval instead woke an idle server
fifty times a second for nothing. ``stop`` writes what is queued.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import queue
import re
import secrets
import threading
from contextvars import ContextVar
from logging.handlers import QueueHandler
from typing import Any, Literal

import orjson

LogFormat = Literal["plain", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("epe_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("epe_job_id", default=None)

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A request id a client sends is kept if it is this tame (no spaces, quotes or control
# characters that could forge a log line); otherwise the server makes one.
_GIVEN_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id_from(given: str | None) -> str:
    """The client's ``X-Request-ID`` if it is acceptable, else a new random one."""
    if given is not None and _GIVEN_ID.fullmatch(given):
        return given
    return secrets.token_hex(8)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, requestId, jobId and the
    fields a caller passed as ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id, job_id = ids_of(record)
        if request_id is not None:
            entry["requestId"] = request_id
        if job_id is not None:
            entry["jobId"] = job_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def ids_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The request and job ids of a record: noted when it was queued, or the current ones."""
    if hasattr(record, "request_id"):
        return record.request_id, getattr(record, "job_id", None)
    return REQUEST_ID.get(), JOB_ID.get()


class _Queued(QueueHandler):
    """Puts records in the writer's queue with the ids of the context they come from;
    formatting is left to the writer thread."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__(writer.lines)
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.request_id, record.job_id = REQUEST_ID.get(), JOB_ID.get()
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        self.writer.lines.put(record)
        self.writer.wake()


WRITE_INTERVAL = 0.02  # seconds a woken writer lets pass before it writes what gathered


class _Writer:
    """The thread that formats and writes queued lines, at most once every
    ``WRITE_INTERVAL`` while lines come, and sleeps while none do."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        # Set by the first line queued after the writer last looked; a record stays in
        # the queue until it is written, so ``flush`` from another thread keeps the order.
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="epe-log-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        if not self._pending.is_set():  # one wake-up a batch: the rest only read a flag
            self._pending.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._pending.wait()
            self._stop.wait(WRITE_INTERVAL)
            self._pending.clear()  # before looking: a line queued from now on wakes it
            self.write_queued()

    def write_queued(self) -> None:
        while True:
            try:
                record = self.lines.get_nowait()
            except queue.Empty:
                return
            self.handler.handle(record)

    def stop(self) -> None:
        self._stop.set()
        self._pending.set()
        self._thread.join()
        self.write_queued()


_writer: _Writer | None = None


def flush() -> None:
    """Write what is queued now, from this thread (``epe serve`` does before it says it
    serves, so that what was logged while it started comes before that line)."""
    if _writer is not None:
        _writer.write_queued()


def configure(log_format: LogFormat, level: str) -> None:
    """Send every logger's lines (uvicorn's and warnings too) to stderr in one format,
    written by a thread of their own."""
    global _writer
    stop()
    # What no line of ours prints is not gathered for each record: the caller's file and
    # line (a walk up the stack), thread and process names (the logging HOWTO's
    # "Optimization" section).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN))
    _writer = _Writer(handler)
    root = logging.getLogger()
    root.handlers[:] = [_Queued(_writer)]
    root.setLevel(level)
    logging.captureWarnings(True)
    atexit.register(stop)


def stop() -> None:
    """Write the queued lines and stop the writer thread (at exit, at the latest); lines
    logged afterwards are written at once."""
    global _writer
    if _writer is not None:
        _writer.stop()
        logging.getLogger().handlers[:] = [_writer.handler]
        _writer = None
