"""The worker's end of calls back to the server (runs inside the worker).

While a task runs, user code may need the server (``oml.ds.save`` and the
rest): it sends a ``call`` frame on the task's own pipe and blocks for the
answer. The server checks every call as the task's caller; nothing here is
trusted with more than that user could do over HTTP.
"""

from __future__ import annotations

import threading
from typing import Any, BinaryIO

from epe.runner import protocol

_lock = threading.Lock()
_streams: tuple[BinaryIO, BinaryIO] | None = None


class CallRefused(Exception):
    """The server refused a call; ``kind`` is its error class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def connect(reader: BinaryIO, writer: BinaryIO) -> None:
    global _streams
    _streams = (reader, writer)


def call(op: str, args: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
    if _streams is None:
        raise RuntimeError("the oml module works only inside a function run by epe")
    reader, writer = _streams
    with _lock:  # one call at a time, even from user threads
        writer.write(protocol.encode({"call": op, **args}, payload))
        frame = protocol.read_sync(reader)
    if frame is None:
        raise RuntimeError("the server closed the connection")
    header, data = frame
    if not header.get("ok"):
        raise CallRefused(header.get("error", "Error"), header.get("message", "refused"))
    return header, data
