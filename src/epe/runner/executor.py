"""The executor interface: the one thing the API knows about running code.

A ``Task`` says what to run; an ``Executor`` runs it somewhere (the local warm
pool today, a Ray cluster later) and returns the finished JSON, or raises one
of the errors in ``epe.errors``. Nothing else crosses this boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["do_eval", "table_apply", "row_apply", "group_apply", "index_apply"]


@dataclass(frozen=True)
class Task:
    kind: Kind
    source: str
    script_key: str  # stable for one version of one script, so workers can cache it
    kwargs: dict[str, Any] = field(default_factory=dict)
    graphics: bool = False


@dataclass(frozen=True)
class TaskResult:
    payload: bytes  # the result as JSON
    stdout: str = ""
    stderr: str = ""


class Executor(Protocol):
    async def start(self) -> None: ...

    async def run(self, task: Task, timeout: float) -> TaskResult: ...

    async def stop(self) -> None: ...
