"""Running one request: script, input, plan, workers, result shape.

The path of a run in one module (docs/architecture.md draws it): the request's
script is found, its input queried as Arrow, split into units (``core.plan``)
as its operation says (``core.operations``), shared with the workers and run in
batches through the ``Executor``, and the fragments joined into OML's shape
(``core.assemble``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import pyarrow as pa

from epe.core import assemble, plan
from epe.core.operations import CHUNKS, GROUPS, INDEX, NONE, WHOLE, Operation
from epe.core.params import Controls, parse_parameters
from epe.core.requests import (
    GroupApplyRequest,
    IndexApplyRequest,
    InputRequest,
    ParallelRequest,
    RowApplyRequest,
    RunRequest,
)
from epe.core.scripts import parse_script
from epe.errors import EpeError, InvalidRequest, TimeLimitExceeded
from epe.observe import metrics
from epe.observe.logs import JOB_ID
from epe.runner.executor import (
    TIME_LIMIT,
    CallHandler,
    Executor,
    InputRef,
    Rows,
    Task,
    TaskFailed,
    TaskResult,
    Usage,
)
from epe.service import calls, scripts, sql
from epe.service.services import Services
from epe.service.sessions import Caller
from epe.store.usage import UsageRecord

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


@dataclass(frozen=True)
class Source:
    """The function a run calls: a stored script's (its name and owner) or inline."""

    text: str
    name: str | None = None
    owner: str | None = None

    @property
    def key(self) -> str | None:
        """``OWNER.NAME`` of a stored script; None for an inline function."""
        return None if self.name is None else f"{self.owner}.{self.name}"

    @classmethod
    def of(cls, text: str, key: str | None) -> Source:
        """The source as a job keeps it: its text, and ``key`` as ``key`` makes it."""
        owner, _, name = (key or "").partition(".")
        return cls(text, name or None, owner or None)


def resolve_source(services: Services, caller: Caller, body: RunRequest,
                   name: str | None, owner: str | None) -> Source:
    if name is None:
        if body.script is None:
            raise InvalidRequest("give a script name in the path, or the function's source "
                                 "as \"script\" in the body")
        parse_script(body.script)
        return Source(body.script)
    found = scripts.find(services.store, caller.name, name, owner)
    return Source(found.source, found.name, found.owner)


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
def streamed_input(services: Services, caller: Caller, statements: list[sql.Ready],
                   controls: Controls) -> Iterator[pa.RecordBatchReader]:
    """The input query's rows as they come (blocking; read within the block)."""
    with sql.run_stream(services, caller, statements) as rows:
        if not controls.na_omit:
            yield rows
        else:
            yield pa.RecordBatchReader.from_batches(rows.schema,
                                                    (b.drop_null() for b in rows))


def whole_input(services: Services, caller: Caller, statements: list[sql.Ready],
                controls: Controls) -> pa.Table:
    table = sql.run_query(services, caller, statements)
    return table.drop_null() if controls.na_omit else table


@dataclass(frozen=True)
class Planning:
    """What planning a run's units reads: who runs it, with what, and how."""

    services: Services
    caller: Caller
    op: Operation
    controls: Controls
    functions: sql.Functions | None = None

    async def input_sql(self, body: InputRequest) -> list[sql.Ready]:
        """The input read as docs/sql.md says: translated if need be, OML's views and
        table functions computed, before any of its rows are."""
        return await sql.prepare(self.services, self.caller, body.input,
                                      sql.mode_of(self.services, body.dialect),
                                      self.functions)

    def stream(self, statements: list[sql.Ready]) -> Rows:
        return partial(streamed_input, self.services, self.caller, statements, self.controls)


async def _no_input(_how: Planning, _body: RunRequest) -> Work:
    return Work([(0, 0)])


async def _index(how: Planning, body: IndexApplyRequest) -> Work:
    return Work(plan.index_units(body.times), unit_name=how.op.unit)


async def _whole(how: Planning, body: InputRequest) -> Work:
    return Work(rows=how.stream(await how.input_sql(body)), cut=lambda n: [(0, n)])


async def _chunks(how: Planning, body: RowApplyRequest) -> Work:
    return Work(rows=how.stream(await how.input_sql(body)),
                cut=partial(plan.chunk_units, rows=body.rows), unit_name=how.op.unit)


async def _groups(how: Planning, body: GroupApplyRequest) -> Work:
    statements = await how.input_sql(body)
    # Sorting a large input takes a while: off the event loop, so other requests are
    # not held up meanwhile.
    grouping = await asyncio.to_thread(group_input, how.services, how.caller, body, statements,
                                       how.controls)
    return Work(grouping.units, grouping.table, labels=grouping.keys, unit_name=how.op.unit)


