"""Giving freed memory back to the system, in a fresh process so that what it
measures is only what the test allocates: memory freed into Arrow's pool and into
glibc's heap stays resident until ``heap.give_back``."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
import pyarrow as pa
from epe.runner.worker import heap

def resident():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon"))

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def fill_heap():
    # Small blocks come from the heap, not from mmap; the last one stays, so the
    # heap cannot simply shrink from its top when the others are freed.
    blocks = [libc.malloc(32 * 1024) for _ in range(2048)]
    for b in blocks:
        ctypes.memset(b, 1, 32 * 1024)
    for b in blocks[:-1]:
        libc.free(b)

def fill_arrow_pool():
    array = pa.array(range(8_000_000), pa.int64())
    del array

start = resident()
{fill}()
held = resident()
heap.give_back()
print(start, held, resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("fill", "size"), [("fill_heap", 64 << 20), ("fill_arrow_pool", 64 << 20)])
def test_give_back_returns_freed_memory(fill: str, size: int) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("{fill}", fill)],
                         capture_output=True, text=True, check=True).stdout
    start, held, after = map(int, out.split())
    assert held - start > size * 0.75, "the freed memory should still be resident"
    assert held - after > size * 0.75, "give_back should have returned it"
