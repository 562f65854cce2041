"""epe.core.results: a function's return value as the JSON of docs/api.md#results."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from epe.core.results import dataframe_columns, dataframe_records, to_json
from epe.errors import OutputTooLarge, ResultNotSerializable

LIMIT = 1024 * 1024


def encode(value: Any) -> Any:
    """``to_json``'s bytes, parsed back (so tests compare values, not spacing)."""
    return orjson.loads(to_json(value, LIMIT))


# -- plain Python -----------------------------------------------------------------

@pytest.mark.parametrize("value", [None, True, 0, -3, 2.5, "héllo", [1, "a"], {"k": [1, {}]}])
def test_json_native_values_are_unchanged(value: Any) -> None:
    assert encode(value) == value


def test_tuples_become_lists_and_non_string_keys_strings() -> None:
    assert encode((1, (2, 3))) == [1, [2, 3]]
    assert encode({1: "a", 2.5: "b", None: "d"}) == {"1": "a", "2.5": "b", "null": "d"}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_become_null(value: float) -> None:
    assert to_json(value, LIMIT) == b"null"
    assert encode({"x": [value, 1.0]}) == {"x": [None, 1.0]}


def test_dates_and_times_are_iso_8601() -> None:
    assert encode(dt.date(2024, 2, 29)) == "2024-02-29"
    assert encode(dt.datetime(2024, 2, 29, 13, 5, 9)) == "2024-02-29T13:05:09"
    assert encode(dt.datetime(2024, 2, 29, 13, 5, tzinfo=dt.UTC)) == "2024-02-29T13:05:00+00:00"
    assert encode(dt.time(7, 30)) == "07:30:00"


def test_decimals_become_numbers_and_nan_decimals_null() -> None:
    assert encode(decimal.Decimal("1.25")) == 1.25
    assert encode([decimal.Decimal("NaN"), decimal.Decimal("Infinity")]) == [None, None]


def test_sets_become_lists() -> None:
    assert sorted(encode({3, 1, 2})) == [1, 2, 3]
    assert encode(frozenset()) == []


def test_timedelta_is_a_number_of_seconds() -> None:
    assert encode(dt.timedelta(minutes=1, milliseconds=500)) == 60.5


# -- numpy ------------------------------------------------------------------------

def test_numpy_scalars_become_their_python_values() -> None:
    values = [np.int64(3), np.int8(-1), np.uint64(7), np.float32(1.5), np.float64(0.25),
              np.bool_(True)]
    assert encode(values) == [3, -1, 7, 1.5, 0.25, True]


def test_numpy_nan_scalars_become_null() -> None:
    assert encode([np.float64("nan"), np.float32("inf")]) == [None, None]


