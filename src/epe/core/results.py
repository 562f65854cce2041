"""Turning a function's return value into JSON (CONTRACT A4).

Runs in the worker, which hands the server finished JSON bytes: the server
never has to hold or inspect the user's Python objects.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from epe.errors import OutputTooLarge, ResultNotSerializable

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dataframe_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of row records, column names as strings."""
    return df.rename(columns=str).to_dict(orient="records")


def dataframe_columns(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """pandas' column -> {row -> value} form (what OML's group-apply returns)."""
    return {str(c): {str(i): v for i, v in s.items()} for c, s in df.items()}


def _default(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return dataframe_records(value)
    if isinstance(value, pd.Series):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()  # arrays orjson does not take natively (objects, strings)
    if isinstance(value, np.generic):
        return value.item()
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


def to_json(value: Any, limit: int) -> bytes:
    """``value`` as JSON bytes; NaN and infinities become ``null``, dates ISO-8601."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except TypeError as e:
        kind = _type_name(e)
        raise ResultNotSerializable(
            f"the function returned a value of type {kind}, which cannot be converted to "
            "JSON; return a DataFrame, dict, list, str or number") from None
    if len(data) > limit:
        raise OutputTooLarge(f"Output exceeds maximum length {limit} bytes "
                             f"(the result is {len(data)} bytes)")
    return data


def _type_name(e: TypeError) -> str:
    # orjson's message is "Type is not JSON serializable: <name>" for its own
    # refusals; our hook raises with the bare type name.
    text = str(e)
    return text.rsplit(": ", 1)[-1] if ": " in text else text
