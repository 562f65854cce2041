"""Calling the user's function over a batch of units (runs inside the worker).

The batch's rows are converted to pandas once; each unit is then a cheap slice
with a fresh 0..n-1 index. Every call's value is encoded to a JSON fragment at
once, so a batch never holds more than one user value at a time.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from epe.core.operations import Calling
from epe.core.results import dataframe_columns, to_json
from epe.errors import InvalidRequest, OutputTooLarge
from epe.runner.worker.graphics import FigureCapture, entry
from epe.runner.worker.inputs import resolve


@dataclass
class BatchOutput:
    fragments: list[bytes] = field(default_factory=list)
    frames: list[bool] = field(default_factory=list)
    size: int = 0


def is_numeric(schema: pa.Schema) -> bool:
    return all(pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type) for f in schema)


def as_input_type(df: pd.DataFrame, input_type: str, numeric: bool) -> Any:
    """OML's ``oml_input_type``: a DataFrame, a recarray, or by default a float matrix
    when every column is numeric."""
    if input_type == "numpy.recarray":
        return df.to_records(index=False)
    if input_type == "default" and numeric:
        return df.to_numpy(dtype=np.float64)
    return df


def frames_as_they_are(input_type: str, numeric: bool) -> bool:
    """Whether ``as_input_type`` gives each frame itself."""
    return input_type != "numpy.recarray" and not (input_type == "default" and numeric)


def frames(table: pa.Table, units: list[list[int]]) -> Iterator[pd.DataFrame]:
    """One DataFrame per ``(offset, length)`` unit, converting the batch's span once.

    Each unit is cut from the converted span's block manager, as pandas' own groupby
    cuts its groups: ``iloc`` plus a new index costs three times as much, which is most
    of the per-group cost of a cheap function over many small groups. The frames share
    the span's memory until written to (copy-on-write), and each has a 0..n-1 index of
    its own (an index's ``name`` can be set, so units never share one).
    """
    if not units:
        return
    base = units[0][0]
    end = units[-1][0] + units[-1][1]
    whole = table.slice(base, end - base).to_pandas()
    manager = whole._mgr
    for offset, length in units:
        part = manager.get_slice(slice(offset - base, offset - base + length), axis=1)
        part.set_axis(1, pd.RangeIndex._simple_new(range(length)))
        yield pd.DataFrame._from_mgr(part, axes=part.axes)


def encode(value: Any, columns: bool, limit: int) -> tuple[bytes, bool]:
    is_frame = isinstance(value, pd.DataFrame)
    if is_frame and columns:
        value = dataframe_columns(value)
    return to_json(value, limit), is_frame


def unpickle_kwargs(data: str | None) -> dict[str, Any]:
    """``pickledParameters``: a base64 cloudpickle of a dict of keyword arguments."""
    if not data:
        return {}
    try:
        value = cloudpickle.loads(base64.b64decode(data, validate=True))
    except Exception as e:
        raise InvalidRequest(f"pickledParameters could not be read: {type(e).__name__}: {e}"
                             ) from None
    if not isinstance(value, dict):
        raise InvalidRequest("pickledParameters must hold a dict of keyword arguments")
    return value


def pickled(value: Any, images: list[dict[str, Any]] | None) -> tuple[bytes, bool]:
    """The value (with graphics: the value and the PNGs' bytes) as a JSON string of
    base64 cloudpickle, for the Python client."""
    obj = value if images is None else (value, [base64.b64decode(i["IMAGE"]) for i in images])
    text = base64.b64encode(cloudpickle.dumps(obj)).decode("ascii")
    return orjson.dumps(text), isinstance(value, pd.DataFrame)


class Batch:
    """One task: the function, its arguments, and where it is in the batch."""

    def __init__(self, func: Callable[..., Any], header: dict[str, Any], limit: int,
                 capture: FigureCapture) -> None:
        self.func = func
        self.capture = capture
        self.graphics = bool(header.get("graphics"))
        self.calling = Calling(header["call"], bool(header.get("frames_as_columns")),
                               bool(header.get("images_as_list")))
        self.kwargs: dict[str, Any] = {**(header.get("kwargs") or {}),
                                       **unpickle_kwargs(header.get("pickled_kwargs"))}
        self.pickle = header.get("result_format") == "pickle"
        self.units: list[list[int]] = header.get("units") or []
        self.input_ref: dict[str, Any] | None = header.get("input")
        self.input_type: str = header.get("input_type", "default")
        self.limit = limit
        self.position = 0  # the unit being run, reported if it fails

    def run(self) -> BatchOutput:
        out = BatchOutput()
        func, kwargs, capture, graphics = self.func, self.kwargs, self.capture, self.graphics
        for time, args in self._calls():
            capture.begin(graphics)
            value = func(*args, **kwargs)
            images = capture.end()
            if self.pickle:
                fragment, is_frame = pickled(value, images if self.graphics else None)
            else:
                fragment, is_frame = encode(value, self.calling.frames_as_columns, self.limit)
                if self.graphics:
                    fragment = entry(images, fragment, time, self.calling.images_as_list)
            out.size += len(fragment)
            if out.size > self.limit:
                raise OutputTooLarge(f"Output exceeds maximum length {self.limit} bytes")
            out.fragments.append(fragment)
            out.frames.append(is_frame)
            self.position += 1
        return out

    def _calls(self) -> Iterator[tuple[int | None, tuple[Any, ...]]]:
        """Each invocation as (its index-apply ``TIME`` or None, its positional arguments;
        the keyword arguments are the batch's)."""
        if self.calling.call == "kwargs":
            yield None, ()
        elif self.calling.call == "index":
            for index, _ in self.units:
                yield index, (index,)
        else:
            yield from self._data_calls()

    def _data_calls(self) -> Iterator[tuple[int | None, tuple[Any, ...]]]:
        assert self.input_ref is not None
        table = resolve(self.input_ref)
        numeric = is_numeric(table.schema)
        if frames_as_they_are(self.input_type, numeric):  # most calls: no step between
            for df in frames(table, self.units):
                yield None, (df,)
            return
        for df in frames(table, self.units):
            yield None, (as_input_type(df, self.input_type, numeric),)
