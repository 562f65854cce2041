"""Handing Arrow tables to workers as memory-mapped IPC files.

Files live in a private folder in shared memory (``/dev/shm`` where there is
one), readable by the server and the workers' group only. A worker maps the
file and reads it without a copy; pandas makes the only copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pyarrow as pa


def _base_dir() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class Exchange:
    def __init__(self, worker_gid: int | None) -> None:
        self.gid = worker_gid
        self.dir = tempfile.mkdtemp(prefix="epe-exchange-", dir=_base_dir())
        self._restrict(self.dir, 0o750)

    def _restrict(self, path: str, mode: int) -> None:
        os.chmod(path, mode)
        if self.gid is not None:
            os.chown(path, -1, self.gid)

    def write(self, table: pa.Table) -> str:
        path = os.path.join(self.dir, f"{uuid.uuid4().hex}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self._restrict(path, 0o640)
        return path

    @asynccontextmanager
    async def share(self, table: pa.Table) -> AsyncIterator[str]:
        # Hand the table over and forget it: this generator's frame lives until the
        # run ends, and must not keep the server's copy alive once it is written.
        pending = [table]
        del table
        path = await asyncio.to_thread(self.write, pending.pop())
        try:
            yield path
        finally:
            with suppress(FileNotFoundError):
                os.unlink(path)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
