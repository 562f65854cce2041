"""Users' tables in PostgreSQL against in-process readers and against DuckDB
(docs/benchmarks.md#users-tables-in-postgresql).

Starts a PostgreSQL server (Debian's binaries, ``initdb`` into a temporary folder;
tests/pgserver.py) and two ``epe serve`` on 127.0.0.1 (``EPE_WORKERS=2``, data folders
of their own): ``pg`` keeps users' tables in a database of that PostgreSQL, ``duckdb``
in its embedded DuckDB. User ``BENCH`` uploads the same generated table of 1,000,000
rows and 5 columns (``bench/apply.py``'s) as Parquet to each. Measured in the same
run, alternating, medians of the repeats:

* **table-apply of** ``len(df)`` over the whole table on ``pg``, against, in this
  process, ADBC's ``fetch_arrow_table().to_pandas()`` then ``len`` (target: at most
  1.5x) and ``pandas.read_sql`` over a psycopg connection then ``len`` (target: epe
  faster);
* **group-apply over 10,000 groups** of ``df["a"].mean()`` with ``parallelFlag``, on
  ``pg`` against the same on ``duckdb``.

The in-process readers connect as PostgreSQL's superuser and read the user's table
by its qualified name; epe reads it as the user's own role, as it always does.

Run: ``.venv/bin/python bench/postgres.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from apply import AS_FRAME, LEN, MEAN, PASSWORD, USER, Client, make_table
from benchserver import BenchServer, commit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pgserver import PostgresServer, binaries

API = "/oml/api/py-scripts/v2"
TABLE = "BENCH"
QUERY = f'select * from "{TABLE}"'
PREFIX = "epe_"


@dataclass
class Case:
    name: str
    baseline_name: str
    target: str
    epe_s: list[float] = field(default_factory=list)
    baseline_s: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.epe_s) / statistics.median(self.baseline_s)


def prepare(server: BenchServer, table: pa.Table) -> Client:
    """User BENCH with the table and the two functions; a logged-in client."""
    server.add_user(USER, PASSWORD)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    c = Client(server.url)
    r = c.http.put(f"{API}/tables/{TABLE}", content=sink.getvalue(),
                   headers={"Content-Type": "application/vnd.apache.parquet"})
    if r.status_code != 201 or r.json()["result"]["rows"] != table.num_rows:
        raise RuntimeError(f"upload: {r.status_code} {r.text[:500]}")
    for name, source in (("t_len", LEN), ("g_mean", MEAN)):
        r = c.http.post(f"{API}/scripts", json={"name": name, "script": source,
                                                "overwrite": True})
        if r.status_code != 201:
            raise RuntimeError(f"storing {name}: {r.status_code} {r.text[:500]}")
    return c


def timed(read: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = read()
    return time.perf_counter() - start, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1,000 groups")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rows, groups, repeats = (100_000, 1_000, 3) if args.quick else (1_000_000, 10_000, 5)

    import adbc_driver_postgresql.dbapi as adbc
    import pandas as pd
    import psycopg

    bin_dir = binaries()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's server binaries are not installed (apt-get install "
                         "postgresql)")
    pg = PostgresServer(bin_dir).start()
    folder = Path(tempfile.mkdtemp(prefix="epe-bench-postgres-"))
    data_url = pg.new_database("bench")
    servers = {
        "pg": BenchServer(folder / "pg" / "data", {"EPE_WORKERS": "2",
                                                   "EPE_DATA_URL": data_url,
                                                   "EPE_DATA_ROLE_PREFIX": PREFIX}),
        "duckdb": BenchServer(folder / "duckdb" / "data", {"EPE_WORKERS": "2"}),
    }
    try:
        for server in servers.values():
            server.data_dir.mkdir(parents=True)
            server.start()
        table = make_table(rows, groups)
        clients = {name: prepare(server, table) for name, server in servers.items()}
        qualified = f'select * from {PREFIX}{USER.lower()}."{TABLE}"'
        adbc_conn = adbc.connect(data_url)
        psycopg_conn = psycopg.connect(data_url)

        def via_adbc() -> int:
            with adbc_conn.cursor() as cur:
                cur.execute(qualified)
                return len(cur.fetch_arrow_table().to_pandas())

        def via_read_sql() -> int:
            with warnings.catch_warnings():  # pandas prefers SQLAlchemy; psycopg works
                warnings.simplefilter("ignore", UserWarning)
                return len(pd.read_sql(qualified, psycopg_conn))

        frame = {"input": QUERY, "parameters": AS_FRAME}
        table_apply = {"ADBC": Case("table-apply len(df), PostgreSQL",
                                    "ADBC -> pandas -> len, in process", "<= 1.5x"),
                       "read_sql": Case("table-apply len(df), PostgreSQL",
                                        "pandas.read_sql (psycopg) -> len, in process",
                                        "< 1x")}
        group = Case(f"group-apply mean, {groups:,} groups, parallel, PostgreSQL",
                     "the same on DuckDB", "reported")
        # A first round of each, not counted: connections, workers, caches.
        clients["pg"].post("/table-apply/t_len", frame)
        via_adbc()
        via_read_sql()
        for _ in range(repeats):
            took, value = clients["pg"].post("/table-apply/t_len", frame)
            assert value == rows, value
            table_apply["ADBC"].epe_s.append(took)
            table_apply["read_sql"].epe_s.append(took)
            for case, read in ((table_apply["ADBC"], via_adbc),
                               (table_apply["read_sql"], via_read_sql)):
                took, value = timed(read)
                assert value == rows, value
                case.baseline_s.append(took)
        body = {"input": QUERY, "groupBy": "g", "parallelFlag": True, "parameters": AS_FRAME}
        clients["duckdb"].post("/group-apply/g_mean", body)
        for _ in range(repeats):
            took, value = clients["pg"].post("/group-apply/g_mean", body)
            assert len(value) == groups, len(value)
            group.epe_s.append(took)
            took, value = clients["duckdb"].post("/group-apply/g_mean", body)
            assert len(value) == groups, len(value)
            group.baseline_s.append(took)
        adbc_conn.close()
        psycopg_conn.close()
    finally:
        for server in servers.values():
            server.stop()
        pg.stop()

    cases = [*table_apply.values(), group]
    if args.json:
        print(json.dumps({"rows": rows, "groups": groups, "repeats": repeats,
                          "cases": [asdict(c) | {"ratio": c.ratio} for c in cases],
                          "cpus": len(__import__("os").sched_getaffinity(0)),
                          "python": platform.python_version(), "commit": commit()},
                         indent=2))
        return 0
    print(f"{rows:,} rows x 5 columns, {groups:,} groups, median of {repeats} "
          f"(commit {commit()})")
    for c in cases:
        print(f"{c.name}: {statistics.median(c.epe_s):.3f} s; {c.baseline_name}: "
              f"{statistics.median(c.baseline_s):.3f} s; ratio {c.ratio:.2f}x "
              f"(target {c.target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
