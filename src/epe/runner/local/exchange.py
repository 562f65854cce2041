"""Handing Arrow tables to workers as memory-mapped IPC files.

Files live in a private folder in shared memory (``/dev/shm`` where there is
one), readable by the server and the workers' group only. A worker maps the
file and reads it without a copy; pandas makes the only copy. A streamed input
is written batch by batch as it arrives, so the server never holds all of it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext, suppress

import pyarrow as pa

from epe.runner.executor import InputRef, Rows, Shared


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

    def write(self, rows: Rows) -> Shared:
        path = os.path.join(self.dir, f"{uuid.uuid4().hex}.arrow")
        try:
            count, size = self._write(path, rows)
            self._restrict(path, 0o640)
        except BaseException:
            with suppress(FileNotFoundError):  # a query that failed midway
                os.unlink(path)
            raise
        return Shared(InputRef("mmap", path), count, size)

    @staticmethod
    def _write(path: str, rows: Rows) -> tuple[int, int]:
        """The rows written, and their Arrow size in bytes."""
        count = size = 0
        opened = nullcontext(rows.to_reader()) if isinstance(rows, pa.Table) else rows()
        with opened as stream, pa.OSFile(path, "wb") as sink, \
                pa.ipc.new_file(sink, stream.schema) as writer:
            for batch in stream:
                writer.write_batch(batch)
                count += batch.num_rows
                size += batch.nbytes
        return count, size

    def warm_up_and_close(self) -> None:
        """``warm_up``, then the folder removed (done once at start)."""
        try:
            self.warm_up()
        finally:
            self.close()

    def warm_up(self) -> None:
        """Share a small table once: the first request would otherwise pay for what Arrow
        sets up the first time it writes a file (about 4 MB, and its code's page faults)."""
        _remove(self.write(pa.table({"x": pa.array(range(4096), pa.int64())})).ref.location)

    @asynccontextmanager
    async def share(self, rows: Rows) -> AsyncIterator[Shared]:
        # Hand the rows over and forget them: this generator's frame lives until the
        # run ends, and must not keep the server's copy alive once it is written.
        pending = [rows]
        del rows
        shared = await asyncio.to_thread(self.write, pending.pop())
        try:
            yield shared
        finally:
            # Freeing a large file's pages takes milliseconds: not on the event loop,
            # and not before the answer goes out.
            asyncio.get_running_loop().run_in_executor(None, _remove, shared.ref.location)

    @asynccontextmanager
    async def adopt(self, path: str, rows: int) -> AsyncIterator[Shared]:
        """Another process's Arrow file on this machine, shared without writing it again:
        a hard link in this folder, readable by this folder's workers. ``OSError`` when
        the file cannot be linked here (another file system, not ours to link)."""
        mine = os.path.join(self.dir, f"{uuid.uuid4().hex}.arrow")
        os.link(path, mine)
        try:
            self._restrict(mine, 0o640)
            yield Shared(InputRef("mmap", mine), rows)
        finally:
            _remove(mine)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
