"""Handing Arrow tables to workers as memory-mapped IPC files.

Files live in a private folder in shared memory (``/dev/shm`` where there is
one), readable by the server and the workers' group only. A worker maps the
file and reads it without a copy; pandas makes the only copy. A streamed input
is written batch by batch as it arrives, so the server never holds all of it.

A new file is written with ``write`` calls. Once its workers are done with it, the
folder keeps it as its spare, mapped in the server, and the next input is copied into
its pages, which the kernel has already allocated, zeroed and mapped: a third of the time
of writing a new file, which must also be freed again (docs/architecture.md, "The worker
protocol"). One spare per folder and ``SPARE_BYTES`` of spares in the whole process,
at most a quarter of ``/dev/shm`` (``Spares``); an input that outgrows them is written on
with ``write`` calls and removed when its run ends. Workers unmap an input before they
reply (``runner/worker/inputs.py``), so nothing reads a spare while it is written over.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext, suppress

import numpy as np
import pyarrow as pa

from epe.errors import ServerBusy
from epe.runner.executor import InputRef, Rows, Shared

PREFIX = "epe-exchange-"
SPARE_BYTES = 256 << 20  # mapped and kept in spare files, over every folder of a process
MADV_POPULATE_WRITE = 23  # Linux 5.14; Python 3.11's mmap does not name it


class Spares:
    """The bytes the spare files of a process's folders may hold together, and hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.lock = threading.Lock()  # over every folder's spare, too

    def fit(self, folder: str) -> None:
        """At most a quarter of the file system ``folder`` is on: a container's
        ``/dev/shm`` is 64 MB unless given more, and spares must leave the inputs of the
        runs under way their room."""
        fs = os.statvfs(folder)
        with self.lock:
            self.limit = min(self.limit, fs.f_blocks * fs.f_frsize // 4)


SPARES = Spares(SPARE_BYTES)


def remove_stale(base: str | None = None) -> int:
    """Remove the folders of processes that have ended without removing them (killed, or
    crashed): their spare files would hold shared memory until the machine restarts.
    Only this user's folders, made in this PID namespace (where a process id means the
    same process), and only those whose process is gone. The number removed."""
    namespace = _pid_namespace()
    if namespace == "0":
        return 0
    found = 0
    with os.scandir(base or _base_dir() or tempfile.gettempdir()) as entries:
        for entry in entries:
            owner = re.fullmatch(rf"{PREFIX}{namespace}-(\d+)-.+", entry.name)
            if owner is None or not entry.is_dir(follow_symlinks=False) or \
                    entry.stat(follow_symlinks=False).st_uid != os.geteuid() or \
                    _running(int(owner[1])):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            found += 1
    return found


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # no /proc: folders are never taken for stale
        return "0"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _base_dir() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class _File:
    """An input file open for writing (the writable object ``pa.PythonFile`` wraps): with
    ``write`` calls when new, through a shared mapping of its pages once it is a spare,
    up to ``mapped`` bytes."""

    closed = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.mapping: mmap.mmap | None = None
        self.mapped = 0
        self.position = 0
        self.kept = 0  # its size, while it is a folder's spare

    def keep(self, limit: int) -> None:
        """Map the file, its pages in place, to be written over through the mapping, up to
        ``limit`` bytes. Writing new pages through a mapping costs more than ``write``
        calls; writing over mapped ones, much less."""
        self.mapping = mmap.mmap(self.fd, self.size())
        with suppress(OSError):  # before Linux 5.14: the first write over them faults
            self.mapping.madvise(MADV_POPULATE_WRITE)
        self.mapped = limit

    def write(self, data: memoryview) -> int:
        end = self.position + len(data)
        if end <= self.mapped:
            self._map(end)
            assert self.mapping is not None
            # A NumPy copy lets go of the GIL (a slice assignment of the mapping would
            # hold it, and the server's event loop with it, for the whole copy).
            target = np.frombuffer(self.mapping, np.uint8, len(data), self.position)
            target[:] = np.frombuffer(data, np.uint8)
            del target  # the mapping cannot grow while a view of it lives
        else:
            self._unmap()
            view, at = memoryview(data), self.position
            while view:
                written = os.pwrite(self.fd, view, at)
                view, at = view[written:], at + written
        self.position = end
        return len(data)

    def flush(self) -> None:
        pass

    def _map(self, end: int) -> None:
        if self.mapping is not None and end <= len(self.mapping):
            return
        assert self.mapping is not None, "only a kept file is written through a mapping"
        size = min(self.mapped, max(end, 2 * len(self.mapping)))
        # Allocated first: a page the file system has no room for would be a SIGBUS when
        # the copy touches it, and is an ``ENOSPC`` here.
        os.posix_fallocate(self.fd, len(self.mapping), size - len(self.mapping))
        self.mapping.resize(size)

    def _unmap(self) -> None:
        if self.mapping is not None:
            self.mapping.close()
            self.mapping, self.mapped = None, 0

    def finish(self) -> None:
        """Cut the file where the writing ended: an IPC file ends in its footer, and
        nothing of a longer earlier input may stay behind it."""
        if self.mapping is not None and len(self.mapping) != self.position:
            self.mapping.resize(self.position)
        else:
            os.ftruncate(self.fd, self.position)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        self._unmap()
        os.close(self.fd)

    def rewind(self) -> None:
        self.position = 0


class Exchange:
    def __init__(self, worker_gid: int | None, spares: Spares = SPARES,
                 base: str | None = None) -> None:
        self.gid = worker_gid
        self.spares = spares
        # Named after this process: a server killed before it could remove its folders
        # leaves them to the next one that starts (``remove_stale``).
        self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{_pid_namespace()}-{os.getpid()}-",
                                    dir=base or _base_dir())
        self._restrict(self.dir, 0o750)
        spares.fit(self.dir)
        self._written: dict[str, _File] = {}  # by path, until their runs are done
        self._spare: _File | None = None
        self._closed = False

    def _restrict(self, path: str, mode: int) -> None:
        os.chmod(path, mode)
        if self.gid is not None:
            os.chown(path, -1, self.gid)

    def write(self, rows: Rows) -> Shared:
        opened = nullcontext(rows.to_reader()) if isinstance(rows, pa.Table) else rows()
        with opened as stream:
            file = self._take_spare() or _File(os.path.join(self.dir,
                                                            f"{uuid.uuid4().hex}.arrow"))
            try:
                count, size = _write(file, stream)
                self._restrict(file.path, 0o640)
            except BaseException as e:
                file.close()
                with suppress(FileNotFoundError):  # a query that failed midway
                    os.unlink(file.path)
                if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                    raise self._no_room(file.position) from None
                raise
        with self.spares.lock:
            closed = self._closed
            if not closed:
                self._written[file.path] = file
        if closed:  # while it was written: its pages go now, not with this process
            file.close()
            _remove(file.path)
            raise FileNotFoundError(f"{self.dir} was closed while an input was written")
        return Shared(InputRef("mmap", file.path), count, size)

    def _no_room(self, written: int) -> ServerBusy:
        fs = os.statvfs(self.dir)
        return ServerBusy(
            f"the run's input does not fit in the shared memory that hands inputs to "
            f"workers: {os.path.dirname(self.dir)} ({fs.f_blocks * fs.f_frsize / 2**20:.0f} "
            f"MiB) was full after {written / 2**20:.1f} MiB of it; run it again when fewer "
            f"large inputs are under way, or give the server more shared memory "
            f"(docs/deploy.md#shared-memory)")

    def warm_up_and_close(self) -> None:
        """``warm_up``, then the folder removed (done once at start)."""
        try:
            self.warm_up()
        finally:
            self.close()

    def warm_up(self) -> None:
        """Share a small table once: the first request would otherwise pay for what Arrow
        sets up the first time it writes a file (about 4 MB, and its code's page faults)."""
        self.forget(self.write(pa.table({"x": pa.array(range(4096), pa.int64())})))

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
            asyncio.get_running_loop().run_in_executor(None, self.done_with, shared)

    def forget(self, shared: Shared) -> None:
        """``shared``'s file removed (its readers are done with it), never kept as a spare
        (another process may have linked it)."""
        with self.spares.lock:
            file = self._written.pop(shared.ref.location, None)
        if file is not None:
            file.close()
        _remove(shared.ref.location)

    def done_with(self, shared: Shared) -> None:
        """``shared``'s file kept as the spare (its readers are done with it) within the
        budget, else removed."""
        with self.spares.lock:
            file = self._written.pop(shared.ref.location, None)
            if file is None:  # the folder is closed
                return
            size = file.size()
            keep = not self._closed and self._spare is None and size > 0 and \
                self.spares.held + size <= self.spares.limit
            if keep:
                self.spares.held += size
        if not keep:
            file.close()
            _remove(file.path)
            return
        if file.mapping is None:
            file.keep(self.spares.limit)
        with self.spares.lock:
            if self._closed or self._spare is not None:  # closed meanwhile
                self.spares.held -= size
                keep = False
            else:
                self._spare, file.kept = file, size
        if not keep:
            file.close()
            _remove(file.path)

    def _take_spare(self) -> _File | None:
        with self.spares.lock:
            file, self._spare = self._spare, None
            if file is not None:
                self.spares.held -= file.kept
        if file is not None:
            file.rewind()
        return file

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
        with self.spares.lock:
            self._closed = True
            files, self._written = list(self._written.values()), {}
        spare = self._take_spare()
        for file in [*files, *([spare] if spare else [])]:
            file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _write(file: _File, stream: pa.RecordBatchReader) -> tuple[int, int]:
    """The rows written, and their Arrow size in bytes."""
    count = size = 0
    # Not closed: that would close the file, which stays open until its run ends.
    sink = pa.PythonFile(file, mode="w")
    with pa.ipc.new_file(sink, stream.schema) as writer:
        for batch in stream:
            writer.write_batch(batch)
            count += batch.num_rows
            size += batch.nbytes
    file.finish()
    return count, size


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
