"""Giving memory that tasks freed back to the operating system.

Arrow's memory pool (pandas frames made from Arrow come from it too) and glibc's malloc
both keep freed memory for reuse. After a 1,000,000-row table-apply a worker would keep
the ~40 MB of its pandas frame until it ends: with several workers, the memory the
machine keeps paying for would be that of the largest input each worker ever saw. Giving
it back takes well under a millisecond, but the next task faults the pages in again
(a few ms per 40 MB), so workers do it only once idle (``runner/worker/main.py``). Where the
C library has no ``malloc_trim`` (musl, macOS) only Arrow's pool is emptied.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache

import pyarrow as pa


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


def give_back() -> None:
    """Return the free memory of Arrow's pool and of the C heap to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
