"""Reading a query's batches ahead of writing them (runner/local/exchange.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from epe.runner.local.exchange import read_ahead


def batches(n: int, made: list[int] | None = None,
            fail_after: int | None = None) -> Iterator[pa.RecordBatch]:
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise OSError(f"the database failed at batch {i}")
        if made is not None:
            made.append(i)
        yield pa.record_batch({"i": [i]})


def reading_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "epe-read-ahead"]


def test_every_batch_comes_in_order() -> None:
    got = [b.column(0)[0].as_py() for b in read_ahead(batches(50))]
    assert got == list(range(50))
    assert reading_threads() == []


def test_a_failure_of_the_stream_is_raised_after_the_batches_before_it() -> None:
    got = []
    with pytest.raises(OSError, match="failed at batch 3"):
        for b in read_ahead(batches(10, fail_after=3)):
            got.append(b.column(0)[0].as_py())
    assert got == [0, 1, 2]
    assert reading_threads() == []


def test_it_reads_at_most_its_depth_ahead_and_stops_when_the_reader_does() -> None:
    made: list[int] = []
    ahead = read_ahead(batches(100, made), depth=2)
    first = next(ahead)
    assert first.column(0)[0].as_py() == 0
    # The thread fills the two slots and holds a third batch waiting for room.
    for _ in range(100):
        if len(made) >= 4:
            break
        threading.Event().wait(0.01)
    assert len(made) <= 4
    ahead.close()  # the writer failed, say: the thread ends before close returns
    assert reading_threads() == []
    assert len(made) <= 5
