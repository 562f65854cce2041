"""Claiming due batch scoring runs (epe.store.schedules) on real SQLite and PostgreSQL:
servers claiming at once never claim one slot twice, a job with a run going is not
claimed, and runs whose server stopped are failed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from epe.core.schedules import Schedule, run_after
from epe.store import Store, open_store
from epe.store.models import new_model
from epe.store.schedules import FINISH, ScoringJobRecord


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('meta') / 'metadata.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database")
    opened = open_store(url)
    yield opened
    opened.close()


def a_job(store: Store, start: float, max_runs: int | None = None) -> ScoringJobRecord:
    model = new_model(id=str(uuid.uuid4()), owner="U", name=uuid.uuid4().hex, version="1",
                      namespace="", model_type="ONNX", function="regression",
                      description="", shared=False, signature="{}", spec="{}", script=None,
                      size=1, digest="d")
    store.models.add(model, b"x")
    job = ScoringJobRecord(id=uuid.uuid4().hex, owner="U", name=uuid.uuid4().hex,
                           model_id=model.id, input_table="I", output_table="O",
                           supplemental="[]", start_at=start, end_at=None,
                           repeat="FREQ=SECONDLY;INTERVAL=1", max_runs=max_runs, enabled=True,
                           next_run=start, run_count=0, server=None, created=start)
    store.schedules.create(job)
    return job


def next_slot(job: ScoringJobRecord, slot: float, now: float, runs: int) -> float | None:
    # Each claim moves the slot on by one second, whatever the time: every claim below
    # finds the next slot due at once, so the claimers race for every one of them.
    return run_after(Schedule(job.start_at, job.repeat, None, job.max_runs), slot, slot, runs)


def test_claimers_racing_claim_each_slot_once(store: Store) -> None:
    job = a_job(store, time.time() - 3600, max_runs=60)
    claimed: list[tuple[str, float | None]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            got = store.schedules.claim_due(name, 8, next_slot)
            for c in got:
                (run,) = [r for r in store.schedules.runs(job.id, 1000) if r.id == c.run]
                with lock:
                    claimed.append((name, run.scheduled))
                store.schedules.run_ended(c.run, FINISH)  # the next slot may be claimed
            if not got and store.schedules.earliest(name) is None:
                return

    threads = [threading.Thread(target=claimer, args=(f"S{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    slots = [slot for _, slot in claimed]
    assert len(slots) == 60 and len(set(slots)) == 60
    assert store.schedules.get(job.id, "U").run_count == 60  # type: ignore[union-attr]


def test_a_job_with_a_run_going_is_not_claimed_and_stopped_runs_are_failed(
        store: Store) -> None:
    job = a_job(store, time.time() - 3600)
    (first,) = store.schedules.claim_due("S1", 8, next_slot)
    assert store.schedules.claim_due("S2", 8, next_slot) == []  # its run is going
    assert store.schedules.reap("stopped", grace=3600) == 0
    assert store.schedules.reap("stopped", grace=-1) == 1  # never given its async job
    (run,) = store.schedules.runs(job.id, 10)
    assert (run.id, run.status, run.error) == (first.run, "FAILED", "stopped")
    assert len(store.schedules.claim_due("S2", 8, next_slot)) == 1
