"""Resolving a task's input reference to its rows (in the worker).

The server hands a worker an ``InputRef`` (``runner.executor``) as a scheme and
a location; each scheme is one resolver here. ``mmap``: an Arrow IPC file on
this machine, memory-mapped, so no copy is made until pandas needs one (and
pandas' string columns keep pointing into the mapping).

The server writes its next input over the same file once a task is done with it
(``runner.local.exchange``), so nothing may read the mapping after the task: ``release``
unmaps a task's inputs when it ends, and an input that user code still holds (a frame
kept in a global) is first moved into the worker's own memory, at the same address.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from epe.errors import InternalError

MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2

_mapped: list[mmap.mmap] = []  # the current task's inputs


def read_memory_mapped(path: str) -> pa.Table:
    with open(path, "rb") as file:
        mapping = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
    _mapped.append(mapping)
    return pa.ipc.open_file(pa.py_buffer(mapping)).read_all()


RESOLVERS: dict[str, Callable[[str], pa.Table]] = {"mmap": read_memory_mapped}


def resolve(ref: dict[str, Any]) -> pa.Table:
    """The rows ``ref`` (a task header's ``input``) names."""
    resolver = RESOLVERS.get(str(ref.get("scheme")))
    if resolver is None:
        raise InternalError(f"this worker cannot read an input of scheme {ref.get('scheme')!r}")
    return resolver(str(ref["location"]))


def release() -> int:
    """Unmap the inputs of the task that ended; the number that were still held and so
    copied into the worker's memory."""
    held = [mapping for mapping in _mapped if not _closed(mapping)]
    _mapped.clear()
    if held:
        gc.collect()  # a frame in a reference cycle is not held by anyone
        held = [mapping for mapping in held if not _closed(mapping)]
    for mapping in held:
        _detach(mapping)
    return len(held)


def _closed(mapping: mmap.mmap) -> bool:
    try:
        mapping.close()
    except BufferError:  # Arrow buffers over it live on
        return False
    return True


def _detach(mapping: mmap.mmap) -> None:
    """Put a private copy of ``mapping``'s pages where they are mapped: what points into
    them keeps its contents, whatever the server then writes to the file. The copy
    replaces the mapping in one ``mremap``, so a thread reading it meanwhile sees the
    same bytes throughout; the ``mmap`` object unmaps the copy when it goes."""
    view = np.frombuffer(mapping, np.uint8)
    address, size = view.ctypes.data, len(view)
    del view
    length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    copy = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE,
                      mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if copy in (None, ctypes.c_void_p(-1).value):
        raise MemoryError(f"copying an input of {size} bytes that user code still holds")
    ctypes.memmove(copy, address, size)
    _libc.mprotect(copy, length, mmap.PROT_READ)  # read-only, as the mapping was
    moved = _libc.mremap(copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, address)
    if moved != address:
        raise InternalError(f"moving a held input's copy into place: errno {ctypes.get_errno()}")


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mremap.restype = ctypes.c_void_p
    libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                            ctypes.c_void_p]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


_libc = _load_libc()