# One planner per input (core.operations): each reads the fields of its input's request
# class, from which every operation taking that input derives its request model.
PLANNERS: dict[str, Callable[[Planning, Any], Awaitable[Work]]] = {
    NONE.name: _no_input, INDEX.name: _index, WHOLE.name: _whole, CHUNKS.name: _chunks,
    GROUPS.name: _groups}


async def plan_work(how: Planning, body: RunRequest) -> Work:
    """The units of a run, and its input, as its operation takes them."""
    return await PLANNERS[how.op.input.name](how, body)


def group_input(services: Services, caller: Caller, body: GroupApplyRequest,
                statements: list[sql.Ready], controls: Controls) -> plan.Grouping:
    """The input, sorted into its groups (blocking)."""
    table = whole_input(services, caller, statements, controls)
    group_by = plan.resolve_columns(table.schema, body.group_by, "groupBy")
    order_by = plan.resolve_columns(table.schema, body.order_by, "orderBy") \
        if body.order_by else []
    return plan.group_units(table, group_by, order_by)


def degree(services: Services, prepared: Prepared, capacity: int) -> int:
    if not prepared.op.parallel:  # an operation of one unit
        return 1
    # Its request derives from ParallelRequest (core.operations checks it).
    body, controls = cast(ParallelRequest, prepared.body), prepared.controls
    level = controls.service or body.service
    flag = body.parallel_flag or bool(controls.parallel)
    return plan.degree_of_parallelism(flag, body.parallel,
                                      services.settings.parallel_cap(level), capacity)


@dataclass(frozen=True)
class Prepared:
    """A request checked and resolved, before any work: what a job stores and runs."""

    caller: Caller
    op: Operation
    body: RunRequest
    script: Source
    kwargs: dict[str, object]
    controls: Controls
    timeout: int
    # The source's hash: a new version of a script is a new key, so workers'
    # compiled-script caches can never serve a stale version.
    script_key: str

    @property
    def source(self) -> str:
        return self.script.text

    @property
    def asynchronous(self) -> bool:
        return bool(self.body.async_flag or self.controls.async_)

    @property
    def mode(self) -> str:
        return "async" if self.asynchronous else "sync"


@dataclass
class RunStats:
    """What a run did, for its metrics, its audit entry and its usage record."""

    started: float = field(default_factory=time.time)
    invocations: int = 0
    batches: int = 0
    input_seconds: float | None = None  # reading the input and handing it to the workers
    input_rows: int | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    used: list[Usage] = field(default_factory=list)  # what the kernel counted, per task


@dataclass
class Output:
    """What a run printed, batch by batch in input order (kept with async jobs)."""

    parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.parts)


Progress = Callable[[int, int], None]


def prepare(services: Services, caller: Caller, op: Operation, body: RunRequest, *,
            name: str | None = None, owner: str | None = None) -> Prepared:
    """Everything that can be refused before running: script, parameters, limits."""
    source = resolve_source(services, caller, body, name, owner)
    kwargs, controls = parse_parameters(body.parameters)
    check_environment(services, body)
    return Prepared(caller, op, body, source, kwargs, controls, run_timeout(services, body),
                    scripts.source_hash(source.text))


async def run(services: Services, prepared: Prepared, *, progress: Progress | None = None,
              output: Output | None = None, min_batches: int = 1,
              functions: sql.Functions | None = None) -> bytes:
    """Run a prepared request in the workers of its environment (``envName``); its
    metrics and audit entry are recorded however it ends. ``functions`` run OML's
    table functions where its input or its function's ``oml.sync`` call them."""
    stats, start, error = RunStats(), time.perf_counter(), None
    try:
        tenant = services.known_tenant(prepared.caller.name)
        if tenant is None:  # the user's first run since start: their uid is looked up
            tenant = await asyncio.to_thread(services.tenant, prepared.caller.name)
        async with services.environments.executor(prepared.body.env_name, tenant) as executor:
            payload = await run_on(executor, services, prepared, progress=progress, output=output,
                                   min_batches=min_batches, stats=stats, functions=functions)
        stats.output_bytes = len(payload)
        return payload
    except BaseException as e:
        error = e
        raise
    finally:
        # Once the answer is on its way: the loop runs this right after the current step,
        # in this context (its request and job ids), before any later request's work.
        asyncio.get_running_loop().call_soon(
            record, services, prepared, stats, time.perf_counter() - start, error)


