"""Scoring a whole table with a model into another table (docs/models.md#schedules).

The path of a run: the input table is read as its owner reads it, streamed to the
model owner's workers as any run's input is (``Executor.share``), cut into chunks scored in
parallel on the pool's workers, each chunk's predictions coming back as Arrow; the
output table is then written in one statement (``Catalog.put`` with overwrite), so
a reader sees the old table or the new one, never part of it.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pyarrow as pa

from epe.core import plan
from epe.data.names import quote
from epe.errors import InvalidRequest
from epe.runner.executor import MODEL_CALLING, MODEL_TASK, Task, TaskResult
from epe.service import runs
from epe.service.models import columns_of, load_fields, loader, tenant
from epe.service.services import Services
from epe.store.models import ModelRecord

log = logging.getLogger("epe.models")

CHUNK_ROWS = 100_000  # rows per unit a worker scores at once
OUTPUT_COLUMNS = {"regression": ("PREDICTION",), "classification": ("PREDICTION", "PROBABILITY"),
                  "clustering": ("CLUSTER_ID", "PROBABILITY")}


@dataclass(frozen=True)
class Target:
    owner: str
    input_table: str
    output_table: str
    supplemental: tuple[str, ...] = ()


def check_supplemental(function: str, names: list[str]) -> None:
    """Supplemental columns must not clash with the prediction columns."""
    clash = {n.upper() for n in names} & set(OUTPUT_COLUMNS[function])
    if clash:
        raise InvalidRequest(f"supplementalColumnNames may not hold {', '.join(sorted(clash))}"
                             ": the output table has a column of that name")


def input_query(services: Services, model: ModelRecord, target: Target) -> str:
    """The input table's model and supplemental columns, named as the model and the
    job name them (matched ignoring case, as SQL matches names; blocking)."""
    info = services.catalog.describe(target.owner, target.input_table)
    stored = {c.name.lower(): c.name for c in info.columns}
    wanted = [c.name for c in columns_of(model.signature)]
    selected = []
    for name in [*wanted, *[s for s in target.supplemental if s not in wanted]]:
        found = stored.get(name.lower())
        if found is None:
            raise InvalidRequest(f"table {info.name} has no column {name}, which the "
                                 f"{'model takes' if name in wanted else 'job keeps'}")
        selected.append(f"{quote(found)} AS {quote(name)}")
    return f"SELECT {', '.join(selected)} FROM {quote(info.name)}"


async def score_table(services: Services, model: ModelRecord, target: Target,
                      timeout: float) -> int:
    """Score ``target``'s input into its output table, as its owner; the rows written."""
    sql = await asyncio.to_thread(input_query, services, model, target)

    def rows() -> AbstractContextManager[pa.RecordBatchReader]:
        return services.catalog.stream(target.owner, sql)

    fields = {**load_fields(model), "action": "batch", "supplemental": list(target.supplemental)}
    # Scored where the model's code runs, its owner's workers (the job owner's own, unless
    # the model is another user's, shared or granted): never another user's code in a job
    # owner's worker, which keeps what their other tasks left behind.
    async with services.environments.executor(None, await tenant(services, model.owner)) \
            as executor, executor.share(rows) as shared:
        units = plan.chunk_units(shared.rows, CHUNK_ROWS)
        batches = plan.batches(units, executor.capacity, per_worker=1)
        tasks = [Task(kind=MODEL_TASK, calling=MODEL_CALLING, source=model.script or "",
                      script_key=model.digest,
                      kwargs=fields, units=tuple(b), input_ref=shared.ref,
                      calls=loader(services, model, None)) for b in batches]
        outcomes = await runs.run_batches(executor, tasks, executor.capacity, timeout)
    table = _joined(outcomes)
    if table is None:
        return 0
    await asyncio.to_thread(services.catalog.put, target.owner, target.output_table, table,
                            True)
    return int(table.num_rows)


def _joined(outcomes: list[TaskResult | BaseException]) -> pa.Table | None:
    """The chunks' predictions as one table, in input order (None: there were none)."""
    parts = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            error = getattr(outcome, "error", outcome)
            raise error
        parts += [pa.ipc.open_stream(f.json).read_all() for f in outcome.fragments]
    return pa.concat_tables(parts) if parts else None
