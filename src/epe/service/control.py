"""The data folder's control socket: how a command asks the server running on that folder
to do what only it can (``epe backup``: the server holds its users' DuckDB files, which
DuckDB lets no other process open meanwhile).

``DATA_DIR/control.sock`` is a Unix socket that the server listens on while it runs. Only
its own user and root may use it: the socket is 0600 in a folder others may not list,
and the server checks who connects (``SO_PEERCRED``) as well. One request, one answer:
a line of JSON each way. A command that finds nobody listening does the work itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("epe.control")

SOCKET = "control.sock"
LINE_LIMIT = 1 << 20

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@contextlib.contextmanager
def _address(data_dir: Path) -> Iterator[str]:
    """The socket's path, short whatever the folder's (a Unix socket's path is at most
    107 bytes): through a descriptor of the folder."""
    fd = os.open(data_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def _peer_allowed(sock: socket.socket) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


async def serve(data_dir: Path, handlers: dict[str, Handler]) -> Callable[[], Awaitable[None]]:
    """Listen on the folder's control socket; what stops listening."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _peer_allowed(writer.get_extra_info("socket")):
                return
            request = orjson.loads(await reader.readline())
            handler = handlers.get(str(request.get("op")))
            reply = {"ok": False, "error": f"no such request: {request.get('op')!r}"} \
                if handler is None else await handler(request)
            writer.write(orjson.dumps(reply) + b"\n")
            await writer.drain()
        except Exception:
            log.exception("a request on the control socket failed")
        finally:
            writer.close()

    with _address(data_dir) as path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a server that was killed
        server = await asyncio.start_unix_server(answer, path, limit=LINE_LIMIT)
        os.chmod(path, 0o600)

    async def stop() -> None:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(data_dir / SOCKET)

    return stop


def ask(data_dir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """The running server's answer to ``request``, or ``None`` if no server listens on
    the folder (blocking)."""
    if not (data_dir / SOCKET).exists():
        return None
    with _address(data_dir) as path, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # the socket of a server that was killed
        except PermissionError:
            raise ConnectionError(f"the server on {data_dir} runs as another user: only that "
                                  "user (or root) may ask it; run the command as that user"
                                  ) from None
        sock.sendall(orjson.dumps(request) + b"\n")
        with sock.makefile("rb") as answer:
            line = answer.readline(LINE_LIMIT)
    if not line:
        raise ConnectionError("the server on this data folder closed the control socket "
                              "without an answer; its log says why")
    reply: dict[str, Any] = orjson.loads(line)
    return reply
