"""Planning: how a run's input splits into invocations, and those into batches.

Pure functions over Arrow tables and integers. An invocation is a *unit*: a
slice ``(offset, length)`` of the input table (table-, row-, group-apply) or an
index (index-apply). Units go to workers in *batches* so that small ones cost
microseconds each, not a process round trip.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
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
    """Sort by group then order columns and cut the table where the group changes.

    Rows of a group keep their input order where the order columns tie (the sort is
    stable). Groups are found by hashing, not by comparing rows: each group column's
    distinct values are ranked, the ranks combined into one dense group number, and
    the rows ordered by it with numpy's radix sort, which costs a few milliseconds per
    million rows where a general sort of the table costs ten times that.
    """
    if table.num_rows == 0:
        return Grouping(table, [], [])
    group, count = _group_numbers(table, group_by)
    order = [c for c in order_by if c not in group_by]
    if order:
        within = pc.sort_indices(table, [(c, "ascending") for c in order]).to_numpy()
        perm = within[_stable_argsort(group[within], count)]
    else:
        perm = _stable_argsort(group, count)
    ordered = _take(table, pa.array(perm))
    # The rows are in group-number order, so each group's rows start where the groups
    # numbered before it end: counting them is a pass over the numbers, where finding
    # the changes in the sorted numbers gathers them all in a new order first.
    sizes = np.bincount(group, minlength=count)
    sizes = sizes[sizes > 0]
    starts = np.concatenate(([0], np.cumsum(sizes[:-1]))).tolist()
    units = list(zip(starts, sizes.tolist(), strict=True))
    return Grouping(ordered, units, _labels(ordered, group_by, starts))


def _take(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)``, its columns taken at once on the machine's cores (Arrow
    takes a table's columns one after the other, and the workers wait for this)."""
    if table.num_rows < PARALLEL_TAKE_ROWS or table.num_columns < 2:
        return table.take(indices)
    columns = list(_takers().map(lambda column: column.take(indices), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


PARALLEL_TAKE_ROWS = 100_000  # below, starting the threads' work costs more than it saves


@functools.cache
def _takers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="epe-take")


def _group_numbers(table: pa.Table, group_by: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each row's group as a number below ``count``, numbered in the groups' sort order."""
    group, count = _ranks(table.column(group_by[0]), group_by[0])
    for name in group_by[1:]:
        ranks, size = _ranks(table.column(name), name)
        # Lexicographic: the groups so far, then this column; renumbered densely so
        # that the numbers stay small however many columns there are.
        group, count = _dense(group * size + ranks)
    return group, count


def _ranks(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, int]:
    """Each value's rank among the column's distinct values, nulls last (so ranks are
    below the distinct values plus one, the second number). NaN is one value; -0.0
    is 0.0."""
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_floating(values.type):
        values = pc.add(values, pa.scalar(0.0, values.type))  # -0.0 + 0.0 is 0.0
    try:
        encoded = pc.dictionary_encode(values)
    except pa.ArrowNotImplementedError:
        raise InvalidRequest(f"cannot group by column {name} of type {values.type}") from None
    ranks, distinct = _ranked(encoded)
    return ranks, distinct + 1


def _dense(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """``keys`` renumbered 0..n-1 keeping their order, and n."""
    return _ranked(pc.dictionary_encode(pa.array(keys)))


def _ranked(encoded: pa.DictionaryArray) -> tuple[np.ndarray, int]:
    """Each entry's rank among the dictionary's values (a null ranks after them all),
    and how many values the dictionary holds."""
    distinct = len(encoded.dictionary)
    rank_of = np.empty(distinct + 1, dtype=np.int64)
    rank_of[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(distinct)
    rank_of[distinct] = distinct  # null
    return rank_of[pc.fill_null(encoded.indices, distinct).to_numpy()], distinct


def _stable_argsort(keys: np.ndarray, count: int) -> np.ndarray:
    # numpy sorts 16-bit integers stably by radix, in linear time.
    return np.argsort(keys.astype(np.uint16) if count <= 1 << 16 else keys, kind="stable")


def _labels(table: pa.Table, group_by: Sequence[str], starts: list[int]) -> list[str]:
    index = pa.array(starts, type=pa.int64())
    columns = [_column_labels(table.column(c).take(index)) for c in group_by]
    if len(columns) == 1:
        return columns[0]
    return ["_".join(values) for values in zip(*columns, strict=True)]


def _column_labels(values: pa.ChunkedArray) -> list[str]:
    """Each value as Python's ``str`` writes it, ``NA`` for a null."""
    if pa.types.is_integer(values.type) or pa.types.is_string(values.type) or \
            pa.types.is_large_string(values.type):
        # Arrow writes integers and strings as Python does, and far faster.
        return pc.fill_null(pc.cast(values, pa.string()), "NA").to_pylist()
    return [_label(v) for v in values.to_pylist()]


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
