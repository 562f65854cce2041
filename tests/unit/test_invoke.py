"""How the worker cuts a batch's rows into one DataFrame per unit (runner/worker/invoke.py)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from pandas.testing import assert_frame_equal

from epe.runner.worker.invoke import frames

TABLE = pa.table({"g": [1, 1, 2, 2, 2, 3], "x": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
                  "s": ["a", "b", None, "d", "e", "f"]})


def test_each_unit_is_its_rows_with_a_fresh_index() -> None:
    units = [[0, 2], [2, 3], [5, 1]]
    expected = TABLE.to_pandas()
    for (offset, length), part in zip(units, frames(TABLE, units), strict=True):
        want = expected.iloc[offset:offset + length].reset_index(drop=True)
        assert_frame_equal(part, want)
        assert isinstance(part.index, pd.RangeIndex)


def test_a_batch_can_start_anywhere_in_the_input() -> None:
    parts = list(frames(TABLE, [[2, 3], [5, 1]]))
    assert parts[0]["x"].tolist() == [2.5, 3.5, 4.5]
    assert parts[1]["s"].tolist() == ["f"]


def test_writing_to_one_unit_changes_no_other() -> None:
    first, second = frames(TABLE, [[0, 2], [2, 2]])
    first.loc[0, "x"] = 99.0
    first["new"] = 1
    assert second["x"].tolist() == [2.5, 3.5]
    assert "new" not in second.columns
    assert next(frames(TABLE, [[0, 2]]))["x"].tolist() == [0.5, 1.5]


def test_no_units_no_frames() -> None:
    assert list(frames(TABLE, [])) == []


def test_naming_one_units_index_names_no_other() -> None:
    first, second = frames(TABLE, [[0, 2], [2, 2]])
    first.index.name = "row"
    first.columns.name = "field"
    assert second.index.name is None
    assert second.columns.name is None
