"""The executor's contract, which every backend must pass: given tasks, it runs the
user's function in a worker and hands back one JSON fragment per unit, or the error
of the unit that failed; a timeout kills the worker and the next task still runs;
printed output and figures come back; the worker's calls reach the task's handler;
input reaches the worker by reference.

Run on the local pool of real worker processes, and on a real two-node Ray cluster
(``runner.ray``: the same worker machinery on each node, reached through the bridge);
a further backend is one more entry of ``BACKENDS``. Tasks are built here as the
services build them."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
import pyarrow as pa
import pytest

from epe.core.operations import operation
from epe.errors import (
    InvalidRequest,
    ScriptFailed,
    TimeLimitExceeded,
    WorkerDied,
)
from epe.runner.executor import Executor, Task, TaskFailed, TaskResult, Tenant
from epe.runner.local.host import LocalHost
from epe.runner.ray.host import RayHost
from epe.settings import Settings

T = TypeVar("T")


class Backend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def pool(self, python: str, size: int, tenant: Tenant) -> Executor: ...

    @property
    def isolated(self) -> bool: ...


# Each backend: given settings with a data folder of its own, what makes its executors.
BACKENDS: dict[str, Callable[[Settings], Backend]] = {"local": LocalHost, "ray": RayHost}


class Loop:
    """An event loop on a thread of its own, so that plain tests can await the executor."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def executor(request: pytest.FixtureRequest, loop: Loop,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    where: dict[str, Any] = {}
    if request.param == "ray":  # the session's cluster (tests/raycluster.py)
        where = {"executor": "ray", "ray_address": request.getfixturevalue("ray_cluster").address}
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("executor")), **where)
    backend = BACKENDS[request.param](settings)
    loop.run(backend.start())
    # One user's pool of two workers (with isolation: as the first uid a user gets).
    uid = settings.worker_uid_base if backend.isolated else None
    made = backend.pool(sys.executable, 2, Tenant("CONFORMANCE", uid))
    loop.run(made.start())
    yield made
    loop.run(made.stop())
    loop.run(backend.stop())


def task(kind: str, source: str, units: tuple[tuple[int, int], ...] = ((0, 0),),
         **fields: Any) -> Task:
    key = hashlib.sha256(source.encode()).hexdigest()
    return Task(kind=kind, calling=operation(kind).calling, source=source, script_key=key,
                units=units, **fields)


def run(loop: Loop, executor: Executor, work: Task, timeout: float = 60) -> TaskResult:
    return loop.run(executor.run(work, timeout))


def values(result: TaskResult) -> list[Any]:
    return [orjson.loads(f.json) for f in result.fragments]


def test_a_result(loop: Loop, executor: Executor) -> None:
    result = run(loop, executor, task("do_eval", "def f(x):\n    return {'twice': x * 2}\n",
                                      kwargs={"x": 21}))
    assert values(result) == [{"twice": 42}]
    assert executor.capacity >= 1


def test_one_fragment_per_unit(loop: Loop, executor: Executor) -> None:
    result = run(loop, executor, task("index_apply", "def f(i):\n    return i * i\n",
                                      units=((1, 0), (2, 0), (3, 0))))
    assert values(result) == [1, 4, 9]


def test_a_timeout_kills_the_worker_and_the_next_task_runs(loop: Loop,
                                                           executor: Executor) -> None:
    sleeper = task("do_eval", "def f():\n    import time\n    time.sleep(60)\n")
    with pytest.raises(TimeLimitExceeded):
        run(loop, executor, sleeper, timeout=1)
    pid = "def f():\n    import os\n    return os.getpid()\n"
    assert isinstance(values(run(loop, executor, task("do_eval", pid)))[0], int)


def test_a_task_carries_what_the_kernel_counted(loop: Loop, executor: Executor) -> None:
    """CPU seconds and peak memory as counted outside the worker (its cgroup or /proc),
    never what the function says: one that burns 2 s of CPU and touches 200 MB."""
    burn = task("do_eval", "def f():\n    import time\n    block = bytearray(200 * 2**20)\n"
                           "    end = time.process_time() + 2\n"
                           "    while time.process_time() < end:\n        pass\n"
                           "    return len(block)\n")
    used = run(loop, executor, burn).usage
    assert used.cpu_seconds >= 1.8 and used.peak_memory >= 200 * 2**20, used
    failing = task("do_eval", "def f():\n    block = bytearray(100 * 2**20)\n"
                              "    raise ValueError(len(block))\n")
    with pytest.raises(TaskFailed) as failed:
        run(loop, executor, failing)
    assert failed.value.usage.peak_memory >= 100 * 2**20, failed.value.usage


