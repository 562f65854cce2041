"""OML's table functions' output formats: a run's result as rows (docs/sql.md).

Pure. A run's result is the JSON value its REST call answers with (``{"result": R}``'s
R); ``OUT_FMT`` shapes it as OML's SQL API does:

- ``'JSON'``: one row, ``NAME`` (null) and ``VALUE``, the result as JSON text;
- a JSON object of column names and Oracle types, ``'{"ID":"number","NAME":"varchar2(7)"}'``:
  the result's rows (a DataFrame's records, every group's or chunk's concatenated) as
  typed columns, strings cut to their declared length as Oracle does;
- ``'PNG'``: one row per image, ``NAME`` (the group, chunk or index; null for one
  invocation), ``ID``, ``VALUE`` (the function's value as JSON), ``TITLE``, ``IMAGE``
  (the PNG's bytes).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa

from epe.errors import InvalidRequest

FORMATS = ("JSON", "PNG")  # and the relational format, a JSON object


def kind_of(out_fmt: str | None) -> str:
    """``JSON``, ``PNG`` or ``relational``; 400 for what OML has and epe does not (XML)."""
    text = (out_fmt or "JSON").strip()
    if text.upper() in FORMATS:
        return text.upper()
    if text.startswith("{"):
        return "relational"
    if text.upper() == "XML":
        raise InvalidRequest("out_fmt 'XML' is not supported here; use 'JSON', 'PNG' or a "
                             "relational format such as '{\"ID\":\"number\"}'")
    raise InvalidRequest(f"out_fmt must be 'JSON', 'PNG' or a JSON object of column names "
                         f"and types, such as '{{\"ID\":\"number\"}}'; not {text[:80]!r} (a "
                         "table used as a prototype is not supported)")


def as_json(result: bytes) -> pa.Table:
    return pa.table({"NAME": pa.array([None], pa.string()),
                     "VALUE": pa.array([result.decode()], pa.string())})


def one_value(name: str | None, value: str) -> pa.Table:
    """A NAME, VALUE row: how a job id or a job's status is answered."""
    return pa.table({"NAME": pa.array([name], pa.string()),
                     "VALUE": pa.array([value], pa.string())})


# -- relational ------------------------------------------------------------------------

Convert = Callable[[Any], Any]

_INTEGER = re.compile(r"(integer|int|smallint|number\s*\(\s*\d+\s*(,\s*0\s*)?\))", re.I)
_FLOAT = re.compile(r"(number(\s*\(\s*\d+\s*,\s*-?\d+\s*\))?|float(\s*\(\s*\d+\s*\))?|"
                    r"binary_double|binary_float|double precision|real|decimal.*|numeric.*)",
                    re.I)
_STRING = re.compile(r"(n?varchar2?|n?char|varchar)\s*(\(\s*(\d+)\s*(byte|char)?\s*\))?|n?clob",
                     re.I)
_DATE = re.compile(r"date|timestamp(\s*\(\s*\d+\s*\))?", re.I)


def column_types(out_fmt: str) -> list[tuple[str, pa.DataType, Convert]]:
    """The columns a relational ``out_fmt`` declares, in its order."""
    try:
        spec = orjson.loads(out_fmt)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"out_fmt is not valid JSON: {e}") from None
    if not isinstance(spec, dict) or not spec or \
            not all(isinstance(v, str) for v in spec.values()):
        raise InvalidRequest("a relational out_fmt maps column names to Oracle types, such as "
                             "'{\"ID\":\"number\",\"NAME\":\"varchar2(20)\"}'")
    return [(str(name), *_column(str(name), str(kind))) for name, kind in spec.items()]


def _column(name: str, kind: str) -> tuple[pa.DataType, Convert]:
    text = kind.strip()
    if _INTEGER.fullmatch(text):
        return pa.int64(), _number(name, int)
    if _FLOAT.fullmatch(text):
        return pa.float64(), _number(name, float)
    if (m := _STRING.fullmatch(text)) is not None:
        size = int(m.group(3)) if m.group(3) else None
        return pa.string(), _string(size)
    if _DATE.fullmatch(text):
        return pa.timestamp("us"), _date(name)
    if text.lower() == "boolean":
        return pa.bool_(), lambda v: None if v is None else bool(v)
    raise InvalidRequest(f"out_fmt: column {name} has type {kind!r}, which is not supported; "
                         "use number, integer, float, binary_double, varchar2(n), char(n), "
                         "clob, date, timestamp or boolean")


