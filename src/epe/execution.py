"""Running one request: script, input, plan, workers, result shape.

This is the path of DESIGN.md in one module: the request's script is found,
its input queried as Arrow, split into units (``core.plan``), shared with the
workers and run in batches through the ``Executor``, and the fragments joined
into OML's shape (``core.assemble``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa

from epe import calls
from epe.api.deps import Caller, Services
from epe.api.scripts import find
from epe.core import assemble, plan
from epe.core.params import Controls, parse_parameters
from epe.core.requests import (
    GroupApplyRequest,
    IndexApplyRequest,
    ParallelRequest,
    RowApplyRequest,
    RunRequest,
    TableApplyRequest,
)
from epe.core.scripts import parse_script
from epe.errors import InvalidRequest, TimeLimitExceeded
from epe.runner.executor import Executor, Kind, Rows, Task, TaskFailed, TaskResult

log = logging.getLogger("epe.run")


@dataclass
class Work:
    """What a request resolved to: its input and how to cut it into units.

    ``units`` are known up front for do-eval, index-apply and group-apply (whose
    input is sorted in hand); table- and row-apply stream their input to the
    workers and ``cut`` it once its rows are counted.
    """

    units: list[plan.Unit] = field(default_factory=list)
    rows: Rows | None = None
    cut: Callable[[int], list[plan.Unit]] | None = None
    labels: list[str] = field(default_factory=list)  # group keys, for group-apply
    unit_name: str | None = None  # how an error names the failing unit


def script_key(source: str) -> str:
    # The source's hash: a new version of a script is a new key, so workers'
    # compiled-script caches can never serve a stale version.
    return hashlib.sha256(source.encode()).hexdigest()


def resolve_source(services: Services, caller: Caller, body: RunRequest,
                   name: str | None, owner: str | None) -> str:
    if name is None:
        if body.script is None:
            raise InvalidRequest("give a script name in the path, or the function's source "
                                 "as \"script\" in the body")
        parse_script(body.script)
        return body.script
    return find(services, caller.name, name, owner).source


def run_timeout(services: Services, body: RunRequest) -> int:
    limit = services.settings.max_timeout
    if body.timeout is not None and body.timeout > limit:
        raise InvalidRequest(f"timeout {body.timeout} is over this server's maximum of {limit} "
                             "seconds")
    return body.timeout or services.settings.default_timeout


def check_environment(services: Services, body: RunRequest) -> None:
    """A named environment must exist (400 otherwise); the run holds it while it runs."""
    if body.env_name is not None:
        services.environments.check(body.env_name)


@contextmanager
def streamed_input(services: Services, caller: Caller, sql: str,
                   controls: Controls) -> Iterator[pa.RecordBatchReader]:
    """The input query's rows as they come (blocking; read within the block)."""
    with services.catalog.stream(caller.name, sql) as rows:
        if not controls.na_omit:
            yield rows
        else:
            yield pa.RecordBatchReader.from_batches(rows.schema,
                                                    (b.drop_null() for b in rows))


def whole_input(services: Services, caller: Caller, sql: str, controls: Controls) -> pa.Table:
    table = services.catalog.query(caller.name, sql)
    return table.drop_null() if controls.na_omit else table


async def plan_work(services: Services, caller: Caller, kind: Kind, body: RunRequest,
                    controls: Controls) -> Work:
    if kind == "do_eval":
        return Work([(0, 0)])
    if isinstance(body, IndexApplyRequest):
        return Work(plan.index_units(body.times), unit_name="index")
    assert isinstance(body, TableApplyRequest | RowApplyRequest | GroupApplyRequest)
    if isinstance(body, GroupApplyRequest):
        # Sorting a large input takes a while: off the event loop, so other
        # requests are not held up meanwhile.
        grouping = await asyncio.to_thread(group_input, services, caller, body, controls)
        return Work(grouping.units, grouping.table, labels=grouping.keys, unit_name="group")
    stream = partial(streamed_input, services, caller, body.input, controls)
    if isinstance(body, RowApplyRequest):
        return Work(rows=stream, cut=partial(plan.chunk_units, rows=body.rows),
                    unit_name="chunk")
    return Work(rows=stream, cut=lambda n: [(0, n)])


def group_input(services: Services, caller: Caller, body: GroupApplyRequest,
                controls: Controls) -> plan.Grouping:
    """The input, sorted into its groups (blocking)."""
    table = whole_input(services, caller, body.input, controls)
    group_by = plan.resolve_columns(table.schema, body.group_by, "groupBy")
    order_by = plan.resolve_columns(table.schema, body.order_by, "orderBy") \
        if body.order_by else []
    return plan.group_units(table, group_by, order_by)


def degree(services: Services, body: RunRequest, controls: Controls, capacity: int) -> int:
    if not isinstance(body, ParallelRequest):
        return 1
    level = controls.service or body.service
    flag = body.parallel_flag or bool(controls.parallel)
    return plan.degree_of_parallelism(flag, body.parallel,
                                      services.settings.parallel_cap(level),  # type: ignore[arg-type]
                                      capacity)


@dataclass(frozen=True)
class Prepared:
    """A request checked and resolved, before any work: what a job stores and runs."""

    caller: Caller
    kind: Kind
    body: RunRequest
    source: str
    kwargs: dict[str, object]
    controls: Controls
    timeout: int

    @property
    def asynchronous(self) -> bool:
        return bool(self.body.async_flag or self.controls.async_)


@dataclass
class Output:
    """What a run printed, batch by batch in input order (kept with async jobs)."""

    parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.parts)


Progress = Callable[[int, int], None]


