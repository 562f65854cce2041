"""The local pool's metrics move as its workers do: started, idle and busy, recycled,
and killed by reason (a timeout, the run's own time limit, a caller gone, a crash, a
SIGKILL as the kernel's OOM killer sends it). Real worker processes; the values are
read from the process's Prometheus registry, as deltas, since other tests' pools
count into the same metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from epe.errors import TimeLimitExceeded, WorkerDied
from epe.runner.executor import Tenant
from epe.runner.local.host import LocalHost
from epe.runner.local.pool import LocalPool
from epe.service.runs import run_batches
from epe.settings import Settings
from tests.integration.test_executor_conformance import Loop, task
from tests.serverproc import wait_for

SLEEP = "def f():\n    import time\n    time.sleep(60)\n"
QUICK = "def f():\n    return 1\n"
NAP = "def f():\n    import time\n    time.sleep(0.3)\n"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def killed(reason: str) -> float:
    return value("epe_workers_killed_total", reason=reason)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


_hosts: list[LocalHost] = []


def started_pool(loop: Loop, tmp_path: Path, size: int = 1, grown: bool = True,
                 **settings: int) -> LocalPool:
    """One user's pool on a host of its own settings, grown to all its workers (it starts
    with one, and grows when tasks wait: ``size`` tasks at once make it)."""
    host = LocalHost(Settings(data_dir=tmp_path, **settings))
    loop.run(host.start())
    _hosts.append(host)
    uid = host.settings.worker_uid_base if host.isolated else None
    pool = host.pool(sys.executable, size, Tenant("METRICS", uid))
    loop.run(pool.start())
    assert pool.status().detail["workers"] == 1
    if grown and size > 1:
        loop.run(at_once(pool, NAP, size))
        wait_for(lambda: pool.status().detail["workers"] == size)
    return pool


async def at_once(pool: LocalPool, source: str, count: int) -> None:
    await asyncio.gather(*(pool.run(task("do_eval", source), 60) for _ in range(count)))


@pytest.fixture(autouse=True)
def stop_hosts(loop: Loop) -> Iterator[None]:
    yield
    while _hosts:
        loop.run(_hosts.pop().stop())


@pytest.fixture
def pool(loop: Loop, tmp_path: Path) -> Iterator[LocalPool]:
    before = value("epe_workers_started_total")
    made = started_pool(loop, tmp_path, size=2)
    assert value("epe_workers_started_total") - before == 2
    yield made
    loop.run(made.stop())


def test_workers_are_counted_idle_then_busy_then_idle(loop: Loop, tmp_path: Path) -> None:
    idle, busy = value("epe_workers", state="idle"), value("epe_workers", state="busy")
    made = started_pool(loop, tmp_path, size=2)
    assert value("epe_workers", state="idle") - idle == 2
    assert made.status().ready and made.status().detail["workers"] == 2
    running = asyncio.run_coroutine_threadsafe(made.run(task("do_eval", SLEEP), 60), loop.loop)
    wait_for(lambda: value("epe_workers", state="busy") - busy == 1)
    assert value("epe_workers", state="idle") - idle == 1
    cancelled = killed("cancelled")
    running.cancel()  # the caller went away: the worker is killed and replaced
    wait_for(lambda: value("epe_workers", state="idle") - idle == 2)
    assert value("epe_workers", state="busy") == busy
    assert killed("cancelled") - cancelled == 1
    loop.run(made.stop())
    assert value("epe_workers", state="idle") == idle
    assert not made.status().ready


def test_a_timeout_is_counted(loop: Loop, pool: LocalPool) -> None:
    before = killed("timeout")
    with pytest.raises(TimeLimitExceeded):
        loop.run(pool.run(task("do_eval", SLEEP), 0.5))
    assert killed("timeout") - before == 1


def test_the_runs_own_time_limit_counts_as_a_timeout(loop: Loop, pool: LocalPool) -> None:
    # Two batches, one at a time: the second waits while the first sleeps, and the run's
    # limit cancels the first; the worker is counted as killed by timeout, not cancelled.
    before, cancelled = killed("timeout"), killed("cancelled")
    with pytest.raises(TimeLimitExceeded, match="the run went past its time limit"):
        loop.run(run_batches(pool, [task("do_eval", SLEEP), task("do_eval", SLEEP)], 1, 0.5))
    assert killed("timeout") - before == 1
    assert killed("cancelled") == cancelled


def test_a_crash_and_a_sigkill_are_told_apart(loop: Loop, pool: LocalPool) -> None:
    crash, memory = killed("crash"), killed("memory")
    with pytest.raises(WorkerDied):
        loop.run(pool.run(task("do_eval", "def f():\n    import os\n    os._exit(3)\n"), 60))
    assert killed("crash") - crash == 1
    # SIGKILL, as the kernel's OOM killer sends it: from outside (a sandboxed worker is
    # process 1 of its namespace, deaf to what it sends itself).
    running = asyncio.run_coroutine_threadsafe(pool.run(task("do_eval", SLEEP), 60), loop.loop)
    wait_for(lambda: pool.status().detail["busy"] == 1)
    [busy] = list(pool._busy)
    os.kill(busy.pid, signal.SIGKILL)
    with pytest.raises(WorkerDied):
        running.result(60)
    assert killed("memory") - memory == 1
    assert killed("crash") - crash == 1


def test_a_recycled_worker_is_counted_and_replaced_once(loop: Loop, tmp_path: Path) -> None:
    started, recycled = value("epe_workers_started_total"), value("epe_workers_recycled_total")
    made = started_pool(loop, tmp_path, size=1, worker_max_tasks=1)
    try:
        loop.run(made.run(task("do_eval", QUICK), 60))  # its last task: a successor starts
        # Killed while its successor starts: the successor alone replaces it, and the
        # pool keeps its size.
        with pytest.raises(TimeLimitExceeded):
            loop.run(made.run(task("do_eval", SLEEP), 0.3))
        wait_for(lambda: value("epe_workers_recycled_total") - recycled == 1, timeout=120)
        wait_for(lambda: not made._background, timeout=120)
        assert value("epe_workers_started_total") - started == 2
        assert made.status().detail["workers"] == 1
    finally:
        loop.run(made.stop())


def test_a_pool_grows_under_load_to_its_size_and_no_further(loop: Loop, tmp_path: Path) -> None:
    started = value("epe_workers_started_total")
    made = started_pool(loop, tmp_path, size=3, grown=False)
    assert value("epe_workers_started_total") - started == 1
    loop.run(made.run(task("do_eval", QUICK), 60))  # one at a time: no growth
    assert value("epe_workers_started_total") - started == 1
    loop.run(at_once(made, NAP, 6))
    wait_for(lambda: made.status().detail["workers"] == 3)
    loop.run(at_once(made, NAP, 6))
    assert value("epe_workers_started_total") - started == 3
    assert made.status().detail["workers"] == 3
    loop.run(made.stop())
