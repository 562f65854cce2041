"""The operations, one record each: everything that differs between them.

The router, planning, the worker, graphics, the API's version listing, the
client and the CLI all read these records, and ask them, never the request
classes, what an operation does. Adding an operation is one record (plus its
request model and its tests): an entry in ``OPERATIONS`` here, or a module
``EPE_PLUGINS`` names that calls ``register`` (docs/architecture.md#adding-an-operation).
Pure data: the client imports it too.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from epe.core.requests import (
    DoEvalRequest,
    GroupApplyRequest,
    IndexApplyRequest,
    InputRequest,
    ParallelRequest,
    RowApplyRequest,
    RunRequest,
    TableApplyRequest,
)

# The five operations OML defines (the client's own names for them).
Kind = Literal["do_eval", "table_apply", "row_apply", "group_apply", "index_apply"]

# Where every path of the API lives, and its versions (v1 deprecated, v2 current).
API_ROOT = "/oml/api/py-scripts"
API_VERSIONS = ("v1", "v2")
# The day OML retired v1: its version metadata says DEPRECATED@2026-03-31, and its
# answers carry Deprecation and Sunset headers for that day.
V1_RETIRED = datetime.date(2026, 3, 31)

# How each unit calls the function: f(**kw), f(i, **kw) or f(data, **kw).
Call = Literal["kwargs", "index", "data"]
# How the units' values are put together:
#   single:  the one unit's value
#   rows:    DataFrames concatenated into records, otherwise a list per chunk
#   keyed:   an object keyed by group
#   list:    a list in index order
Shape = Literal["single", "rows", "keyed", "list"]


@dataclass(frozen=True)
class Input:
    """How the input reaches the function's units, and what that asks of a request."""

    name: str
    # The fields this input reads from the body: an operation's request model derives
    # from this class (checked when the operation is made).
    request: type[RunRequest]
    call: Call
    unit: Literal["chunk", "group", "index"] | None  # how an error names one unit; None: one
    query: bool  # its rows are those of the body's ``input`` query

    @property
    def parallel(self) -> bool:
        """Whether its units may run in parallel (``parallelFlag``, ``parallel``)."""
        return self.unit is not None


#   none:    no input (do-eval); one unit
#   index:   no input; one unit per index 1..times
#   whole:   the query's rows streamed to workers; one unit of all of them
#   chunks:  the query's rows streamed to workers; one unit per ``rows`` rows
#   groups:  the query's rows sorted into groups in the server; one unit per group
NONE = Input("none", RunRequest, call="kwargs", unit=None, query=False)
INDEX = Input("index", IndexApplyRequest, call="index", unit="index", query=False)
WHOLE = Input("whole", InputRequest, call="data", unit=None, query=True)
CHUNKS = Input("chunks", RowApplyRequest, call="data", unit="chunk", query=True)
GROUPS = Input("groups", GroupApplyRequest, call="data", unit="group", query=True)
INPUTS = {i.name: i for i in (NONE, INDEX, WHOLE, CHUNKS, GROUPS)}


@dataclass(frozen=True)
class Calling:
    """What a worker needs to know of an operation to run its units: it knows no
    operations, so that one a server registers runs on any worker."""

    call: Call
    frames_as_columns: bool = False  # a DataFrame value in pandas' column -> {row} form
    images_as_list: bool = False  # with graphics: a list of images, not keyed by unit


@dataclass(frozen=True)
class Operation:
    kind: str  # as the metrics and the audit trail name it: ``group_apply``
    request: type[RunRequest]
    summary: str
    input: Input
    shape: Shape
    frames_as_columns: bool = False  # a DataFrame value in pandas' column -> {row} form

    def __post_init__(self) -> None:
        if not issubclass(self.request, self.input.request):
            raise TypeError(f"operation {self.kind}: its input {self.input.name!r} reads the "
                            f"fields of {self.input.request.__name__}, which "
                            f"{self.request.__name__} does not derive from")
        if self.input.parallel != issubclass(self.request, ParallelRequest):
            raise TypeError(f"operation {self.kind}: {self.request.__name__} must derive from "
                            f"ParallelRequest exactly when its input {self.input.name!r} "
                            "has several units")

    @property
    def path(self) -> str:
        """The path segment, as OML spells it: ``group-apply``."""
        return self.kind.replace("_", "-")

    @property
    def parallel(self) -> bool:
        """Whether its units may run in parallel (``parallelFlag``, ``parallel``)."""
        return self.input.parallel

    @property
    def unit(self) -> str | None:
        """How an error names the failing unit: chunk, group, index; None for one unit."""
        return self.input.unit

    @property
    def calling(self) -> Calling:
        return Calling(self.input.call, self.frames_as_columns,
                       images_as_list=self.shape == "single")

    @property
    def required(self) -> tuple[str, ...]:
        """The body fields a request must carry (``input``, ``rows``, ``groupBy``...)."""
        return tuple(f.alias or name for name, f in self.request.model_fields.items()
                     if f.is_required())


OPERATIONS: dict[str, Operation] = {op.kind: op for op in (
    Operation("do_eval", DoEvalRequest, "Run a function with no input: f(**parameters).",
              input=NONE, shape="single"),
    Operation("table_apply", TableApplyRequest,
              "Run a function once on the whole input query result.",
              input=WHOLE, shape="single"),
    Operation("row_apply", RowApplyRequest,
              "Run a function on chunks of `rows` rows of the input.",
              input=CHUNKS, shape="rows"),
    Operation("group_apply", GroupApplyRequest, "Run a function once per group of `groupBy`.",
              input=GROUPS, shape="keyed", frames_as_columns=True),
    Operation("index_apply", IndexApplyRequest,
              "Run a function `times` times: f(i) for i = 1..times.",
              input=INDEX, shape="list"),
)}


def register(op: Operation) -> None:
    """Add an operation: a module ``EPE_PLUGINS`` names calls this when it is imported,
    before the server makes its routes (docs/architecture.md#adding-an-operation)."""
    if op.kind in OPERATIONS or any(o.path == op.path for o in OPERATIONS.values()):
        raise ValueError(f"there is an operation {op.kind} already")
    OPERATIONS[op.kind] = op


def operation(kind: str) -> Operation:
    """The record of ``kind``; a ``KeyError`` names an operation that does not exist."""
    return OPERATIONS[kind]