async def run_on(executor: Executor, services: Services, prepared: Prepared, *,
                 progress: Progress | None = None, output: Output | None = None,
                 min_batches: int = 1, stats: RunStats | None = None,
                 functions: sql.Functions | None = None) -> bytes:
    """Run a prepared request: plan, share the input, run the batches, shape the result."""
    stats = stats or RunStats()
    start = time.perf_counter()
    how = Planning(services, prepared.caller, prepared.op, prepared.controls, functions)
    work = await plan_work(how, prepared.body)
    graphics = bool(prepared.body.graphics_flag or prepared.controls.graphics)
    async with share(executor, work, stats) as ref:
        if prepared.op.input.query:
            stats.input_seconds = time.perf_counter() - start
        dop = degree(services, prepared, executor.capacity)
        batches = plan.batches(work.units, dop, min_batches=min_batches)
        stats.invocations, stats.batches = len(work.units), len(batches)
        log.info("%s by %s: %d invocations in %d batches, degree of parallelism %d",
                 prepared.op.kind, prepared.caller.name, len(work.units), len(batches), dop)
        handler = calls.handler(services, prepared.caller, functions)
        tasks = [task(prepared, b, ref, graphics, handler) for b in batches]
        outcomes = await run_batches(executor, tasks, dop, prepared.timeout, progress,
                                     stats.used)
    if output is not None:
        output.parts += [printed(o) for o in outcomes]
    results = settle(outcomes, work, batches)
    fragments = [f for r in results for f in r.fragments]
    images_json = graphics and prepared.body.result_format == "json"
    payload = shape(prepared.op, fragments, work, images_json)
    return assemble.check_size(payload, services.settings.output_limit)


def task(prepared: Prepared, units: Sequence[plan.Unit], ref: InputRef | None,
         graphics: bool, handler: CallHandler) -> Task:
    """One batch of a prepared request, as the executor runs it."""
    return Task(kind=prepared.op.kind, calling=prepared.op.calling, source=prepared.source,
                script_key=prepared.script_key, kwargs=prepared.kwargs, graphics=graphics,
                units=tuple(units), input_ref=ref, input_type=prepared.controls.input_type,
                pickled_kwargs=prepared.body.pickled_parameters,
                result_format=prepared.body.result_format, calls=handler)


@asynccontextmanager
async def share(executor: Executor, work: Work,
                stats: RunStats) -> AsyncIterator[InputRef | None]:
    """The work's input made readable by the workers, its units cut once it is counted."""
    if work.rows is None:
        yield None
        return
    rows, work.rows = work.rows, None  # the shared copy is what workers read; drop ours
    async with executor.share(rows) as shared:
        del rows
        stats.input_rows, stats.input_bytes = shared.rows, shared.bytes
        if work.cut is not None:
            work.units = work.cut(shared.rows)
        yield shared.ref


async def run_batches(executor: Executor, tasks: Sequence[Task], dop: int, timeout: float,
                      progress: Progress | None = None,
                      used: list[Usage] | None = None) -> list[TaskResult | BaseException]:
    """Run every batch, at most ``dop`` at once, each to its end (success or failure);
    what each that ended used goes in ``used``.

    Batches still going when the time limit comes are cancelled with ``TIME_LIMIT``,
    so that the executor can tell a timeout from a caller that went away.
    """
    if len(tasks) == 1:
        alone = await _run_alone(executor, tasks[0], timeout, progress)
        if used is not None and isinstance(alone, TaskResult | TaskFailed):
            used.append(alone.usage)
        return [alone]
    gate = asyncio.Semaphore(dop)
    total, done = sum(len(t.units) for t in tasks), 0
    if progress is not None:
        progress(done, total)

    async def one(task: Task) -> TaskResult:
        nonlocal done
        async with gate:
            try:
                result = await executor.run(task, timeout)
            except TaskFailed as e:
                if used is not None:
                    used.append(e.usage)
                raise
        if used is not None:
            used.append(result.usage)
        done += len(task.units)
        if progress is not None:
            progress(done, total)
        return result

    running = [asyncio.ensure_future(one(t)) for t in tasks]
    if not running:
        return []
    try:
        _done, late = await asyncio.wait(running, timeout=timeout)
    except asyncio.CancelledError:
        await _cancel(running)
        raise
    if late:
        await _cancel(late, TIME_LIMIT)
        raise _time_limit(timeout)
    return [_outcome(t) for t in running]


