"""The worker's end of calls back to the server (runs inside the worker).

While a task runs, user code may need the server (``oml.ds.save`` and the
rest): ``call`` sends a ``call`` frame and blocks for the answer. How the frame
travels is a ``Transport``: the task's own pipe on the local pool
(``PipeTransport``); another executor installs its own. The server checks every
call as the task's caller; nothing here is trusted with more than that user
could do over HTTP.
"""

from __future__ import annotations

import threading
from typing import Any, BinaryIO, Protocol

from epe.runner import protocol


class CallRefused(Exception):
    """The server refused a call; ``kind`` is its error class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Transport(Protocol):
    def exchange(self, header: protocol.Header,
                 payload: bytes) -> tuple[protocol.Header, bytes] | None:
        """Send one call frame and return the answer (``None``: the server is gone)."""
        ...


class PipeTransport:
    """Calls on the pipe the worker's tasks arrive on: the server answers them in the
    middle of the task, before it reads the task's reply."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader, self.writer = reader, writer

    def exchange(self, header: protocol.Header,
                 payload: bytes) -> tuple[protocol.Header, bytes] | None:
        self.writer.write(protocol.encode(header, payload))
        return protocol.read_sync(self.reader)


_lock = threading.Lock()
_transport: Transport | None = None


def install(transport: Transport) -> None:
    global _transport
    _transport = transport


def call(op: str, args: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
    if _transport is None:
        raise RuntimeError("the oml module works only inside a function run by epe")
    with _lock:  # one call at a time, even from user threads
        frame = _transport.exchange({"call": op, **args}, payload)
    if frame is None:
        raise RuntimeError("the server closed the connection")
    header, data = frame
    if not header.get("ok"):
        raise CallRefused(header.get("error", "Error"), header.get("message", "refused"))
    return header, data