def prepare(services: Services, caller: Caller, kind: Kind, body: RunRequest,
            name: str | None, owner: str | None) -> Prepared:
    """Everything that can be refused before running: script, parameters, limits."""
    source = resolve_source(services, caller, body, name, owner)
    kwargs, controls = parse_parameters(body.parameters)
    check_environment(services, body)
    return Prepared(caller, kind, body, source, kwargs, controls, run_timeout(services, body))


async def run(services: Services, job: Prepared, progress: Progress | None = None,
              output: Output | None = None, min_batches: int = 1) -> bytes:
    """Run a prepared request in the workers of its environment (``envName``)."""
    async with services.environments.executor(job.body.env_name) as executor:
        return await run_on(executor, services, job, progress, output, min_batches)


async def run_on(executor: Executor, services: Services, job: Prepared,
                 progress: Progress | None = None, output: Output | None = None,
                 min_batches: int = 1) -> bytes:
    """Run a prepared request: plan, share the input, run the batches, shape the result."""
    work = await plan_work(services, job.caller, job.kind, job.body, job.controls)
    async with share(executor, work) as ref:
        dop = degree(services, job.body, job.controls, executor.capacity)
        batches = plan.batches(work.units, dop, min_batches=min_batches)
        log.info("%s by %s: %d invocations in %d batches, degree of parallelism %d",
                 job.kind, job.caller.name, len(work.units), len(batches), dop)
        graphics = bool(job.body.graphics_flag or job.controls.graphics)
        tasks = [Task(kind=job.kind, source=job.source, script_key=script_key(job.source),
                      kwargs=job.kwargs, graphics=graphics, units=tuple(b), input_ref=ref,
                      input_type=job.controls.input_type,
                      pickled_kwargs=job.body.pickled_parameters,
                      result_format=job.body.result_format,
                      calls=calls.handler(services, job.caller)) for b in batches]
        outcomes = await run_batches(executor, tasks, dop, job.timeout, progress)
    if output is not None:
        output.parts += [printed(o) for o in outcomes]
    results = settle(outcomes, work, batches)
    fragments = [f for r in results for f in r.fragments]
    payload = shape(job.kind, fragments, work, graphics and job.body.result_format == "json")
    return assemble.check_size(payload, services.settings.output_limit)


@asynccontextmanager
async def share(executor: Executor, work: Work) -> AsyncIterator[str | None]:
    """The work's input made readable by the workers, its units cut once it is counted."""
    if work.rows is None:
        yield None
        return
    rows, work.rows = work.rows, None  # the shared copy is what workers read; drop ours
    async with executor.share(rows) as shared:
        del rows
        if work.cut is not None:
            work.units = work.cut(shared.rows)
        yield shared.ref


async def run_batches(executor: Executor, tasks: Sequence[Task], dop: int, timeout: float,
                      progress: Progress | None = None) -> list[TaskResult | BaseException]:
    """Run every batch, at most ``dop`` at once, each to its end (success or failure)."""
    gate = asyncio.Semaphore(dop)
    total, done = sum(len(t.units) for t in tasks), 0
    if progress is not None:
        progress(done, total)

    async def one(task: Task) -> TaskResult:
        nonlocal done
        async with gate:
            result = await executor.run(task, timeout)
        done += len(task.units)
        if progress is not None:
            progress(done, total)
        return result

    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(one(t) for t in tasks), return_exceptions=True), timeout)
    except TimeoutError:
        raise TimeLimitExceeded(f"the run went past its time limit of {timeout:g} s and was "
                                "stopped") from None
    return list(outcomes)


def printed(outcome: TaskResult | BaseException) -> str:
    """What a batch printed, whether it succeeded or failed (kept with the job)."""
    if isinstance(outcome, TaskResult):
        return outcome.stdout + outcome.stderr
    if isinstance(outcome, TaskFailed):
        extra = outcome.error.extra
        return str(extra.get("stdout", "")) + str(extra.get("stderr", ""))
    return ""


def settle(outcomes: Sequence[TaskResult | BaseException], work: Work,
           batches: Sequence[Sequence[plan.Unit]]) -> list[TaskResult]:
    """The results, or the failure of the first failing unit in input order.

    Every batch ran to its end, so the error reported is the same whatever the
    degree of parallelism.
    """
    first = 0
    for batch, outcome in zip(batches, outcomes, strict=True):
        if isinstance(outcome, TaskFailed):
            raise locate(outcome, work, first + (outcome.unit or 0))
        if isinstance(outcome, BaseException):
            raise outcome
        first += len(batch)
    return [o for o in outcomes if isinstance(o, TaskResult)]


def locate(failure: TaskFailed, work: Work, position: int) -> Exception:
    """The failure's error, naming the chunk, group or index where it happened."""
    error = failure.error
    if failure.unit is None or work.unit_name is None:
        return error
    where = {"chunk": position, "group": work.labels[position] if work.labels else None,
             "index": work.units[position][0]}
    error.extra[work.unit_name] = where[work.unit_name]
    return error


def shape(kind: Kind, fragments: list[assemble.Fragment], work: Work, graphics: bool) -> bytes:
    """OML's shape of the result (docs/api.md#results). Pickled results are opaque strings:
    one per chunk for row-apply, which the client concatenates."""
    if kind in ("do_eval", "table_apply"):
        return fragments[0].json
    if graphics:  # keyed by group, or by chunk or invocation number from "0"
        labels = work.labels or [str(i) for i in range(len(fragments))]
        return assemble.keyed(labels, fragments)
    if kind == "row_apply":
        return assemble.row_apply(fragments)
    if kind == "group_apply":
        return assemble.keyed(work.labels, fragments)
    return assemble.as_list(fragments)
