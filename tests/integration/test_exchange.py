"""The exchange that hands inputs to workers, on real files in shared memory: a table
in hand and a query's stream are written alike, a stream that fails midway leaves no
file behind, the next input is written over the last one's file (within the spares'
budget), and a worker's frame still held after its task keeps its values."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from epe.data import Catalog, open_catalog
from epe.errors import InvalidRequest, ServerBusy
from epe.runner.local.exchange import Exchange, Spares, remove_stale
from epe.runner.worker import inputs

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


# -- spares: the next input written over the last one's pages --------------------------


SMALL = pa.table({"A": list(range(10)), "B": ["x"] * 10})


def test_the_next_input_is_written_over_the_last_and_cut_to_its_length(
        exchange: Exchange, catalog: Catalog) -> None:
    first = exchange.write(lambda: catalog.stream("ANN", MANY))
    exchange.done_with(first)
    assert os.listdir(exchange.dir) == [os.path.basename(first.ref.location)]
    smaller = exchange.write(SMALL)
    assert smaller.ref.location == first.ref.location
    assert read(smaller.ref.location).equals(SMALL)  # nothing of the longer one behind it
    exchange.done_with(smaller)
    larger = exchange.write(lambda: catalog.stream("ANN", MANY))
    assert larger.ref.location == first.ref.location
    assert read(larger.ref.location).equals(catalog.query("ANN", MANY))
    assert oct(os.stat(larger.ref.location).st_mode & 0o777) == "0o640"


def test_inputs_written_at_once_get_files_of_their_own(exchange: Exchange) -> None:
    one, two = exchange.write(SMALL), exchange.write(SMALL)
    assert one.ref.location != two.ref.location
    exchange.done_with(one)
    exchange.done_with(two)
    assert len(os.listdir(exchange.dir)) == 1  # one spare a folder; the other is removed


def test_spares_stay_within_the_process_budget(tmp_path: Path, catalog: Catalog) -> None:
    spares = Spares(limit=1 << 20)
    first, second = Exchange(None, spares), Exchange(None, spares)
    try:
        big = first.write(lambda: catalog.stream("ANN", MANY))  # 4.8 MB: over the budget
        first.done_with(big)
        assert os.listdir(first.dir) == [] and spares.held == 0
        small = first.write(SMALL)
        first.done_with(small)
        assert spares.held == os.path.getsize(small.ref.location) <= 1 << 20
        spares.limit = spares.held + 1  # room for no second spare
        other = second.write(SMALL)
        second.done_with(other)
        assert os.listdir(second.dir) == []
    finally:
        first.close()
        second.close()
    assert spares.held == 0


def test_an_input_larger_than_the_mapped_spare_is_written_whole(catalog: Catalog) -> None:
    spares = Spares(limit=1 << 20)
    exchange = Exchange(None, spares)
    try:
        exchange.done_with(exchange.write(SMALL))  # the spare, mapped up to 1 MiB
        over = exchange.write(lambda: catalog.stream("ANN", MANY))  # on past it in writes
        assert read(over.ref.location).equals(catalog.query("ANN", MANY))
        exchange.done_with(over)
        assert os.listdir(exchange.dir) == [] and spares.held == 0
    finally:
        exchange.close()


def test_closing_removes_the_spare_and_frees_its_budget(catalog: Catalog) -> None:
    spares = Spares(limit=1 << 30)
    exchange = Exchange(None, spares)
    exchange.done_with(exchange.write(lambda: catalog.stream("ANN", MANY)))
    assert spares.held > 0
    exchange.close()
    assert spares.held == 0 and not os.path.exists(exchange.dir)


def test_a_frame_still_held_after_its_task_keeps_its_values(exchange: Exchange) -> None:
    # The worker's side: pandas' string columns point into the mapped file, which the
    # next input is written over; releasing the task's inputs moves a held one aside.
    first = pa.table({"S": [f"first-{i}" for i in range(5000)]})
    shared = exchange.write(first)
    kept = inputs.resolve({"scheme": "mmap", "location": shared.ref.location}).to_pandas()
    assert inputs.release() == 1
    exchange.done_with(shared)
    second = exchange.write(SMALL)  # over the same file, and shorter
    assert second.ref.location == shared.ref.location
    assert kept["S"].tolist() == first.column("S").to_pylist()
    other = inputs.resolve({"scheme": "mmap", "location": second.ref.location})
    assert other.equals(SMALL)
    del other
    assert inputs.release() == 0  # nothing held: unmapped, not copied


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system takes root")
def test_spares_leave_three_quarters_of_a_small_shared_memory(tmp_path: Path,
                                                              catalog: Catalog) -> None:
    # A container's /dev/shm is 64 MB unless given more: a spare must not hold the room
    # the next user's input needs.
    small = tmp_path / "shm"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    try:
        exchange = Exchange(None, Spares(limit=1 << 30), base=str(small))
        assert exchange.spares.limit == 4 << 20
        big = exchange.write(lambda: catalog.stream("ANN", MANY))  # 4.8 MB: over a quarter
        exchange.done_with(big)
        assert os.listdir(exchange.dir) == []
        exchange.done_with(exchange.write(SMALL))
        assert len(os.listdir(exchange.dir)) == 1
        exchange.close()
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system takes root")
def test_an_input_that_finds_shared_memory_full_is_refused_not_a_crash(
        tmp_path: Path, catalog: Catalog) -> None:
    small = tmp_path / "shm"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        exchange = Exchange(None, Spares(limit=1 << 30), base=str(small))
        exchange.done_with(exchange.write(SMALL))  # a spare, mapped: it grows in place
        (small / "other runs").write_bytes(b"x" * (7 << 20))
        # 4.8 MB: through the spare's mapping, a page without room would be a SIGBUS.
        with pytest.raises(ServerBusy, match=r"does not fit in the shared memory.*8 MiB"):
            exchange.write(lambda: catalog.stream("ANN", MANY))
        (small / "other runs").unlink()
        with pytest.raises(ServerBusy, match="was full after"):  # a new file, over 8 MB
            exchange.write(lambda: catalog.stream("ANN", MANY.replace("300000", "600000")))
        assert os.listdir(exchange.dir) == []
        exchange.close()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_folders_of_processes_that_ended_without_removing_them_are_removed(
        exchange: Exchange) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a server killed with its pool's spare in shared memory
        left = Exchange(None)
        left.done_with(left.write(SMALL))
        os.write(write_end, left.dir.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        left_dir = answer.read().decode()
    os.waitpid(pid, 0)
    other_namespace = Path(exchange.dir).with_name(f"epe-exchange-1-{pid}-x")
    other_namespace.mkdir()  # the same process id in another PID namespace: not ours
    try:
        assert os.listdir(left_dir)
        assert remove_stale() >= 1
        assert not os.path.exists(left_dir)
        assert os.path.isdir(exchange.dir) and other_namespace.is_dir()  # still running
    finally:
        other_namespace.rmdir()
