"""Planning: cutting an input into groups, chunks and batches (``epe.core.plan``).

Grouping is checked against Arrow's own stable sort on many random tables, so the
fast path (hashing, ranking, a radix sort) is held to the plain definition.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from epe.core import plan
from epe.errors import InvalidRequest


def reference(table: pa.Table, group_by: list[str], order_by: list[str]) -> pa.Table:
    keys = [(c, "ascending") for c in group_by] + \
        [(c, "ascending") for c in order_by if c not in group_by]
    return table.sort_by(keys)  # stable: ties keep the input order


def random_table(rng: np.random.Generator, n: int) -> pa.Table:
    return pa.table({
        "I": pa.array(rng.integers(-2, 3, n), mask=rng.random(n) < 0.1),
        "S": pa.array(rng.choice(["a", "b", "c", "dd"], n), mask=rng.random(n) < 0.1),
        "F": pa.array(rng.choice([0.5, 1.5, -2.0], n)),
        "O": pa.array(rng.integers(0, 3, n)),
        "POS": pa.array(np.arange(n)),
    })


@pytest.mark.parametrize(("group_by", "order_by"), [
    (["I"], []), (["S", "I"], []), (["F"], ["O"]), (["S"], ["O", "I"]),
    (["I", "S", "F"], ["O"]), (["O"], ["O"]),
])
def test_groups_are_a_stable_sort_cut_where_the_key_changes(group_by: list[str],
                                                            order_by: list[str]) -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        table = random_table(rng, int(rng.integers(1, 200)))
        grouping = plan.group_units(table, group_by, order_by)
        expected = reference(table, group_by, order_by)
        assert grouping.table.equals(expected)
        keys = list(zip(*(expected.column(c).to_pylist() for c in group_by), strict=True))
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        assert [u[0] for u in grouping.units] == starts
        assert sum(u[1] for u in grouping.units) == table.num_rows
        assert grouping.keys == ["_".join("NA" if v is None else str(v) for v in keys[s])
                                 for s in starts]


def test_nan_is_one_group_and_negative_zero_is_zero() -> None:
    table = pa.table({"X": [1.0, math.nan, -0.0, None, math.nan, 0.0, 1.0],
                      "POS": list(range(7))})
    grouping = plan.group_units(table, ["X"], [])
    assert grouping.keys == ["-0.0", "1.0", "nan", "NA"]
    assert [u[1] for u in grouping.units] == [2, 2, 2, 1]
    assert grouping.table.column("POS").to_pylist() == [2, 5, 0, 6, 1, 4, 3]


def test_dictionary_columns_group_by_their_values() -> None:
    column = pa.chunked_array([pa.array(["b", "a"]).dictionary_encode(),
                               pa.array(["a", "c", "b"]).dictionary_encode()])
    grouping = plan.group_units(pa.table({"D": column}), ["D"], [])
    assert grouping.keys == ["a", "b", "c"]
    assert [u[1] for u in grouping.units] == [2, 2, 1]


def test_many_groups_beyond_sixteen_bits() -> None:
    n = 200_000
    values = np.random.default_rng(3).permutation(n)  # every row its own group
    grouping = plan.group_units(pa.table({"G": values, "POS": np.arange(n)}), ["G"], [])
    assert len(grouping.units) == n
    assert grouping.table.column("G").to_pylist() == list(range(n))


def test_a_large_table_in_several_chunks_is_the_same_stable_sort() -> None:
    # Large enough for its columns to be taken on several threads at once.
    rng = np.random.default_rng(11)
    n = plan.PARALLEL_TAKE_ROWS + 1234
    table = pa.Table.from_batches(random_table(rng, n).to_batches(max_chunksize=30_000))
    assert table.column("S").num_chunks > 1
    grouping = plan.group_units(table, ["S", "I"], ["O"])
    assert grouping.table.equals(reference(table, ["S", "I"], ["O"]))
    assert grouping.table.schema == table.schema


def test_a_column_that_cannot_be_grouped_is_a_clear_400() -> None:
    table = pa.table({"L": pa.array([[1], [2]])})
    with pytest.raises(InvalidRequest, match="cannot group by column L"):
        plan.group_units(table, ["L"], [])


def test_empty_input_has_no_groups() -> None:
    grouping = plan.group_units(pa.table({"G": pa.array([], pa.int64())}), ["G"], [])
    assert grouping.units == [] and grouping.keys == []


def test_chunks_and_batches() -> None:
    assert plan.chunk_units(25, 10) == [(0, 10), (10, 10), (20, 5)]
    units = plan.chunk_units(100, 1)
    batches = plan.batches(units, 2)
    assert len(batches) == 8 and [u for b in batches for u in b] == units
    assert plan.batches(units, 1) == [units]
