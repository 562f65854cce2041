"""Turning a function's return value into JSON (docs/api.md#results).

Runs in the worker, which hands the server finished JSON bytes: the server
never has to hold or inspect the user's Python objects. The server encodes only plain
values and Arrow's (``POST /query``'s JSON rows), so this module never imports numpy or
pandas itself: a value of theirs exists only in a process that imported them (the
worker always), where they are found in ``sys.modules``. Importing pandas was a quarter
of the server's start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import math
import sys
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from epe.errors import OutputTooLarge, ResultNotSerializable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_OPTIONS = orjson.OPT_NON_STR_KEYS
_NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float: arrays orjson writes natively


def dataframe_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of row records, column names as strings."""
    return df.rename(columns=str).to_dict(orient="records")


def dataframe_columns(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """pandas' column -> {row -> value} form (what OML's group-apply returns)."""
    return {str(c): {str(i): v for i, v in s.items()} for c, s in df.items()}


def _array(value: np.ndarray) -> Any:
    if value.dtype.kind in _NUMERIC_KINDS:
        # orjson's native writer (NaN and infinities come out as null); it refuses
        # arrays that are not C-contiguous or of an unusual width: the general path below.
        with contextlib.suppress(orjson.JSONEncodeError):
            return orjson.Fragment(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    if value.dtype.kind == "M":  # datetime64: as datetimes (so ISO), NaT as None
        return value.astype("datetime64[us]").tolist()
    return value.tolist()


def _default(value: Any) -> Any:
    """What orjson does not write itself, as something it does."""
    if (np := sys.modules.get("numpy")) is not None:
        if isinstance(value, np.ndarray):
            return _array(value)
        if isinstance(value, np.datetime64):
            return value.astype("datetime64[us]").item()
        if isinstance(value, np.generic):
            return value.item()
    if (pd := sys.modules.get("pandas")) is not None:
        if isinstance(value, pd.DataFrame):
            return dataframe_records(value)
        if isinstance(value, pd.Series):
            return {str(k): v for k, v in value.items()}
        if isinstance(value, pd.Timestamp):
            return None if pd.isna(value) else value.isoformat()
        if isinstance(value, pd.Timedelta):  # seconds, as for datetime.timedelta
            return None if pd.isna(value) else value.total_seconds()
        if value is pd.NA or value is pd.NaT:
            return None
    if isinstance(value, decimal.Decimal):
        return None if value.is_nan() else float(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__qualname__)


def _plain(value: Any) -> Any:
    """``value`` as plain Python the standard json module writes exactly.

    The slow path, taken only where orjson refuses: integers beyond 64 bits,
    numpy scalars as dict keys. Names the type of anything that cannot be JSON.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if _is_nat(value):  # a datetime subclass, but missing
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, orjson.Fragment):
        return json.loads(value.contents)
    try:
        return _plain(_default(value))
    except TypeError:
        raise _not_serializable(type(value)) from None


def _is_nat(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and value is pd.NaT


def _key(key: Any) -> str:
    np = sys.modules.get("numpy")
    plain = _plain(key.item() if np is not None and isinstance(key, np.generic) else key)
    if isinstance(plain, dict | list):
        raise _not_serializable(type(key))
    return "null" if plain is None else str(plain).lower() if isinstance(plain, bool) \
        else str(plain)


def _not_serializable(kind: type) -> ResultNotSerializable:
    return ResultNotSerializable(
        f"the function returned a value of type {kind.__qualname__}, which cannot be "
        "converted to JSON; return a DataFrame, dict, list, str or number")


def to_json(value: Any, limit: int) -> bytes:
    """``value`` as JSON bytes; NaN and infinities become ``null``, dates ISO-8601."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError:
        try:
            plain = _plain(value)
        except RecursionError:
            raise ResultNotSerializable("the function returned a value that contains itself, "
                                        "which cannot be converted to JSON") from None
        data = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > limit:
        raise OutputTooLarge(f"Output exceeds maximum length {limit} bytes "
                             f"(the result is {len(data)} bytes)")
    return data


def wrap_result(payload: bytes) -> bytes:
    """``{"result": R}`` around JSON already encoded, without parsing it again."""
    return b'{"result":' + payload + b"}"


def arrow_stream(table: pa.Table) -> bytes:
    """A table as an Arrow IPC stream (``POST /query``'s Arrow answer, ``oml.sync``)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
