"""Frames between the server and a worker.

A frame is ``<u32 header length><u64 payload length><header><payload>``: the
header is a small JSON object (orjson), the payload opaque bytes (a finished
JSON result, later Arrow data). Nothing here is ever unpickled: the server only
parses JSON it can trust the shape of.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, BinaryIO

import orjson

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