def test_a_crash_is_reported_and_the_next_task_runs(loop: Loop, executor: Executor) -> None:
    with pytest.raises(WorkerDied, match="exited with code 3"):
        run(loop, executor, task("do_eval", "def f():\n    import os\n    os._exit(3)\n"))
    assert values(run(loop, executor, task("do_eval", "def f():\n    return 'ok'\n"))) == ["ok"]


def test_printed_output_comes_back(loop: Loop, executor: Executor) -> None:
    source = "def f():\n    import sys\n    print('out')\n    print('err', file=sys.stderr)\n"
    result = run(loop, executor, task("do_eval", source))
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_figures_are_captured(loop: Loop, executor: Executor) -> None:
    source = ("def f():\n    import matplotlib.pyplot as plt\n    plt.plot([1, 2])\n"
              "    plt.title('line')\n    plt.show()\n    return 1\n")
    [images] = values(run(loop, executor, task("do_eval", source, graphics=True)))
    assert [(i["ID"], i["TITLE"], i["DATA"]) for i in images] == [(1, "line", "1")]
    assert images[0]["IMAGE"].startswith("iVBOR")  # base64 of a PNG's signature


def test_a_units_failure_is_named_with_its_traceback(loop: Loop, executor: Executor) -> None:
    source = "def f(i):\n    if i == 3:\n        raise ValueError('three')\n    return i\n"
    with pytest.raises(TaskFailed) as failed:
        run(loop, executor, task("index_apply", source, units=((1, 0), (2, 0), (3, 0))))
    assert failed.value.unit == 2  # the third unit of the task
    error = failed.value.error
    assert isinstance(error, ScriptFailed) and error.message == "ValueError: three"
    assert "raise ValueError('three')" in error.extra["traceback"]


def test_input_reaches_the_worker_by_reference(loop: Loop, executor: Executor) -> None:
    table = pa.table({"G": ["a", "b", "a", "b"], "X": [1.0, 2.0, 3.0, 4.0]})

    async def share_and_run() -> TaskResult:
        async with executor.share(table) as shared:
            assert shared.rows == 4
            return await executor.run(task(
                "row_apply", "def f(df):\n    return float(df['X'].sum())\n",
                units=((0, 2), (2, 2)), input_ref=shared.ref), 60)

    assert values(loop.run(share_and_run())) == [3.0, 7.0]


def test_a_stream_is_shared_as_it_comes(loop: Loop, executor: Executor) -> None:
    batches = [pa.record_batch({"N": pa.array(range(i, i + 10), pa.int64())})
               for i in range(0, 50, 10)]

    class Stream:
        def __enter__(self) -> pa.RecordBatchReader:
            return pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))

        def __exit__(self, *_exc: object) -> None:
            return None

    async def share_and_run() -> TaskResult:
        async with executor.share(Stream) as shared:
            return await executor.run(task(
                "table_apply", "def f(df):\n    return int(df['N'].sum())\n",
                units=((0, shared.rows),), input_ref=shared.ref, input_type="pandas.DataFrame"),
                60)

    assert values(loop.run(share_and_run())) == [sum(range(50))]


def test_calls_from_the_worker_reach_the_tasks_handler(loop: Loop, executor: Executor) -> None:
    seen: list[tuple[dict[str, Any], bytes]] = []

    async def handler(call: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        seen.append((call, payload))
        if call["call"] == "refuse":
            raise InvalidRequest("not this one")
        return {"echo": call["value"]}, payload[::-1]

    source = ("def f():\n    from epe.runner.worker.channel import CallRefused, call\n"
              "    header, data = call('echo', {'value': 7}, b'abc')\n"
              "    try:\n        call('refuse', {})\n"
              "    except CallRefused as e:\n        refused = [e.kind, str(e)]\n"
              "    return [header['echo'], data.decode(), refused]\n")
    result = run(loop, executor, task("do_eval", source, calls=handler))
    assert values(result) == [[7, "cba", ["InvalidRequest", "not this one"]]]
    assert [c["call"] for c, _ in seen] == ["echo", "refuse"]


def test_a_task_without_a_handler_has_its_calls_refused(loop: Loop, executor: Executor) -> None:
    source = ("def f():\n    from epe.runner.worker.channel import CallRefused, call\n"
              "    try:\n        call('anything', {})\n"
              "    except CallRefused as e:\n        return e.kind\n")
    assert values(run(loop, executor, task("do_eval", source))) == ["InvalidRequest"]


def test_a_started_executor_says_it_is_ready(loop: Loop, executor: Executor) -> None:
    status = executor.status()
    assert status.ready
    assert status.detail  # what an operator sees of it (the local pool: its workers)