async def _run_alone(executor: Executor, task: Task, timeout: float,
                     progress: Progress | None) -> TaskResult | BaseException:
    """``run_batches`` for a run of one batch (every do-eval, most table-applies): in the
    caller's own task, with a timer for the time limit, rather than a task and a wait of
    its own, which cost a sync do-eval a tenth of its time in the server."""
    this = asyncio.current_task()
    assert this is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        this.cancel(TIME_LIMIT)

    if progress is not None:
        progress(0, len(task.units))
    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        result = await executor.run(task, timeout)
    except asyncio.CancelledError:
        if not expired:
            raise
        this.uncancel()
        raise _time_limit(timeout) from None
    except Exception as e:  # the batch's outcome, as run_batches reports every batch's
        return e
    finally:
        timer.cancel()
    if progress is not None:
        progress(len(task.units), len(task.units))
    return result


def _time_limit(timeout: float) -> TimeLimitExceeded:
    return TimeLimitExceeded(f"the run went past its time limit of {timeout:g} s and was "
                             "stopped")


def _outcome(task: asyncio.Future[TaskResult]) -> TaskResult | BaseException:
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


async def _cancel(tasks: Iterable[asyncio.Future[TaskResult]], message: str | None = None) -> None:
    for task in tasks:
        task.cancel(message)
    await asyncio.gather(*tasks, return_exceptions=True)


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


def shape(op: Operation, fragments: list[assemble.Fragment], work: Work,
          graphics: bool) -> bytes:
    """OML's shape of the result (docs/api.md). Pickled results are opaque strings:
    one per chunk for row-apply, which the client concatenates."""
    if op.shape == "single":
        return fragments[0].json
    if graphics:  # keyed by group, or by chunk or invocation number from "0"
        labels = work.labels or [str(i) for i in range(len(fragments))]
        return assemble.keyed(labels, fragments)
    if op.shape == "rows":
        return assemble.row_apply(fragments)
    if op.shape == "keyed":
        return assemble.keyed(work.labels, fragments)
    return assemble.as_list(fragments)


def outcome(error: BaseException | None) -> str:
    """How a run ended, as its metrics label it: ok, cancelled, or the error's class."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__ if isinstance(error, EpeError) else "InternalError"


def record(services: Services, prepared: Prepared, stats: RunStats, seconds: float,
           error: BaseException | None) -> None:
    """A run's metrics and its audit entry (never its parameters' values)."""
    kind, mode, series = prepared.op.kind, prepared.mode, metrics.series
    series(metrics.RUNS, kind, mode, outcome(error)).inc()
    series(metrics.RUN_SECONDS, kind, mode).observe(seconds)
    if stats.batches:
        series(metrics.RUN_INVOCATIONS, kind).observe(stats.invocations)
        series(metrics.RUN_BATCHES, kind).observe(stats.batches)
    if stats.input_seconds is not None:
        series(metrics.INPUT_SECONDS, kind).observe(stats.input_seconds)
    if stats.input_rows is not None:
        series(metrics.INPUT_ROWS, kind).observe(stats.input_rows)
    if stats.output_bytes is not None:
        series(metrics.OUTPUT_BYTES, kind).observe(stats.output_bytes)
    cancelled = isinstance(error, asyncio.CancelledError)
    account(services, user=prepared.caller.name, operation=kind, script=prepared.script.key,
            service=prepared.controls.service or prepared.body.service, mode=mode,
            stats=stats, seconds=seconds, error=error)
    services.audit.record(
        "run", kind, prepared.caller.name, error=None if cancelled else error,
        status="cancelled" if cancelled else None, owner=prepared.script.owner,
        name=prepared.script.name, scriptHash=prepared.script_key,
        input=getattr(prepared.body, "input", None), envName=prepared.body.env_name, mode=mode,
        jobId=JOB_ID.get(), durationMs=round(seconds * 1000, 3), units=stats.invocations,
        batches=stats.batches, inputRows=stats.input_rows, outputBytes=stats.output_bytes)


def account(services: Services, *, user: str, operation: str, script: str | None,
            service: str, mode: str, stats: RunStats, seconds: float,
            error: BaseException | None) -> None:
    """Queue the usage record of a run, a score call or a batch scoring run
    (docs/operations.md#usage): a queue put, written off the request path by
    ``services.usage``. ``jobId`` is the async job the caller's task runs, if one."""
    services.usage.add(UsageRecord(
        user=user, operation=operation, script=script, service=service, mode=mode,
        job_id=JOB_ID.get(), started=stats.started, wall_seconds=seconds,
        cpu_seconds=sum(u.cpu_seconds for u in stats.used),
        peak_memory=max((u.peak_memory for u in stats.used), default=0),
        input_rows=stats.input_rows or 0, input_bytes=stats.input_bytes or 0,
        output_bytes=stats.output_bytes or 0, outcome=outcome(error)))
