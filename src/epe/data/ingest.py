"""Uploaded files to Arrow tables: CSV, Parquet and JSON records.

Arrow reads each format and infers the column types; nothing here guesses a
type by hand. The one adjustment: a column Arrow could only type as ``null``
(no values at all) becomes text, since a table column needs a real type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from epe.errors import InvalidRequest

PARQUET_MAGIC = b"PAR1"
ACCEPTED = "text/csv, application/vnd.apache.parquet or application/json (an array of records)"


def read_csv(body: bytes) -> pa.Table:
    return pa_csv.read_csv(pa.BufferReader(body))


def read_parquet(body: bytes) -> pa.Table:
    return pa_parquet.read_table(pa.BufferReader(body))


def read_json_records(body: bytes) -> pa.Table:
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON ({e}); for a CSV file send "
                             "'Content-Type: text/csv'") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidRequest("a JSON upload must be an array of records: "
                             '[{"COLUMN": value, ...}, ...]')
    if not records:
        raise InvalidRequest("the JSON array is empty: at least one record is needed to "
                             "infer the columns")
    # One struct array over every record: Arrow unifies the keys and types of all rows.
    return pa.Table.from_struct_array(pa.array(records))


# Media type -> (format name, reader).
READERS: dict[str, tuple[str, Callable[[bytes], pa.Table]]] = {
    "text/csv": ("CSV", read_csv),
    "application/csv": ("CSV", read_csv),
    "application/vnd.apache.parquet": ("Parquet", read_parquet),
    "application/x-parquet": ("Parquet", read_parquet),
    "application/parquet": ("Parquet", read_parquet),
    "application/json": ("JSON", read_json_records),
}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def reader_for(content_type: str, body: bytes) -> tuple[str, Callable[[bytes], pa.Table]]:
    media = media_type(content_type)
    if media == "application/octet-stream" and body.startswith(PARQUET_MAGIC):
        media = "application/vnd.apache.parquet"
    if media not in READERS:
        shown = f"Content-Type {media!r}" if media else "a missing Content-Type"
        raise InvalidRequest(f"cannot read a table from {shown}: send {ACCEPTED}")
    return READERS[media]


def read_upload(body: bytes, content_type: str) -> pa.Table:
    """The Arrow table in an upload, or ``InvalidRequest`` saying what is wrong with it."""
    kind, reader = reader_for(content_type, body)
    if not body:
        raise InvalidRequest("the body is empty: send the table's file as the request body")
    try:
        table = reader(body)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
        raise InvalidRequest(f"could not read the body as {kind}: {e}") from None
    return storable(table)


def storable(table: pa.Table) -> pa.Table:
    """``table`` checked for usable column names, with all-null columns typed as text."""
    check_column_names(table.column_names)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def check_column_names(names: list[str]) -> None:
    if not names:
        raise InvalidRequest("the table has no columns")
    if "" in names:
        raise InvalidRequest(f"column {names.index('') + 1} has no name")
    # SQL matches names ignoring case, so columns that differ only by case would clash.
    counts = Counter(n.lower() for n in names)
    clashes = sorted({n for n in names if counts[n.lower()] > 1})
    if clashes:
        raise InvalidRequest(f"column names must be unique, ignoring case: {', '.join(clashes)}")
