"""Batch scoring schedules across servers and restarts (docs/models.md#schedules).

Two ``epe serve`` sharing one PostgreSQL (metadata and users' tables) run a schedule
of a run every two seconds: each slot runs once, on one of them, and the job stops
at its largest number of runs. A server that was stopped while a schedule's slots
passed runs it once when it comes back, not once per slot.

Nothing here asserts on elapsed time: ``wait_for`` polls for a state."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.acceptance.test_models import (
    FEATURES,
    OML,
    Iris,
    finished_runs,
    iris_table,
    job_body,
    onnx_zip,
    put_parquet,
    scoring_job,
    stored,
)
from tests.acceptance.test_replicas import start_replicas
from tests.pgserver import PostgresServer, on_postgresql_data
from tests.serverproc import EpeServer, wait_for


@pytest.fixture(scope="module")
def model_zip(iris: Iris) -> bytes:
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=500).fit(iris.X, iris.species)
    return onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                             "inputColumns": FEATURES})


@pytest.fixture(scope="module")
def iris() -> Iris:
    data = load_iris()
    return Iris(data.data.astype(np.float32), data.target_names[data.target])


@pytest.fixture(scope="module")
def replicas(postgres: PostgresServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EpeServer]]:
    """Two servers on one PostgreSQL database, users' tables in PostgreSQL too (a job
    any server may run reads tables every server reads)."""
    started = start_replicas(postgres.new_database(migrated=True),
                             tmp_path_factory.mktemp("scoring-replicas"),
                             **on_postgresql_data(postgres),
                             EPE_SCHEDULE_POLL_INTERVAL="0.5")
    yield started
    for replica in started:
        replica.stop()


def test_each_slot_runs_once_across_two_replicas(replicas: list[EpeServer], iris: Iris,
                                                 model_zip: bytes) -> None:
    a, b = replicas
    user = a.add_user()
    with a.client(*user) as on_a, b.client(*user) as on_b:
        model = stored(on_a, model_zip, "iris_replicated")
        put_parquet(on_a, "R_IN", iris_table(iris, 150))
        job = scoring_job(on_b, job_body("every_2s", model, "R_IN", "R_OUT",
                                         start=time.time() + 1,
                                         repeat="FREQ=SECONDLY;INTERVAL=2", max_runs=4))
        runs = finished_runs(on_a, job, 4, timeout=90)
        info = on_b.get(f"{OML}/jobs/{job}").json()
    assert len(runs) == 4, runs
    assert [r["status"] for r in runs] == ["FINISH"] * 4, runs
    slots = [r["scheduledDate"] for r in runs]
    assert len(set(slots)) == 4, slots  # no slot ran twice
    assert len({r["jobId"] for r in runs}) == 4
    assert (info["jobStatus"], info["runCount"]) == ("COMPLETED", 4)
    # Each run began on the server that claimed it, and only there.
    for run in runs:
        began = [r for r in replicas
                 if any(f"run {run['runId']} begins here" in line for line in r.output)]
        assert len(began) == 1, run


def test_a_missed_schedule_runs_once_after_a_restart(
        make_server: Callable[..., EpeServer], iris: Iris, model_zip: bytes) -> None:
    """The server is killed (``kill -9``: at once, whatever it was doing) before the
    first of three slots, and started again after the last."""
    server = make_server(EPE_SCHEDULE_POLL_INTERVAL="0.5")
    user = server.add_user()
    with server.client(*user) as c:
        model = stored(c, model_zip, "iris_missed")
        put_parquet(c, "M_IN", iris_table(iris, 150))
        now = time.time()
        job = scoring_job(c, job_body("missed", model, "M_IN", "M_OUT", start=now + 4,
                                      end=now + 8, repeat="FREQ=SECONDLY;INTERVAL=2"))
        server.stop(signal.SIGKILL)
    time.sleep(max(0.0, now + 9 - time.time()))
    server.start()
    with server.client(*user) as c:
        (run,) = finished_runs(c, job, 1)
        info: dict[str, Any] = wait_for(lambda: (found := c.get(f"{OML}/jobs/{job}").json())
                                        ["jobStatus"] == "COMPLETED" and found)
        time.sleep(1.0)  # a pass or two of the scheduler more: still one run
        again = c.get(f"{OML}/jobs/{job}").json()
    assert run["status"] == "FINISH", run
    assert run["scheduledDate"] == info["jobSchedule"]["jobStartDate"]  # the first slot
    assert (again["runCount"], len(again["runs"])) == (1, 1), again