def test_numpy_arrays_become_nested_lists_with_nan_as_null() -> None:
    assert encode(np.array([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert encode(np.array([1.0, np.nan, -np.inf])) == [1.0, None, None]
    assert encode(np.array(["a", "b"])) == ["a", "b"]
    assert encode(np.array([1, "a", None], dtype=object)) == [1, "a", None]


def test_numpy_datetimes_are_iso_8601() -> None:
    assert encode(np.datetime64("2024-01-02")) == "2024-01-02T00:00:00"


def test_numpy_not_a_time_is_null_inside_an_array() -> None:
    # df["when"].to_numpy() hands a function this array; NaT is a missing
    # value, and must not turn into 1970-01-01.
    when = np.array(["2024-01-02", "NaT"], dtype="datetime64[D]")
    assert encode(when) == ["2024-01-02T00:00:00", None]


def test_numpy_scalar_dict_keys_are_keys_like_python_ones() -> None:
    # dict(zip(np.arange(3), ...)) is how many functions build their result.
    assert encode({np.int64(1): "a", np.str_("b"): 2}) == {"1": "a", "b": 2}


def test_python_ints_beyond_64_bits_are_json_numbers() -> None:
    assert to_json(2**70, LIMIT) == b"1180591620717411303424"
    assert to_json(pd.DataFrame({"x": [-(2**70)]}), LIMIT) == b'[{"x":-1180591620717411303424}]'


def test_the_slow_path_keeps_every_rule() -> None:
    # A numpy key sends the whole value down the exact (standard json) path; the
    # rules for what is inside must not change with it.
    value = {np.int64(1): [math.nan, 2**70, dt.date(2024, 1, 1), {7}, np.float32(0.5),
                           pd.DataFrame({"a": [np.inf]}), pd.NaT, "é"]}
    assert to_json(value, LIMIT) == (
        '{"1":[null,1180591620717411303424,"2024-01-01",[7],0.5,[{"a":null}],null,"é"]}'
        .encode())


def test_non_contiguous_and_small_float_arrays() -> None:
    assert encode(np.arange(10.0)[::3]) == [0.0, 3.0, 6.0, 9.0]
    assert encode(np.array([1.5, np.nan], dtype=np.float16)) == [1.5, None]


# -- pandas -----------------------------------------------------------------------

def test_dataframe_becomes_a_list_of_row_records() -> None:
    df = pd.DataFrame({"SPECIES": ["setosa", "virginica"], "N": [50, 50], 3: [1.5, 2.5]})
    assert encode(df) == [{"SPECIES": "setosa", "N": 50, "3": 1.5},
                          {"SPECIES": "virginica", "N": 50, "3": 2.5}]


def test_dataframe_index_is_dropped_from_records() -> None:
    df = pd.DataFrame({"x": [1, 2]}, index=["r1", "r2"])
    assert encode(df) == [{"x": 1}, {"x": 2}]


def test_dataframe_missing_values_become_null() -> None:
    df = pd.DataFrame({
        "f": [1.0, np.nan],
        "inf": [np.inf, 2.0],
        "s": ["a", None],
        "i": pd.array([1, None], dtype="Int64"),
        "d": [pd.Timestamp("2024-01-01 12:00"), pd.NaT],
    })
    assert encode(df) == [
        {"f": 1.0, "inf": None, "s": "a", "i": 1, "d": "2024-01-01T12:00:00"},
        {"f": None, "inf": 2.0, "s": None, "i": None, "d": None},
    ]


def test_pandas_missing_scalars_become_null() -> None:
    assert encode([pd.NA, pd.NaT]) == [None, None]


def test_pandas_timestamp_is_iso_8601() -> None:
    assert encode(pd.Timestamp("2024-03-01 08:15:00")) == "2024-03-01T08:15:00"


def test_series_becomes_an_object_keyed_by_its_index() -> None:
    assert encode(pd.Series([1.0, np.nan], index=["a", "b"])) == {"a": 1.0, "b": None}


def test_dataframes_nested_in_containers_are_records_too() -> None:
    df = pd.DataFrame({"x": [1]})
    assert encode({"model": "lm", "fit": df, "parts": [df]}) == {
        "model": "lm", "fit": [{"x": 1}], "parts": [[{"x": 1}]]}


def test_dataframe_records_and_columns_shapes() -> None:
    df = pd.DataFrame({"SEPAL_LENGTH": [5.7, 6.1], "COUNT": [1, 2]}, index=[0, 1])
    assert dataframe_records(df) == [{"SEPAL_LENGTH": 5.7, "COUNT": 1},
                                     {"SEPAL_LENGTH": 6.1, "COUNT": 2}]
    # OML's group-apply shape: column -> {row label as a string -> value}.
    assert dataframe_columns(df) == {"SEPAL_LENGTH": {"0": 5.7, "1": 6.1},
                                     "COUNT": {"0": 1, "1": 2}}


def test_dataframe_columns_stringifies_non_string_labels() -> None:
    df = pd.DataFrame({7: ["a"]}, index=[10])
    assert dataframe_columns(df) == {"7": {"10": "a"}}


# -- refusals ---------------------------------------------------------------------

class Model:
    pass


@pytest.mark.parametrize(("value", "type_name"), [
    (Model(), "Model"),
    ([1, {"deep": Model()}], "Model"),
    (object(), "object"),
    (lambda: 1, "function"),
    (complex(1, 2), "complex"),
    (b"raw", "bytes"),
])
def test_a_value_that_cannot_become_json_is_refused_naming_its_type(value: Any,
                                                                     type_name: str) -> None:
    with pytest.raises(ResultNotSerializable) as info:
        to_json(value, LIMIT)
    assert f"of type {type_name}," in info.value.message
    assert (info.value.status, info.value.code) == (400, 1012)


def test_a_dict_key_that_cannot_become_json_is_refused_naming_its_type() -> None:
    with pytest.raises(ResultNotSerializable) as info:
        to_json({(1, 2): "pair"}, LIMIT)
    assert "of type tuple," in info.value.message


def test_a_value_that_contains_itself_is_not_serializable() -> None:
    # Not a RecursionError escaping into the worker (which would report it as the
    # user's function failing, error 1011).
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(ResultNotSerializable):
        to_json(looped, LIMIT)


def test_a_result_over_the_limit_is_output_too_large_with_oml_code_1024() -> None:
    value = "x" * 100  # 102 bytes of JSON with its quotes
    assert to_json(value, 102) == b'"' + b"x" * 100 + b'"'
    with pytest.raises(OutputTooLarge) as info:
        to_json(value, 101)
    assert (info.value.status, info.value.code) == (400, 1024)
    assert "101 bytes" in info.value.message and "102 bytes" in info.value.message


def test_the_limit_counts_the_encoded_json_of_a_dataframe() -> None:
    df = pd.DataFrame({"x": range(1000)})
    size = len(to_json(df, LIMIT))
    with pytest.raises(OutputTooLarge):
        to_json(df, size - 1)
