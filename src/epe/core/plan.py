"""Planning: how a run's input splits into invocations, and those into batches.

Pure functions over Arrow tables and integers. An invocation is a *unit*: a
slice ``(offset, length)`` of the input table (table-, row-, group-apply) or an
index (index-apply). Units go to workers in *batches* so that small ones cost
microseconds each, not a process round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from epe.errors import InvalidRequest

Unit = tuple[int, int]  # (offset, length) into the input, or (index, 0) for index-apply


@dataclass(frozen=True)
class Grouping:
    table: pa.Table  # sorted by the group columns, then the order columns
    units: list[Unit]
    keys: list[str]  # one per unit: the group's values joined with "_"


def resolve_columns(table: pa.Schema, spec: str, what: str) -> list[str]:
    """Match comma-separated names to the query's columns, case-insensitively."""
    by_lower: dict[str, str] = {}
    for name in table.names:
        by_lower.setdefault(name.lower(), name)
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    if not wanted:
        raise InvalidRequest(f"{what} names no column")
    missing = [w for w in wanted if w.lower() not in by_lower]
    if missing:
        raise InvalidRequest(f"{what} names {', '.join(missing)}, which the input query does "
                             f"not return; its columns are {', '.join(table.names)}")
    return [by_lower[w.lower()] for w in wanted]


def chunk_units(n_rows: int, rows: int) -> list[Unit]:
    """Chunks of ``rows`` rows in order; the last may be shorter."""
    return [(start, min(rows, n_rows - start)) for start in range(0, n_rows, rows)]


def index_units(times: int) -> list[Unit]:
    return [(i, 0) for i in range(1, times + 1)]


def group_units(table: pa.Table, group_by: Sequence[str], order_by: Sequence[str]) -> Grouping:
    """Sort by group then order columns and cut the table where the group changes."""
    if table.num_rows == 0:
        return Grouping(table, [], [])
    keys = [(c, "ascending") for c in group_by] + \
        [(c, "ascending") for c in order_by if c not in group_by]
    ordered = table.sort_by(keys)
    starts = _group_starts(ordered, group_by)
    ends = [*starts[1:], ordered.num_rows]
    units = [(s, e - s) for s, e in zip(starts, ends, strict=True)]
    labels = _labels(ordered, group_by, starts)
    return Grouping(ordered, units, labels)


def _group_starts(table: pa.Table, group_by: Sequence[str]) -> list[int]:
    changed = None
    for name in group_by:
        col = table.column(name).combine_chunks()
        head, tail = col.slice(0, len(col) - 1), col.slice(1)
        # Nulls form their own group: "changed" when exactly one side is null.
        diff = pc.fill_null(pc.not_equal(head, tail), False)
        diff = pc.or_(diff, pc.xor(pc.is_null(head), pc.is_null(tail)))
        changed = diff if changed is None else pc.or_(changed, diff)
    assert changed is not None
    return [0, *(pc.indices_nonzero(changed).to_numpy() + 1).tolist()]


def _labels(table: pa.Table, group_by: Sequence[str], starts: list[int]) -> list[str]:
    index = pa.array(starts, type=pa.int64())
    columns = [table.column(c).take(index).to_pylist() for c in group_by]
    return ["_".join(_label(v) for v in values) for values in zip(*columns, strict=True)]


def _label(value: object) -> str:
    return "NA" if value is None else str(value)


def batches(units: Sequence[Unit], degree: int, per_worker: int = 4,
            min_batches: int = 1) -> list[list[Unit]]:
    """Contiguous batches: one when sequential, a few per worker when parallel.

    A few per worker rather than one evens out groups of unequal cost; contiguous
    so that results come back in input order. ``min_batches`` asks for more (an
    async job reports progress batch by batch).
    """
    if not units:
        return []
    count = max(1 if degree <= 1 else degree * per_worker, min_batches)
    count = min(len(units), count)
    size, extra = divmod(len(units), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(list(units[start:end]))
        start = end
    return out


def degree_of_parallelism(parallel_flag: bool, parallel: int | None, cap: int,
                          workers: int) -> int:
    """The degree actually used: 1 unless asked for, and never over the caps."""
    if not parallel_flag and parallel is None:
        return 1
    return max(1, min(parallel or cap, cap, workers))
