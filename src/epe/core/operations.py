"""The five operations, one record each: everything that differs between them.

The router, planning, the worker, graphics, the API's version listing, the
client and the CLI all read this table; adding an operation is one entry here
(plus its request model and its tests). Pure data: the client imports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from epe.core.requests import (
    DoEvalRequest,
    GroupApplyRequest,
    IndexApplyRequest,
    RowApplyRequest,
    RunRequest,
    TableApplyRequest,
)

Kind = Literal["do_eval", "table_apply", "row_apply", "group_apply", "index_apply"]

# Where every path of the API lives, and its versions (v1 deprecated, v2 current).
API_ROOT = "/oml/api/py-scripts"
API_VERSIONS = ("v1", "v2")

# How the input reaches the function's units:
#   none:    no input (do-eval); one unit
#   index:   no input; one unit per index 1..times
#   whole:   the query's rows streamed to workers; one unit of all of them
#   chunks:  the query's rows streamed to workers; one unit per ``rows`` rows
#   groups:  the query's rows sorted into groups in the server; one unit per group
Input = Literal["none", "index", "whole", "chunks", "groups"]
# How each unit calls the function: f(**kw), f(i, **kw) or f(data, **kw).
Call = Literal["kwargs", "index", "data"]
# How the units' values are put together:
#   single:  the one unit's value
#   rows:    DataFrames concatenated into records, otherwise a list per chunk
#   keyed:   an object keyed by group
#   list:    a list in index order
Shape = Literal["single", "rows", "keyed", "list"]


@dataclass(frozen=True)
class Operation:
    kind: Kind
    request: type[RunRequest]
    summary: str
    input: Input
    call: Call
    shape: Shape
    unit: Literal["chunk", "group", "index"] | None  # how an error names the failing unit
    frames_as_columns: bool = False  # a DataFrame value in pandas' column -> {row} form

    @property
    def path(self) -> str:
        """The path segment, as OML spells it: ``group-apply``."""
        return self.kind.replace("_", "-")

    @property
    def parallel(self) -> bool:
        """Whether its units may run in parallel (``parallelFlag``, ``parallel``)."""
        return self.unit is not None

    @property
    def images_as_list(self) -> bool:
        """With graphics: a list of images (one unit), not an object keyed by unit."""
        return self.shape == "single"

    @property
    def required(self) -> tuple[str, ...]:
        """The body fields a request must carry (``input``, ``rows``, ``groupBy``...)."""
        return tuple(f.alias or name for name, f in self.request.model_fields.items()
                     if f.is_required())


OPERATIONS: dict[str, Operation] = {op.kind: op for op in (
    Operation("do_eval", DoEvalRequest, "Run a function with no input: f(**parameters).",
              input="none", call="kwargs", shape="single", unit=None),
    Operation("table_apply", TableApplyRequest,
              "Run a function once on the whole input query result.",
              input="whole", call="data", shape="single", unit=None),
    Operation("row_apply", RowApplyRequest,
              "Run a function on chunks of `rows` rows of the input.",
              input="chunks", call="data", shape="rows", unit="chunk"),
    Operation("group_apply", GroupApplyRequest, "Run a function once per group of `groupBy`.",
              input="groups", call="data", shape="keyed", unit="group",
              frames_as_columns=True),
    Operation("index_apply", IndexApplyRequest,
              "Run a function `times` times: f(i) for i = 1..times.",
              input="index", call="index", shape="list", unit="index"),
)}


def operation(kind: str) -> Operation:
    """The record of ``kind``; a ``KeyError`` names an operation that does not exist."""
    return OPERATIONS[kind]
