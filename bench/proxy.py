"""The DataFrame proxy against pandas on the pulled frame: ``describe()`` and
``crosstab`` over a million rows.

What a user of a proxy would do instead is pull the rows and use pandas; the proxy
runs the statistics in the database and only the answer travels. Starts ``epe serve``
on 127.0.0.1 with a data folder of its own (users' tables in DuckDB, the default), a
user, and a pushed table of N rows (three float columns, two text columns of 5 and 4
values). Measured in the same run, interleaved in rounds:

* **pull + pandas**: ``proxy.pull()`` (the rows as Arrow through ``POST /query``),
  then ``frame.describe()`` / ``pd.crosstab(frame.G, frame.H)``;
* **proxy**: ``proxy.describe()`` / ``proxy.crosstab("G", "H", pivot=True)`` (one
  query each; the pivot of the small answer is done here);
* for reference, **pandas alone** on a frame already pulled.

Each figure is the median of the rounds; the ratio is the proxy's time over pull +
pandas (goal: at most 1x). The answers are checked equal to pandas' first.

Run: ``.venv/bin/python bench/proxy.py [--rows N] [--rounds R] [--json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchserver import BenchServer, commit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from epe import oml

USER, PASSWORD = "BENCH", "bench-Secret1"
LIMIT = str(1 << 30)  # the pulled table's Arrow answer: larger than the default
SERVER_ENV = {"EPE_OUTPUT_LIMIT": LIMIT}


def table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "A": rng.normal(size=rows), "B": rng.exponential(size=rows),
        "C": rng.integers(0, 1000, size=rows).astype(float),
        "G": rng.choice(["g1", "g2", "g3", "g4", "g5"], size=rows),
        "H": rng.choice(["h1", "h2", "h3", "h4"], size=rows)})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def check(proxy: oml.DataFrame, local: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(proxy.describe(), local.describe(), rtol=1e-9)
    ours = proxy.crosstab("G", "H", pivot=True).set_index("G")
    theirs = pd.crosstab(local.G, local.H)
    assert ours.to_numpy().tolist() == theirs.to_numpy().tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        server = BenchServer(Path(root) / "data", SERVER_ENV)
        server.add_user(USER, PASSWORD)
        server.start()
        with server.guarded():
            oml.connect(server.url, USER, PASSWORD)
            frame = table(args.rows)
            proxy = oml.push(frame)
            local = proxy.pull()
            check(proxy, local)
            cases: dict[str, Callable[[], Any]] = {
                "describe: pull + pandas": lambda: proxy.pull().describe(),
                "describe: proxy": proxy.describe,
                "describe: pandas alone": local.describe,
                "crosstab: pull + pandas": lambda: (lambda f: pd.crosstab(f.G, f.H))(
                    proxy.pull()),
                "crosstab: proxy": lambda: proxy.crosstab("G", "H", pivot=True),
                "crosstab: pandas alone": lambda: pd.crosstab(local.G, local.H),
            }
            seconds: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, fn in cases.items():
                    seconds[name].append(timed(fn)[0])
            oml.disconnect()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {op: medians[f"{op}: proxy"] / medians[f"{op}: pull + pandas"]
              for op in ("describe", "crosstab")}
    report = {"rows": args.rows, "rounds": args.rounds, "commit": commit(),
              "python": platform.python_version(),
              "median_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
              "ratio_proxy_to_pull_and_pandas": {k: round(v, 3) for k, v in ratios.items()}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rows} rows, median of {args.rounds} rounds")
    for name, value in medians.items():
        print(f"  {name:28s} {value * 1000:9.1f} ms")
    for op, ratio in ratios.items():
        print(f"  {op}: proxy / (pull + pandas) = {ratio:.2f}x")


if __name__ == "__main__":
    main()
