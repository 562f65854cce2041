"""The audit trail on a real SQLite store: entries written in batches and found by
filters, pages and time; purged by age; nothing lost when the trail is closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from epe.errors import NotFound
from epe.service.audit import AuditTrail, entry
from epe.store import Store, open_store
from epe.store.audit import AuditEntry, AuditQuery


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    yield opened
    opened.close()


def at(when: float, kind: str = "run", user: str = "ALICE", **fields: object) -> AuditEntry:
    return AuditEntry(when, kind, "do_eval" if kind == "run" else "login", user,
                      **fields)  # type: ignore[arg-type]


def test_entries_come_back_as_written(store: Store) -> None:
    written = at(100.0, error_code=1011, status="failed", owner="ALICE", name="f",
                 client="10.0.0.1", request_id="r1", details={"input": "SELECT 1", "units": 3})
    store.audit.append([written])
    [found], more = store.audit.find(AuditQuery())
    assert not more
    assert found.id is not None
    assert found == AuditEntry(**{**vars(written), "id": found.id})


def test_filters_narrow_and_pages_follow_time(store: Store) -> None:
    store.audit.append([at(300.0, user="BOB"), at(100.0), at(200.0, kind="login"),
                        at(400.0)])
    times = [e.time for e in store.audit.find(AuditQuery())[0]]
    assert times == [100.0, 200.0, 300.0, 400.0]  # by time, whatever the order written
    assert [e.time for e in store.audit.find(AuditQuery(user="ALICE"))[0]] == \
        [100.0, 200.0, 400.0]
    assert [e.time for e in store.audit.find(AuditQuery(kind="login"))[0]] == [200.0]
    assert [e.time for e in store.audit.find(AuditQuery(since=200.0, until=400.0))[0]] == \
        [200.0, 300.0]
    first, more = store.audit.find(AuditQuery(limit=3))
    rest, no_more = store.audit.find(AuditQuery(limit=3, offset=3))
    assert more and not no_more
    assert [e.time for e in first + rest] == times


def test_purging_deletes_only_what_is_older(store: Store) -> None:
    store.audit.append([at(float(t)) for t in range(1, 11)])
    assert store.audit.purge(before=6.0) == 5
    assert [e.time for e in store.audit.find(AuditQuery())[0]] == [float(t)
                                                                  for t in range(6, 11)]
    assert store.audit.purge(before=6.0) == 0


def test_the_trail_purges_by_its_retention(store: Store) -> None:
    store.audit.append([at(time.time() - 7200), at(time.time())])
    trail = AuditTrail(store.audit, retention=3600)
    try:
        assert trail.purge() == 1
        assert len(trail.find(AuditQuery())[0]) == 1
    finally:
        trail.close()


def test_closing_the_trail_writes_everything_queued(store: Store) -> None:
    trail = AuditTrail(store.audit, flush_interval=3600)  # it would not write on its own
    for n in range(2500):  # more than one transaction's worth
        trail.record("run", "do_eval", "ALICE", units=n)
    trail.close()
    found, _ = store.audit.find(AuditQuery(limit=1000, offset=2000))
    assert [e.details["units"] for e in found] == list(range(2000, 2500))


def test_a_reader_sees_what_was_recorded_before_it_asked(store: Store) -> None:
    trail = AuditTrail(store.audit, flush_interval=3600)
    try:
        trail.record("login", "login", "ALICE", error=NotFound("x"), client="127.0.0.1")
        [found], _ = trail.find(AuditQuery())
        assert (found.status, found.error_code, found.client) == ("failed", 4004, "127.0.0.1")
    finally:
        trail.close()


def test_an_entry_leaves_out_details_without_a_value() -> None:
    made = entry("run", "do_eval", "ALICE", input=None, units=1)
    assert made.details == {"units": 1}
    assert made.status == "ok" and made.error_code is None
