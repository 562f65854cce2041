"""``store.cache.Snapshot``: a small table read whole, once per cache time."""

from __future__ import annotations

import time

from epe.store.cache import Snapshot


class Table:
    """Rows to hand out, counting how often they were read."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = rows
        self.reads = 0
        self.during_read = lambda: None

    def load(self, limit: int) -> dict[str, int]:
        self.reads += 1
        found = dict(list(self.rows.items())[:limit])
        self.during_read()
        return found


def test_one_read_answers_every_key_until_the_cache_time_passes() -> None:
    table = Table({"a": 1, "b": 2})
    snap = Snapshot(0.2, table.load)
    assert snap.get() == {"a": 1, "b": 2} and snap.fresh()
    table.rows["c"] = 3
    assert snap.get() == {"a": 1, "b": 2} and table.reads == 1
    time.sleep(0.25)
    assert not snap.fresh()
    assert snap.get() == {"a": 1, "b": 2, "c": 3} and table.reads == 2


def test_a_change_of_ours_is_read_at_the_next_look() -> None:
    table = Table({"a": 1})
    snap = Snapshot(60, table.load)
    snap.get()
    table.rows["b"] = 2
    snap.clear()
    assert snap.get() == {"a": 1, "b": 2}


def test_a_read_that_a_change_of_ours_overtook_is_not_kept() -> None:
    table = Table({"a": 1})
    snap = Snapshot(60, table.load)

    def changed_meanwhile() -> None:  # our write commits, and clears, during the read
        table.during_read = lambda: None
        table.rows["b"] = 2
        snap.clear()

    table.during_read = changed_meanwhile
    assert snap.get() == {"a": 1}  # what that read saw
    assert not snap.fresh()
    assert snap.get() == {"a": 1, "b": 2}


def test_a_table_larger_than_kept_is_asked_row_by_row() -> None:
    table = Table({str(i): i for i in range(5)})
    snap = Snapshot(60, table.load, max_rows=4)
    assert snap.get() is None and snap.fresh()  # until the next look, callers ask per key
    assert table.reads == 1
