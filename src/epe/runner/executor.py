"""The executor interface: the one thing the services know about running code.

A ``Task`` says what to run over which units of which shared input; an
``Executor`` runs it somewhere (``runner.local``: a warm pool of processes on
this machine) and returns one JSON fragment per unit, or raises one of
``epe.errors``. Input tables reach workers through ``share``, which hands back
an opaque ``InputRef`` that the worker resolves (``runner.worker.inputs``): a
memory-mapped Arrow file on this machine, an object-store reference on a
cluster. What crosses to a worker and back is ``runner.protocol``, shared by
every backend; ``tests/integration/test_executor_conformance.py`` is what a
backend must pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import pyarrow as pa

from epe.core.assemble import Fragment
from epe.core.operations import Calling
from epe.core.plan import Unit
from epe.errors import EpeError

# Answers a call user code makes back to the server mid-task (``import oml`` inside
# a function: datastores, grants, sync), acting as the task's caller. It gets the
# call's JSON header and payload and returns the reply's; it raises EpeErrors.
CallHandler = Callable[[dict[str, Any], bytes], Awaitable[tuple[dict[str, Any], bytes]]]


# What a run hands its workers: rows in hand, or a stream of them to read (in a
# thread; blocking) while its context is open, such as a query on an open cursor.
# A stream is copied batch by batch, so the server never holds the whole input.
Rows: TypeAlias = pa.Table | Callable[[], AbstractContextManager[pa.RecordBatchReader]]

# The message a run cancels ``Executor.run`` with when the run's time limit comes, so
# that an executor can tell a timeout from a caller that went away (its metrics do).
TIME_LIMIT = "epe: the run's time limit"


@dataclass(frozen=True)
class Tenant:
    """The user a pool of workers serves, for the pool's whole life: workers never pass
    from one user to another. ``uid``: the host uid their workers run as, when the
    executor isolates users (allocated by the services, never reused).
    ``memory_limit``: bytes all of the user's workers on one machine may hold together
    (``None``: ``EPE_USER_MEMORY_LIMIT``)."""

    name: str
    uid: int | None = None
    memory_limit: int | None = None


@dataclass(frozen=True)
class InputRef:
    """Where a worker finds a task's input: ``scheme`` says how to resolve ``location``
    (``mmap``: an Arrow IPC file's path on this machine). Opaque to the services."""

    scheme: str
    location: str


@dataclass(frozen=True)
class Shared:
    ref: InputRef  # what tasks name as their ``input_ref``
    rows: int
    bytes: int = 0  # the Arrow size of its rows, for usage accounting


# A task that scores with a deployed model rather than calling a function
# (``runner.worker.models``; docs/models.md): its ``kwargs`` say what to do, and the
# worker goes by its kind; its calling is that of a function over data, never used.
MODEL_TASK = "model"
MODEL_CALLING = Calling("data")


@dataclass(frozen=True)
class Task:
    kind: str  # the operation's name; workers go by ``calling`` (a model task: by kind)
    calling: Calling  # how the worker calls the function over the units
    source: str
    script_key: str  # stable for one version of one script, so workers can cache it
    kwargs: dict[str, Any] = field(default_factory=dict)
    graphics: bool = False
    units: tuple[Unit, ...] = ()
    input_ref: InputRef | None = None  # what ``share`` handed out
    input_type: str = "default"
    pickled_kwargs: str | None = None  # base64 cloudpickle, opened in the worker only
    result_format: str = "json"  # or "pickle" (docs/api.md#the-python-native-transport)
    calls: CallHandler | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Usage:
    """What the kernel counted for the workers while they ran one task: CPU seconds
    (user and system) and peak resident memory in bytes. Read by the executor from
    outside the worker (cgroup or /proc statistics), never from what user code reports;
    usage accounting (docs/operations.md) sums it per run."""

    cpu_seconds: float = 0.0
    peak_memory: int = 0


@dataclass(frozen=True)
class TaskResult:
    fragments: list[Fragment]
    stdout: str = ""
    stderr: str = ""
    usage: Usage = Usage()


class TaskFailed(Exception):
    """User code failed at position ``unit`` of the task's units (``None``: before any)."""

    def __init__(self, error: EpeError, unit: int | None, usage: Usage = Usage()) -> None:
        super().__init__(error.message)
        self.error = error
        self.unit = unit
        self.usage = usage


@dataclass(frozen=True)
class ExecutorStatus:
    """Whether an executor can run tasks now, and what an operator wants to see of it."""

    ready: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    @property
    def capacity(self) -> int:
        """How many tasks can run at once (caps the degree of parallelism)."""
        ...

    @property
    def warm(self) -> int:
        """The workers it counts against the server's warm bound: those it has, alive or
        starting (at least the one it starts with), or all it may have where it cannot
        say (a Ray pool, grown by the node agents)."""
        ...

    async def start(self) -> None: ...

    def share(self, rows: Rows) -> AbstractAsyncContextManager[Shared]:
        """Make ``rows`` readable by workers for the duration of the block."""
        ...

    async def run(self, task: Task, timeout: float) -> TaskResult: ...

    def status(self) -> ExecutorStatus:
        """Whether tasks can run now (the readiness check), cheaply: never a task."""
        ...

    async def stop(self) -> None: ...
