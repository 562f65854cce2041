"""Where a group-apply's time goes, stage by stage, in microseconds per group
(docs/benchmarks.md#where-a-group-applys-time-goes).

Runs the stages of one group-apply in this process, each timed on its own, over the
same input as ``bench/apply.py`` (1,000,000 rows, 5 columns, 10,000 groups, the cheap
function ``df["a"].mean()``), with epe's own functions:

* query: DuckDB's result as Arrow, read as the server reads an input;
* plan: ``core.plan.group_units``, sorting the rows into groups and cutting them;
* input file: the sorted rows written as the Arrow IPC file workers map;
* in the worker, for each batch (``Batch.run``, as a worker runs it): mapping the file,
  converting the batch's rows to pandas, cutting each group's frame, resetting
  matplotlib, calling the function, encoding its value; and, apart, each of the
  cutting, the reset and the encoding on its own;
* assemble: the fragments joined into OML's object keyed by group;
* beside them: the function alone over ready-made frames, and pandas' own
  ``groupby().apply`` of it, in the same process.

Server stages run once per request; worker stages are spread over the workers
(``--workers``, 2 by default), so the request's time is about the server's stages plus
the worker's divided by the workers. Run with ``--src DIR`` to profile another
checkout's ``src`` (an earlier commit's, for a before-and-after).

Run: ``.venv/bin/python bench/group_profile.py [--src DIR] [--groups N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROWS = 1_000_000
GROUPS = 10_000
BATCHES = 8  # what a group-apply with parallelFlag and 2 workers is cut into
REPEATS = 5
MEAN = 'def f(df):\n    return df["a"].mean()\n'


def best(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    """The fastest of ``repeats`` runs, in seconds: the figure least moved by noise."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="profile this checkout's src/ instead")
    parser.add_argument("--groups", type=int, default=GROUPS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    stages = profile(args.groups, args.workers)
    if args.json:
        print(json.dumps(stages, indent=2))
    else:
        print(report(stages, args.groups, args.workers))


def profile(groups: int, workers: int) -> dict[str, Any]:
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    import epe
    from epe.core import assemble, plan
    from epe.core.assemble import Fragment
    from epe.core.results import to_json
    from epe.runner.worker import main as worker_main

    worker_main.preload()
    from epe.runner.worker.graphics import FigureCapture
    from epe.runner.worker.invoke import Batch, frames

    rng = np.random.default_rng(20240601)
    table = pa.table({
        "g": rng.permutation(np.arange(ROWS, dtype=np.int64) % groups),
        "a": rng.random(ROWS), "b": rng.standard_normal(ROWS),
        "c": rng.integers(0, 1000, ROWS, dtype=np.int64), "d": rng.random(ROWS)})
    con = duckdb.connect()
    con.register("source", table)
    con.execute("create table T as select * from source")
    namespace: dict[str, Any] = {}
    exec(compile(MEAN, "<bench>", "exec"), namespace)
    f = namespace["f"]
    us = 1e6 / groups
    out: dict[str, Any] = {"epe": os.path.dirname(epe.__file__)}

    out["query"] = best(lambda: con.sql("select * from T").to_arrow_reader(122_880)
                        .read_all()) * us
    grouping = plan.group_units(table, ["g"], [])
    out["plan"] = best(lambda: plan.group_units(table, ["g"], [])) * us
    path = tempfile.mktemp(prefix="epe-profile-", dir="/dev/shm")

    def write() -> None:
        with pa.OSFile(path, "wb") as sink, \
                pa.ipc.new_file(sink, grouping.table.schema) as writer:
            for batch in grouping.table.to_batches(122_880):
                writer.write_batch(batch)

    out["input file"] = best(write) * us
    batches = plan.batches(grouping.units, workers, min_batches=BATCHES)
    capture = FigureCapture(100, (6.4, 4.8), 1 << 30)

    def header(units: list[Any]) -> dict[str, Any]:
        # What both the old and the new worker read of a task (the kind for the one,
        # how to call for the other).
        return {"kind": "group_apply", "call": "data", "frames_as_columns": True,
                "images_as_list": False, "kwargs": {}, "graphics": False,
                "units": [list(u) for u in units], "input_type": "pandas.DataFrame",
                "input": {"scheme": "mmap", "location": path}, "result_format": "json"}

    headers = [header(b) for b in batches]
    results: list[Any] = []

    def worker() -> None:
        results[:] = [Batch(f, h, 1 << 30, capture).run() for h in headers]

    out["worker: Batch.run"] = best(worker) * us
    fragments = [Fragment(b, is_frame)
                 for r in results for b, is_frame in zip(r.fragments, r.frames, strict=True)]
    with pa.memory_map(path) as source:
        mapped = pa.ipc.open_file(source).read_all()
    spans = [[list(u) for u in b] for b in batches]
    out["worker: to pandas"] = best(lambda: [
        mapped.slice(s[0][0], s[-1][0] + s[-1][1] - s[0][0]).to_pandas() for s in spans]) * us
    out["worker: frames"] = best(lambda: [
        sum(1 for _ in frames(mapped, s)) for s in spans]) * us - out["worker: to pandas"]
    parts = [p for s in spans for p in frames(mapped, s)]
    out["worker: reset"] = best(lambda: [(capture.begin(False), capture.end())
                                         for _ in parts]) * us
    values = [f(p) for p in parts]
    out["worker: call"] = best(lambda: [f(p) for p in parts]) * us
    out["worker: encode"] = best(lambda: [to_json(v, 1 << 30) for v in values]) * us
    out["assemble"] = best(lambda: assemble.keyed(grouping.keys, fragments)) * us
    os.unlink(path)
    frame = con.sql("select * from T").df()
    out["pandas groupby().apply"] = best(lambda: frame.groupby("g").apply(f), 3) * us
    out["pandas .df()"] = best(lambda: con.sql("select * from T").df()) * us
    server = out["query"] + out["plan"] + out["input file"] + out["assemble"]
    out["request, estimated"] = server + out["worker: Batch.run"] / workers
    out["in process"] = out["pandas .df()"] + out["pandas groupby().apply"]
    out["versions"] = {m.__name__: m.__version__ for m in (pd, np, pa, duckdb)}
    return out


def report(stages: dict[str, Any], groups: int, workers: int) -> str:
    skip = {"epe", "versions"}
    width = max(len(k) for k in stages if k not in skip)
    lines = [f"{'stage':<{width}}  us/group"]
    lines += [f"{k:<{width}}  {v:8.1f}" for k, v in stages.items() if k not in skip]
    ratio = stages["request, estimated"] / stages["in process"]
    lines += ["", f"estimated request / in process: {ratio:.2f}x "
              f"(server stages + worker stages / {workers} workers)",
              f"{ROWS:,} rows, {groups:,} groups, {BATCHES} batches; epe from {stages['epe']}; "
              + ", ".join(f"{k} {v}" for k, v in stages["versions"].items()),
              f"load average {os.getloadavg()[0]:.2f}; medians would wander more than minima: "
              f"each figure is the fastest of {REPEATS} runs"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
