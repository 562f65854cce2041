"""What passes between the server and a worker, for every executor.

A frame is ``<u32 header length><u64 payload length><header><payload>``: the
header is a small JSON object (orjson), the payload opaque bytes (a finished
JSON result, a datastore's pickles). Nothing here is ever unpickled: the server
only parses JSON it can trust the shape of.

A task goes out as ``task_header``; the worker answers with frames that are
either calls back to the server (``is_call``, answered by ``answer_call``) or
its reply, which ``task_result`` turns into a ``TaskResult`` or a
``TaskFailed``. Each backend carries the frames its own way (a pipe for the
local pool).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, BinaryIO

import orjson

from epe import errors
from epe.core.assemble import Fragment
from epe.runner.executor import MODEL_TASK, CallHandler, Task, TaskFailed, TaskResult, Usage

__all__ = ["MODEL_TASK", "answer_call", "encode", "is_call", "read_async", "read_sync",
           "task_failure", "task_header", "task_result"]

log = logging.getLogger("epe.runner")

_PREFIX = struct.Struct("<IQ")
Header = dict[str, Any]


def encode(header: Header, payload: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return _PREFIX.pack(len(head), len(payload)) + head + payload


def read_sync(stream: BinaryIO) -> tuple[Header, bytes] | None:
    """Read one frame from a blocking stream; ``None`` at end of stream."""
    prefix = _read_exactly(stream, _PREFIX.size)
    if prefix is None:
        return None
    head_len, payload_len = _PREFIX.unpack(prefix)
    head = _read_exactly(stream, head_len) or b""
    payload = _read_exactly(stream, payload_len) or b"" if payload_len else b""
    return orjson.loads(head), payload


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = stream.read(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


async def read_async(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """Read one frame; raises ``asyncio.IncompleteReadError`` if the worker is gone."""
    head_len, payload_len = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
    head = await reader.readexactly(head_len)
    payload = await reader.readexactly(payload_len) if payload_len else b""
    return orjson.loads(head), payload


# -- what crosses between a server and a worker, whatever carries the frames ---------------

# The errors a worker may report by name; anything else is our bug.
_WORKER_ERRORS: dict[str, type[errors.EpeError]] = {
    cls.__name__: cls for cls in (errors.ScriptFailed, errors.ScriptInvalid,
                                  errors.ResultNotSerializable, errors.OutputTooLarge,
                                  errors.InvalidRequest)
}


def task_header(task: Task) -> Header:
    """The frame header that asks a worker to run ``task``."""
    ref = task.input_ref
    return {"kind": task.kind, "call": task.calling.call,
            "frames_as_columns": task.calling.frames_as_columns,
            "images_as_list": task.calling.images_as_list,
            "source": task.source, "script_key": task.script_key,
            "kwargs": task.kwargs, "graphics": task.graphics, "units": task.units,
            "input": None if ref is None else {"scheme": ref.scheme, "location": ref.location},
            "input_type": task.input_type, "pickled_kwargs": task.pickled_kwargs,
            "result_format": task.result_format}


def task_result(reply: Header, payload: bytes, usage: Usage) -> TaskResult:
    """A worker's reply as the task's result; raises ``TaskFailed`` for a failure.
    ``usage``: what the kernel counted for the task (never what the reply says)."""
    if not reply.get("ok"):
        raise task_failure(reply, usage)
    fragments, offset = [], 0
    for size, is_frame in zip(reply["sizes"], reply["frames"], strict=True):
        fragments.append(Fragment(payload[offset:offset + size], is_frame))
        offset += size
    return TaskResult(fragments, stdout=reply.get("stdout", ""), stderr=reply.get("stderr", ""),
                      usage=usage)


def task_failure(reply: Header, usage: Usage) -> TaskFailed:
    kind = _WORKER_ERRORS.get(reply.get("error", ""), errors.InternalError)
    error = kind(reply.get("message", "the function failed"),
                 traceback=reply.get("traceback"), stdout=reply.get("stdout") or None,
                 stderr=reply.get("stderr") or None)
    return TaskFailed(error, reply.get("unit"), usage)


def is_call(reply: Header) -> bool:
    """Whether a frame from a worker is a call back to the server, not its reply."""
    return "call" in reply


async def answer_call(calls: CallHandler | None, call: Header,
                      payload: bytes) -> tuple[Header, bytes]:
    """A worker's call answered, or its refusal as an error reply (never a crash)."""
    try:
        if calls is None:
            raise errors.InvalidRequest("this task cannot call back to the server")
        answer, data = await calls(call, payload)
        return {"ok": True, **answer}, data
    except errors.EpeError as e:
        return {"ok": False, "error": type(e).__name__, "message": e.message}, b""
    except Exception:
        log.exception("answering a worker's %r call failed", call.get("call"))
        return {"ok": False, "error": "InternalError",
                "message": "the server failed to answer this call; this is a bug in epe"}, b""
