"""group-apply and table-apply on the local pool, on Ray with one node and on Ray with
two nodes, in one run on this machine (docs/benchmarks.md#ray).

Starts a Ray cluster on 127.0.0.1 (tests/raycluster.py: one CPU per node), then one
``epe serve`` after another on the same data folder (the table is uploaded once):

* ``local``: ``EPE_EXECUTOR=local``, ``EPE_WORKERS=2``;
* ``ray, 1 node``: ``EPE_EXECUTOR=ray`` on the head alone, 2 workers on it;
* ``ray, 2 nodes``: a second node joined, 1 worker per node (the same 2 workers, the
  same 2 cores: what changes is only where they are and how tasks reach them);
* ``ray, 2 nodes, via the store`` (as root): the same, the server in a mount namespace
  with a ``/dev/shm`` of its own, so that no node can use the server's input file and
  every input goes through Ray's object store.

Each case runs ``--repeat`` times, the backends taking turns within a round, and the
median is reported with its ratio to the local pool's:

* group-apply over 10,000 groups of a 1,000,000 x 5 table, ``df["a"].mean()`` per
  group, ``parallelFlag`` (degree 2); per-group cost in microseconds (wall time over
  groups), and the part of it above the same groupby done in this process;
* table-apply of ``len(df)`` over the whole table (as a DataFrame), the median of
  five in a row on each server and round.

Side by side, with ``--spark PYTHON`` (a Python that has ``pyspark``, and a Java
runtime): Spark's ``applyInPandas`` over the same groups of the same table (read from
Parquet, ``local[2]``: the same two cores), measured in a subprocess, median of
``--repeat`` runs after a warm one. Spark is not one of epe's dependencies.

Run: ``.venv/bin/python bench/ray.py [--quick] [--repeat N] [--spark PYTHON]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from apply import (
    AS_FRAME,
    LEN,
    MEAN,
    PASSWORD,
    QUERY,
    USER,
    Client,
    compile_function,
    make_table,
    setup,
)
from benchserver import BenchServer, commit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.raycluster import DRIVER_ENV, RayCluster

BACKENDS = ("local", "ray, 1 node", "ray, 2 nodes", "ray, 2 nodes, via the store")
# A /dev/shm of the server's own (root only): no node can link the server's input file,
# so every input goes through Ray's object store, as for a server whose node runs no
# users' code (docs/scale-out.md, "Limits").
PRIVATE_SHM = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs tmpfs /dev/shm && exec "$@"', "sh"]
TABLE_RUNS = 5  # table-applies per server and round (a tenth of a second each: noisy)


def server_env(backend: str, address: str) -> dict[str, str]:
    if backend == "local":
        return {"EPE_EXECUTOR": "local", "EPE_WORKERS": "2"}
    per_node = "2" if backend == "ray, 1 node" else "1"
    # The bridge is a driver of the cluster of tests/raycluster.py: its environment.
    return {"EPE_EXECUTOR": "ray", "EPE_RAY_ADDRESS": address, "EPE_WORKERS": per_node,
            **DRIVER_ENV}


def run_cases(url: str, groups: int) -> dict[str, float]:
    c = Client(url)
    try:
        took, value = c.post("/group-apply/MEAN", {"input": QUERY, "groupBy": "g",
                                                   "parallelFlag": True,
                                                   "parameters": AS_FRAME})
        assert len(value) == groups, len(value)
        tables = [c.post("/table-apply/LEN", {"input": QUERY, "parameters": AS_FRAME})
                  for _ in range(TABLE_RUNS)]
        return {"group": took, "table": statistics.median(t for t, _ in tables),
                "rows": float(tables[0][1])}
    finally:
        c.close()


def in_process_groupby(table: Any) -> float:
    """The same groups' function called by pandas in this process (from a DataFrame)."""
    f = compile_function(MEAN)
    df = table.to_pandas()
    start = time.perf_counter()
    df.groupby("g").apply(f)
    return time.perf_counter() - start


