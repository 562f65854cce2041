"""The exchange that hands inputs to workers, on real files in shared memory: a table
in hand and a query's stream are written alike, and a stream that fails midway
leaves no file behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from epe.data import Catalog, open_catalog
from epe.errors import InvalidRequest
from epe.runner.local.exchange import Exchange

MANY = "SELECT range AS X, range * 2 AS Y FROM range(300000)"
LATE_FAILURE = ("SELECT CASE WHEN range < 250000 THEN range ELSE error('late') END AS X "
                "FROM range(300000)")


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    ex = Exchange(None)
    yield ex
    ex.close()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"duckdb:///{tmp_path / 'tables'}", query_timeout=60)
    yield cat
    cat.close()


def read(path: str) -> pa.Table:
    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def test_a_table_is_written_whole(exchange: Exchange) -> None:
    table = pa.table({"A": [1, 2, 3], "B": ["x", None, "z"]})
    shared = exchange.write(table)
    assert shared.rows == 3 and read(shared.ref.location).equals(table)
    assert oct(os.stat(shared.ref.location).st_mode & 0o777) == "0o640"


def test_a_stream_is_written_batch_by_batch(exchange: Exchange, catalog: Catalog) -> None:
    shared = exchange.write(lambda: catalog.stream("ANN", MANY))
    written = read(shared.ref.location)
    assert shared.rows == 300000
    assert written.equals(catalog.query("ANN", MANY))
    assert written.column("X").num_chunks > 1  # it came, and went, in several batches


def test_a_stream_failing_midway_leaves_no_file(exchange: Exchange, catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest, match="late"):
        exchange.write(lambda: catalog.stream("ANN", LATE_FAILURE))
    assert os.listdir(exchange.dir) == []


def test_a_failing_writer_releases_the_stream(exchange: Exchange) -> None:
    closed: list[bool] = []

    @contextmanager
    def stream() -> Iterator[pa.RecordBatchReader]:
        try:
            yield pa.RecordBatchReader.from_batches(
                pa.schema([("A", pa.int64())]), iter([pa.record_batch({"A": [1]})]))
        finally:
            closed.append(True)

    os.rmdir(exchange.dir)  # the file cannot be made (modes would not stop root)
    with pytest.raises(OSError):
        exchange.write(stream)
    assert closed == [True]


def test_warming_up_leaves_no_file_behind(exchange: Exchange) -> None:
    exchange.warm_up()
    assert os.listdir(exchange.dir) == []
