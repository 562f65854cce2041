"""Resolving a task's input reference to its rows (in the worker).

The server hands a worker an ``InputRef`` (``runner.executor``) as a scheme and
a location; each scheme is one resolver here. ``mmap``: an Arrow IPC file on
this machine, memory-mapped, so no copy is made until pandas needs one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from epe.errors import InternalError


def read_memory_mapped(path: str) -> pa.Table:
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


RESOLVERS: dict[str, Callable[[str], pa.Table]] = {"mmap": read_memory_mapped}


def resolve(ref: dict[str, Any]) -> pa.Table:
    """The rows ``ref`` (a task header's ``input``) names."""
    resolver = RESOLVERS.get(str(ref.get("scheme")))
    if resolver is None:
        raise InternalError(f"this worker cannot read an input of scheme {ref.get('scheme')!r}")
    return resolver(str(ref["location"]))