# Spark's grouped map over the same table, the same function per group; the time of
# one action that runs every group (the result collected, as epe's answer is).
SPARK = """
import json, os, statistics, sys, time
os.environ["PYSPARK_PYTHON"] = sys.executable  # Spark's Python workers: this one
from pyspark.sql import SparkSession
path, repeat = sys.argv[1], int(sys.argv[2])
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2").getOrCreate())
df = spark.read.parquet(path).cache()
df.count()
def f(pdf):
    import pandas as pd
    return pd.DataFrame({"g": [pdf["g"].iloc[0]], "m": [pdf["a"].mean()]})
def once():
    start = time.perf_counter()
    n = len(df.groupBy("g").applyInPandas(f, "g long, m double").collect())
    return time.perf_counter() - start, n
once()
runs = [once() for _ in range(repeat)]
print(json.dumps({"seconds": statistics.median(t for t, _ in runs), "groups": runs[0][1],
                  "version": spark.version}))
spark.stop()
"""


def measure_spark(python: str, table: Any, folder: Path, repeat: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    path = folder / "table.parquet"
    pq.write_table(table, path)
    done = subprocess.run([python, "-c", SPARK, str(path), str(repeat)], capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the Spark measurement failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1,000 groups")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spark", metavar="PYTHON", help="also measure Spark's applyInPandas")
    args = parser.parse_args()
    rows, groups = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    table = make_table(rows, groups)
    cluster = RayCluster()
    root = Path(tempfile.mkdtemp(prefix="epe-bench-ray-"))
    data = root / "data"
    backends = [b for b in BACKENDS if os.geteuid() == 0 or not b.endswith("the store")]
    times: dict[str, dict[str, list[float]]] = {b: {"group": [], "table": []} for b in backends}
    try:
        print("starting a Ray head node...", flush=True)
        cluster.start(nodes=1)
        for round_ in range(args.repeat):
            for backend in backends:
                if backend.startswith("ray, 2 nodes") and len(cluster.raylets()) < 2:
                    print("joining a second Ray node...", flush=True)
                    cluster.add_node()
                if backend == "ray, 1 node" and len(cluster.raylets()) > 1:
                    cluster.kill_node(cluster.raylets()[-1])
                command = None
                if backend.endswith("via the store"):
                    command = [*PRIVATE_SHM, sys.executable, "-m", "epe", "serve",
                               "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0"]
                server = BenchServer(data, server_env(backend, cluster.address), command)
                with server.guarded():
                    if round_ == 0 and backend == "local":
                        server.add_user(USER, PASSWORD)
                    server.start(timeout=300)
                    if round_ == 0 and backend == "local":
                        setup(server.url, table, {"MEAN": MEAN, "LEN": LEN})
                    run_cases(server.url, groups)  # warm: pools, the first query
                    got = run_cases(server.url, groups)
                    assert got["rows"] == rows
                times[backend]["group"].append(got["group"])
                times[backend]["table"].append(got["table"])
                print(f"  round {round_ + 1} {backend}: group-apply {got['group']:.3f} s, "
                      f"table-apply {got['table']:.3f} s", flush=True)
        baseline = statistics.median(in_process_groupby(table) for _ in range(3))
    finally:
        cluster.stop()
    spark = None
    if args.spark:
        print("Spark's applyInPandas...", flush=True)
        try:
            spark = measure_spark(args.spark, table, root, args.repeat)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(e, file=sys.stderr)
    report(times, baseline, rows, groups, args.repeat, spark)


def report(times: dict[str, dict[str, list[float]]], baseline: float, rows: int, groups: int,
           repeat: int, spark: dict[str, Any] | None) -> None:
    med = {b: {k: statistics.median(v) for k, v in cases.items()} for b, cases in times.items()}
    print(f"\nepe {commit()}, {platform.python_version()}, {rows:,} rows x 5, {groups:,} "
          f"groups, median of {repeat}; in-process pandas groupby.apply: {baseline:.3f} s "
          f"({baseline / groups * 1e6:.0f} us/group)\n")
    print("| backend | group-apply | x local | us/group | us/group above pandas "
          "| table-apply | x local |")
    print("|---|---|---|---|---|---|---|")
    for b in times:
        g, t = med[b]["group"], med[b]["table"]
        print(f"| {b} | {g:.3f} s | {g / med['local']['group']:.2f} | {g / groups * 1e6:.0f} "
              f"| {(g - baseline) / groups * 1e6:.0f} | {t:.3f} s "
              f"| {t / med['local']['table']:.2f} |")
    if spark is not None:
        g = spark["seconds"]
        print(f"| Spark {spark['version']} applyInPandas, local[2] | {g:.3f} s "
              f"| {g / med['local']['group']:.2f} | {g / groups * 1e6:.0f} "
              f"| {(g - baseline) / groups * 1e6:.0f} | | |")


if __name__ == "__main__":
    main()