def _number(column: str, kind: type) -> Convert:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            number = float(value)
            return int(number) if kind is int and number.is_integer() else kind(number)
        except (TypeError, ValueError):
            raise InvalidRequest(f"column {column}: {str(value)[:40]!r} is not a number") \
                from None

    return convert


def _string(size: int | None) -> Convert:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return text[:size] if size is not None else text

    return convert


def _date(column: str) -> Convert:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"column {column}: {str(value)[:40]!r} is not a date") \
                from None

    return convert


def _is_columns(value: dict[str, Any]) -> bool:
    """pandas' column form, ``{column: {row: value}}`` (group-apply's DataFrames)."""
    inner = list(value.values())
    if not inner or not all(isinstance(v, dict) for v in inner):
        return False
    rows = set(inner[0])
    return all(set(v) == rows and not any(isinstance(x, dict | list) for x in v.values())
               for v in inner)


def records(value: Any) -> list[dict[str, Any]]:
    """The rows of a result: a DataFrame's records; every group's, chunk's or
    invocation's rows one after the other; a dict as one row; a scalar as one value."""
    if isinstance(value, list):
        if all(isinstance(v, dict) and not _is_columns(v) and
               not any(isinstance(x, dict | list) for x in v.values()) for v in value):
            return list(value)
        return [r for v in value for r in records(v)]
    if isinstance(value, dict):
        if _is_columns(value):
            labels = list(next(iter(value.values())))
            return [{c: value[c][label] for c in value} for label in labels]
        if value and all(isinstance(v, dict | list) for v in value.values()):
            return [r for v in value.values() for r in records(v)]
        return [value]
    return [{"": value}]


def relational(out_fmt: str, result: bytes) -> pa.Table:
    columns = column_types(out_fmt)
    rows = records(orjson.loads(result))
    arrays = []
    for position, (name, kind, convert) in enumerate(columns):
        values = [convert(_lookup(row, name, first=position == 0)) for row in rows]
        arrays.append(pa.array(values, type=kind))
    return pa.table(arrays, names=[name for name, _, _ in columns])


def _lookup(row: dict[str, Any], name: str, first: bool) -> Any:
    if name in row:
        return row[name]
    for key, value in row.items():
        if key.upper() == name.upper():
            return value
    if first and list(row) == [""]:  # a scalar result fills the first column
        return row[""]
    return None


# -- PNG -------------------------------------------------------------------------------

_PNG_SCHEMA = pa.schema([("NAME", pa.string()), ("ID", pa.int64()), ("VALUE", pa.string()),
                         ("TITLE", pa.string()), ("IMAGE", pa.binary())])


def images(result: bytes) -> pa.Table:
    """The images of a run made with graphics: a list of image objects (one invocation),
    or an object of them keyed by group, chunk or index."""
    value = orjson.loads(result)
    entries: list[tuple[str | None, Any]]
    if isinstance(value, list):
        entries = [(None, v) for v in value]
    elif isinstance(value, dict):
        entries = [(str(k), i) for k, v in value.items()
                   for i in (v if isinstance(v, list) else [v])]
    else:
        entries = []
    rows = []
    for label, image in entries:
        if not isinstance(image, dict) or "IMAGE" not in image:
            raise InvalidRequest("out_fmt 'PNG' needs the images of a run made with graphics; "
                                 "this result has none")
        rows.append((label, image.get("ID"), image.get("DATA"), image.get("TITLE"),
                     _png(image.get("IMAGE"))))
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in _PNG_SCHEMA]
    return pa.table([pa.array(list(c), type=f.type) for c, f in
                     zip(columns, _PNG_SCHEMA, strict=True)], schema=_PNG_SCHEMA)


def _png(text: Any) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image of the result is not base64") from None
