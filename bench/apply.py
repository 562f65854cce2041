"""table-, group-, row- and index-apply against in-process baselines (docs/benchmarks.md#apply).

Starts ``epe serve`` on 127.0.0.1 (port 0, ``EPE_WORKERS=2``, its own temporary data
folder, its output to a file), creates user ``BENCH``, uploads a generated table of
1,000,000 rows and 5 columns as Parquet (``PUT .../tables/BENCH``), stores the
functions, and measures each case against a baseline run in this process, in the
same run, alternating (epe, baseline, epe, baseline, ...):

* table-apply of ``len(df)`` vs ``duckdb`` ``con.sql(q).df()`` plus the call;
* group-apply over 10,000 groups, a cheap function (``df["a"].mean()``) and one
  burning ~1 ms of CPU per group, with ``parallelFlag`` (degree 2), vs DuckDB's
  ``.df()`` plus ``df.groupby("g").apply(f)``;
* row-apply with ``rows=10000``, a cheap function and one burning ~10 ms of CPU
  per chunk, with ``parallelFlag``, vs ``.df()`` plus a loop over the same chunks;
* index-apply ``times=10000`` of ``return i`` vs a loop calling it: the overhead per
  invocation;
* the peak memory of the table-apply case: resident memory of the server and its
  workers, plus the shared-memory exchange files, above the idle level, against the
  table's Arrow size. Measured on a freshly started server (its first query).

Run: ``.venv/bin/python bench/apply.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchserver import BenchServer, commit, library_versions

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
USER, PASSWORD = "BENCH", "bench-Secret1"
TABLE = "BENCH"
QUERY = f"select * from {TABLE}"
BIG, BIG_ROWS = "BIG", 40_000_000  # the table-apply an address-space limit refused
BIG_QUERY = f"select * from {BIG}"
WORKERS = 2
AS_FRAME = json.dumps({"oml_input_type": "pandas.DataFrame"})
_DEGREE = re.compile(r"(\w+_apply) by \w+: (\d+) invocations in (\d+) batches, "
                     r"degree of parallelism (\d+)")

# The functions, as stored on the server and as run here for the baselines. The
# "costly" ones burn CPU time (not wall time), so they cost the same when the
# machine is busy.
LEN = "def f(df):\n    return len(df)\n"
MEAN = 'def f(df):\n    return df["a"].mean()\n'
BURN = ("import time\n"
        "def f(df):\n"
        "    end = time.process_time() + {seconds}\n"
        "    while time.process_time() < end:\n"
        "        pass\n"
        '    return df["a"].mean()\n')
TRIVIAL = "def f(i):\n    return i\n"


@dataclass(frozen=True)
class Sizes:
    rows: int
    groups: int
    chunk: int
    times: int
    single_rows: int  # the input of row-apply with rows=1
    repeats: int
    fast_repeats: int  # for cases whose run and baseline take under a second together


FULL = Sizes(rows=1_000_000, groups=10_000, chunk=10_000, times=10_000, single_rows=20_000,
             repeats=3, fast_repeats=9)
QUICK = Sizes(rows=100_000, groups=1_000, chunk=1_000, times=2_000, single_rows=2_000,
              repeats=2, fast_repeats=5)


def many_groups_query(groups: int) -> str:
    """The table with ``g`` split ten ways by ``c``: ten times the groups (each ``g``'s rows
    fall in all ten of its parts, but for an unlikely few), the same five columns."""
    return f"select g * 10 + c % 10 as g, a, b, c, d from {TABLE}"


def first_rows_query(rows: int) -> str:
    return f"select * from {TABLE} order by g, a limit {rows}"


def compile_function(source: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<bench>", "exec"), namespace)
    return namespace["f"]


def make_table(rows: int, groups: int) -> pa.Table:
    """5 columns: ``g`` (exactly ``groups`` groups, shuffled), floats ``a``, ``b``, ``d``,
    integers ``c``."""
    rng = np.random.default_rng(20240601)
    return pa.table({
        "g": rng.permutation(np.arange(rows, dtype=np.int64) % groups),
        "a": rng.random(rows),
        "b": rng.standard_normal(rows),
        "c": rng.integers(0, 1000, rows, dtype=np.int64),
        "d": rng.random(rows),
    })


# -- the server ----------------------------------------------------------------------


class Server(BenchServer):
    """The shared bench server, also knowing its exchange folder and logged degrees."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, {"EPE_WORKERS": str(WORKERS)})
        self.before: set[Path] = set()

    def start(self, timeout: float = 120) -> None:
        self.before = set(exchange_dirs())
        super().start(timeout)

    @property
    def exchange(self) -> list[Path]:
        """Ours: the folders that appeared since it started (each user's pool has one;
        those of another server started meanwhile too, should there be one)."""
        return sorted(set(exchange_dirs()) - self.before)

    def degrees(self) -> list[tuple[str, int, int, int]]:
        """(kind, invocations, batches, degree) of every apply run logged so far."""
        return [(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))
                for m in _DEGREE.finditer(self.output(tail=1_000_000))]


def exchange_dirs() -> list[Path]:
    shm = Path("/dev/shm")
    return list(shm.glob("epe-exchange-*")) if shm.is_dir() else []


# -- memory --------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """``pid``'s descendants (the workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def status_kb(pid: int, *fields: str) -> dict[str, int]:
    out = dict.fromkeys(fields, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in out:
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def shm_bytes(folders: list[Path]) -> int:
    total = 0
    for folder in folders:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_blocks * 512
    return total


class MemorySampler:
    """Samples, every ``interval`` seconds, the private resident memory (anonymous
    plus file-backed; shared memory is left out of RSS) of the server and its
    workers, plus the bytes of the exchange files in shared memory (counted once,
    however many workers map them)."""

    def __init__(self, server: Server, interval: float = 0.002) -> None:
        assert server.proc is not None
        self.server = server
        self.pid = server.proc.pid
        self.exchange = server.exchange
        self.interval = interval
        self.pids = [self.pid, *children(self.pid)]
        self.samples: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int, int]:
        """(server bytes, workers' bytes, shm bytes)."""
        server = workers = 0
        for pid in self.pids:
            kb = status_kb(pid, "RssAnon", "RssFile")
            size = (kb["RssAnon"] + kb["RssFile"]) * 1024
            if pid == self.pid:
                server += size
            else:
                workers += size
        return server, workers, shm_bytes(self.exchange)

    def _run(self) -> None:
        last_scan = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample())
            if time.monotonic() - last_scan > 0.2:  # a worker may have been replaced
                self.pids = [self.pid, *children(self.pid)]
                self.exchange = self.server.exchange
                last_scan = time.monotonic()
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def peak(self) -> tuple[int, int, int]:
        """(server, workers, shm) bytes at the sample where their sum peaked."""
        return max(self.samples, key=sum)

    def idle(self) -> tuple[int, int, int]:
        """The highest of each part while idle."""
        return tuple(max(s[i] for s in self.samples) for i in range(3))  # type: ignore[return-value]


def reset_peaks(pids: list[int]) -> bool:
    """Reset each process's VmHWM (``echo 5 > clear_refs``); False where not allowed."""
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


# -- CPU accounting ------------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user .. steal (guest time is already in user)
    return total - idle, total


def process_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


class CpuMeter:
    """CPU time used by us (server, workers, this process) and by every other process
    on the machine over a block: a busy machine explains slow, noisy figures."""

    def __init__(self, server: Server) -> None:
        assert server.proc is not None
        self.pids = [server.proc.pid, *children(server.proc.pid), os.getpid()]
        self.ours = 0.0
        self.others_share = 0.0

    def _read(self) -> tuple[int, int, int]:
        busy, total = machine_ticks()
        return busy, total, sum(process_ticks(p) for p in self.pids)

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_exc: object) -> None:
        busy, total, ours = (b - a for a, b in zip(self._start, self._read(), strict=True))
        self.ours = ours / TICK
        self.others_share = max(0, busy - ours) / total if total else 0.0


# -- measuring ---------------------------------------------------------------------


@dataclass
class Case:
    name: str
    epe_s: list[float] = field(default_factory=list)
    baseline_s: list[float] = field(default_factory=list)
    baseline_load_s: list[float] = field(default_factory=list)  # the .df() part
    target: str = ""
    ratio: float = 0.0
    met: bool = False
    degree: int | None = None
    batches: int | None = None
    note: str = ""
    epe_cpu_s: list[float] = field(default_factory=list)  # server + workers + this process
    # The share of the machine's CPU time other processes took meanwhile (0..1).
    others_epe: list[float] = field(default_factory=list)
    others_baseline: list[float] = field(default_factory=list)

    @property
    def epe(self) -> float:
        return statistics.median(self.epe_s)

    @property
    def baseline(self) -> float:
        return statistics.median(self.baseline_s)


@dataclass
class Memory:
    label: str
    arrow_bytes: int
    idle_process_bytes: int
    idle_shm_bytes: int
    peak_process_bytes: int
    peak_shm_bytes: int
    server_increase_bytes: int  # at the peak, over idle
    workers_increase_bytes: int
    peak_total_increase_bytes: int
    ratio: float
    met: bool
    hwm_increase_bytes: int | None  # sum of per-process VmHWM increases (upper bound)
    samples: int


@dataclass
class Figures:
    sizes: dict[str, int]
    cases: list[dict[str, Any]]
    memory: list[Memory]
    index_overhead_us: float
    index_overhead_parallel_us: float
    all_met: bool
    cpus: int | None
    python: str
    commit: str | None
    versions: str
    parquet_bytes: int
    upload_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=httpx.Timeout(900.0))
        r = self.http.post(TOKEN_URL, json={"grant_type": "password", "username": USER,
                                            "password": PASSWORD})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['accessToken']}"

    def post(self, path: str, body: dict[str, Any]) -> tuple[float, Any]:
        start = time.perf_counter()
        r = self.http.post(API + path, json=body)
        elapsed = time.perf_counter() - start
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:1000]}")
        return elapsed, r.json()["result"]

    def close(self) -> None:
        self.http.close()


def setup(url: str, table: pa.Table, scripts: dict[str, str],
          name: str = TABLE) -> tuple[int, float]:
    """Upload the table as Parquet and store the scripts; (Parquet bytes, upload seconds)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    body = sink.getvalue()
    c = Client(url)
    try:
        start = time.perf_counter()
        r = c.http.put(f"{API}/tables/{name}", content=body,
                       headers={"Content-Type": "application/vnd.apache.parquet"})
        upload = time.perf_counter() - start
        if r.status_code != 201 or r.json()["result"]["rows"] != table.num_rows:
            raise RuntimeError(f"upload: {r.status_code} {r.text[:500]}")
        for name, source in scripts.items():
            r = c.http.post(f"{API}/scripts", json={"name": name, "script": source,
                                                    "overwrite": True})
            if r.status_code != 201:
                raise RuntimeError(f"storing {name}: {r.status_code} {r.text[:500]}")
    finally:
        c.close()
    return len(body), upload


class Baseline:
    """The in-process side: the same table in an in-memory DuckDB, pandas on top."""

    def __init__(self, table: pa.Table, name: str = TABLE) -> None:
        self.con = duckdb.connect()
        self.con.register("source", table)
        self.con.execute(f"create table {name} as select * from source")
        self.con.unregister("source")

    def load(self, query: str = QUERY) -> Any:
        return self.con.sql(query).df()

    def table_apply(self, f: Callable[..., Any],
                    query: str = QUERY) -> tuple[float, float, Any]:
        start = time.perf_counter()
        df = self.load(query)
        loaded = time.perf_counter()
        value = f(df)
        return time.perf_counter() - start, loaded - start, value

    def group_apply(self, f: Callable[..., Any],
                    query: str = QUERY) -> tuple[float, float, Any]:
        start = time.perf_counter()
        df = self.load(query)
        loaded = time.perf_counter()
        value = df.groupby("g").apply(f)
        return time.perf_counter() - start, loaded - start, value

    def row_apply(self, f: Callable[..., Any], rows: int,
                  query: str = QUERY) -> tuple[float, float, Any]:
        start = time.perf_counter()
        df = self.load(query)
        loaded = time.perf_counter()
        value = [f(df.iloc[s:s + rows]) for s in range(0, len(df), rows)]
        return time.perf_counter() - start, loaded - start, value


def measure(server: Server, sizes: Sizes, table: pa.Table,
            log: Callable[[str], None]) -> tuple[list[Case], float, float]:
    base = Baseline(table)
    c = Client(server.url)
    frame = {"parameters": AS_FRAME}
    parallel = {"parallelFlag": True, **frame}
    cases: list[Case] = []

    def run(case: Case, request: Callable[[], tuple[float, Any]],
            baseline: Callable[[], tuple[float, float, Any]],
            check: Callable[[Any, Any], None], kind: str | None, warmup: bool) -> None:
        log(f"  {case.name} ...")
        repeats = sizes.repeats
        if warmup:
            took, _ = request()
            base_took, _, _ = baseline()
            if took + base_took < 1.0:  # short runs wander most: take more of them
                repeats = sizes.fast_repeats
        for _ in range(repeats):
            with CpuMeter(server) as cpu:
                took, value = request()
            case.epe_s.append(took)
            case.epe_cpu_s.append(cpu.ours)
            case.others_epe.append(cpu.others_share)
            with CpuMeter(server) as cpu:
                total, load, expected = baseline()
            case.baseline_s.append(total)
            case.baseline_load_s.append(load)
            case.others_baseline.append(cpu.others_share)
            check(value, expected)
        if kind is not None:
            last = [d for d in server.degrees() if d[0] == kind][-1]
            case.batches, case.degree = last[2], last[3]
        cases.append(case)

    # table-apply
    def same_len(value: Any, expected: Any) -> None:
        assert value == expected == sizes.rows, (value, expected)

    run(Case("table-apply len(df)", target="<= 1.3x"),
        lambda: c.post("/table-apply/t_len", {"input": QUERY, **frame}),
        lambda: base.table_apply(compile_function(LEN)), same_len, None, warmup=True)

    # group-apply
    def same_groups(value: Any, expected: Any) -> None:
        assert len(value) == len(expected), (len(value), len(expected))
        got = np.array([value[str(k)] for k in expected.index])
        assert np.allclose(got, expected.to_numpy()), "group means differ"

    many = many_groups_query(sizes.groups)
    for name, script, query, target, warm in (
            ("cheap", "g_mean", QUERY, "<= 0.8x", True),
            (f"cheap, {sizes.groups * 10:,} groups", "g_mean", many, "<= 0.8x", True),
            ("~1 ms/group", "g_burn", QUERY, "<= 0.6x", False)):
        source = MEAN if script == "g_mean" else BURN.format(seconds=0.001)
        run(Case(f"group-apply {name}", target=target),
            lambda script=script, query=query: c.post(
                f"/group-apply/{script}", {"input": query, "groupBy": "g", **parallel}),
            lambda source=source, query=query: base.group_apply(compile_function(source),
                                                                query),
            same_groups, "group_apply", warmup=warm)

    # row-apply
    def same_chunks(value: Any, expected: Any) -> None:
        assert len(value) == len(expected) == -(-sizes.rows // sizes.chunk)
        assert np.allclose(np.array(value), np.array(expected)), "chunk means differ"

    for name, script, target, warm in (("cheap", "r_mean", "<= 1.2x", True),
                                       ("~10 ms/chunk", "r_burn", "<= 0.6x", False)):
        source = MEAN if script == "r_mean" else BURN.format(seconds=0.01)
        run(Case(f"row-apply {name}", target=target),
            lambda script=script: c.post(f"/row-apply/{script}",
                                         {"input": QUERY, "rows": sizes.chunk, **parallel}),
            lambda source=source: base.row_apply(
                compile_function(source), sizes.chunk),
            same_chunks, "row_apply", warmup=warm)

    def same_rows(value: Any, expected: Any) -> None:
        assert len(value) == len(expected) == sizes.single_rows
        assert np.allclose(np.array(value), np.array(expected)), "row values differ"

    single = first_rows_query(sizes.single_rows)
    run(Case(f"row-apply rows=1, {sizes.single_rows:,} rows", target="<= 0.8x"),
        lambda: c.post("/row-apply/r_mean", {"input": single, "rows": 1, **parallel}),
        lambda: base.row_apply(compile_function(MEAN), 1, single),
        same_rows, "row_apply", warmup=True)

    # index-apply
    trivial = compile_function(TRIVIAL)

    def loop() -> tuple[float, float, Any]:
        start = time.perf_counter()
        value = [trivial(i) for i in range(1, sizes.times + 1)]
        return time.perf_counter() - start, 0.0, value

    def same_list(value: Any, expected: Any) -> None:
        assert value == expected, "index-apply values differ"

    index_cases = []
    for name, extra in (("sequential", {}), ("parallelFlag", {"parallelFlag": True})):
        case = Case(f"index-apply {name}", target="<= 10 us/call")
        run(case, lambda extra=extra: c.post("/index-apply/i_trivial",
                                             {"times": sizes.times, **extra}),
            loop, same_list, "index_apply", warmup=True)
        index_cases.append(case)
    c.close()

    for case in cases:
        if case.name.startswith("index-apply"):
            per_call = (case.epe - case.baseline) / sizes.times
            case.ratio = per_call * 1e6
            case.met = case.ratio <= 10
            case.note = f"{case.epe * 1e3:.1f} ms for {sizes.times} calls"
        else:
            case.ratio = case.epe / case.baseline
            case.met = case.ratio <= float(case.target.split()[1].rstrip("x"))
    return cases, index_cases[0].ratio, index_cases[1].ratio


def measure_memory(server: Server, arrow_bytes: int, rows: int, label: str,
                   log: Callable[[str], None], query: str = QUERY) -> Memory:
    """Resident memory of the server and its workers around one table-apply."""
    assert server.proc is not None
    c = Client(server.url)
    try:
        time.sleep(1.0)  # let what ran before settle
        with MemorySampler(server) as idle:
            time.sleep(0.5)
        idle_server, idle_workers, idle_shm = idle.idle()
        pids = [server.proc.pid, *children(server.proc.pid)]
        before = {p: status_kb(p, "VmRSS")["VmRSS"] for p in pids}
        can_reset = reset_peaks(pids)
        log(f"  table-apply, {label}, sampling memory ...")
        with MemorySampler(server) as busy:
            _took, value = c.post("/table-apply/t_len", {"input": query,
                                                         "parameters": AS_FRAME})
            time.sleep(0.2)
        assert value == rows, value
        hwm = None
        if can_reset:
            hwm = sum(max(0, status_kb(p, "VmHWM")["VmHWM"] - before[p]) * 1024 for p in pids)
    finally:
        c.close()
    server, workers, shm = busy.peak()
    increase = server + workers + shm - idle_server - idle_workers - idle_shm
    ratio = increase / arrow_bytes
    return Memory(label=label, arrow_bytes=arrow_bytes,
                  idle_process_bytes=idle_server + idle_workers, idle_shm_bytes=idle_shm,
                  peak_process_bytes=server + workers, peak_shm_bytes=shm,
                  server_increase_bytes=server - idle_server,
                  workers_increase_bytes=workers - idle_workers,
                  peak_total_increase_bytes=increase, ratio=ratio, met=ratio <= 3.0,
                  hwm_increase_bytes=hwm, samples=len(busy.samples))


def measure_big(server: Server, log: Callable[[str], None]) -> tuple[Case, Memory]:
    """table-apply of ``len(df)`` over ``BIG_ROWS`` rows x 5 columns on the same server
    (default settings but ``EPE_WORKERS``): its time against the in-process baseline,
    and its peak memory against the table's Arrow size. A worker's memory is bounded by
    its user's cgroup (resident memory), where it can be had: no address-space limit
    refuses the input's pandas frame."""
    log(f"  {BIG_ROWS:,} rows: making and uploading the table ...")
    table = make_table(BIG_ROWS, 10_000)
    setup(server.url, table, {}, name=BIG)
    memory = measure_memory(server, table.nbytes, BIG_ROWS, f"{BIG_ROWS:,} rows", log,
                            query=BIG_QUERY)
    base = Baseline(table, BIG)
    del table
    case = Case(f"table-apply len(df), {BIG_ROWS:,} rows", target="runs")
    c = Client(server.url)
    try:
        for _ in range(2):
            log(f"  {BIG_ROWS:,} rows: epe, then in this process ...")
            with CpuMeter(server) as cpu:
                took, value = c.post("/table-apply/t_len", {"input": BIG_QUERY,
                                                            "parameters": AS_FRAME})
            case.epe_s.append(took)
            case.epe_cpu_s.append(cpu.ours)
            case.others_epe.append(cpu.others_share)
            with CpuMeter(server) as cpu:
                total, load, expected = base.table_apply(compile_function(LEN), BIG_QUERY)
            case.baseline_s.append(total)
            case.baseline_load_s.append(load)
            case.others_baseline.append(cpu.others_share)
            assert value == expected == BIG_ROWS, (value, expected)
    finally:
        c.close()
    case.ratio, case.met = case.epe / case.baseline, True
    return case, memory


def main_big(log: Callable[[str], None]) -> None:
    """The ``BIG_ROWS`` case alone, on a server of its own."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="epe-bench-") as tmp:
        server = Server(Path(tmp) / "data")
        with server.guarded():
            server.add_user(USER, PASSWORD)
            server.start()
            setup(server.url, make_table(10, 1), {"t_len": LEN})
            case, memory = measure_big(server, log)
    shares = others({**asdict(case), "epe": case.epe, "baseline": case.baseline})
    print(f"{case.name}: epe {case.epe:.2f} s, in this process {case.baseline:.2f} s "
          f"(of which .df() {statistics.median(case.baseline_load_s):.2f} s): "
          f"{case.ratio:.2f}x; others' CPU (epe/base) {shares}"
          f"\npeak memory {mb(memory.peak_total_increase_bytes)} above idle: "
          f"{memory.ratio:.2f}x the table's {mb(memory.arrow_bytes)} of Arrow (server "
          f"+{mb(memory.server_increase_bytes)}, workers +{mb(memory.workers_increase_bytes)}"
          f", shm +{mb(memory.peak_shm_bytes - memory.idle_shm_bytes)})\n{os.cpu_count()} "
          f"CPUs; load average before/after {load_before[0]:.2f}/{os.getloadavg()[0]:.2f}; "
          f"commit {commit()}")


def mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MB"


def others(c: dict[str, Any]) -> str:
    """Others' CPU share, median over the runs; only where runs last long enough for the
    kernel's 10 ms ticks to mean something."""
    if min(c["epe"], c["baseline"]) < 0.25:
        return "-"
    return f"{statistics.median(c['others_epe']):.0%} / " \
        f"{statistics.median(c['others_baseline']):.0%}"


def report(f: Figures) -> str:
    rows = [("case", "epe", "baseline", "of which .df()", "ratio", "target", "met",
             "degree/batches", "epe CPU", "others' CPU (epe/base)")]
    for c in f.cases:
        is_index = c["name"].startswith("index-apply")
        ratio = f"{c['ratio']:.2f} us/call" if is_index else f"{c['ratio']:.2f}x"
        load = statistics.median(c["baseline_load_s"])
        rows.append((c["name"], f"{c['epe']:.3f} s", f"{c['baseline']:.4f} s",
                     "" if is_index else f"{load:.3f} s", ratio, c["target"],
                     "yes" if c["met"] else "NO",
                     "" if c["degree"] is None else f"{c['degree']}/{c['batches']}",
                     f"{statistics.median(c['epe_cpu_s']):.3f} s",
                     others(c)))
    for m in f.memory:
        rows.append((f"table-apply memory, {m.label.split(':')[0]}",
                     mb(m.peak_total_increase_bytes), mb(m.arrow_bytes) + " Arrow", "",
                     f"{m.ratio:.2f}x", "<= 3x", "yes" if m.met else "NO", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s, m = f.sizes, f.memory[0]
    lines += [
        "",
        f"{s['rows']:,} rows x 5 columns ({mb(m.arrow_bytes)} as Arrow, {mb(f.parquet_bytes)} "
        f"Parquet, uploaded in {f.upload_s:.2f} s); {s['groups']:,} groups; chunks of "
        f"{s['chunk']:,}; times={s['times']:,}; medians of {s['repeats']} runs "
        f"({s['fast_repeats']} where a run and its baseline take under a second); "
        f"{WORKERS} workers",
        "epe times are HTTP round trips (query, share, workers, JSON); baselines run in this "
        "process: DuckDB .df() plus the call, groupby().apply or the chunk loop",
        *(f"memory, {m.label}: idle {mb(m.idle_process_bytes)} (server + workers, private "
          f"RSS) + {mb(m.idle_shm_bytes)} shm; at peak {mb(m.peak_process_bytes)} + "
          f"{mb(m.peak_shm_bytes)} shm ({m.samples} samples): server +"
          f"{mb(m.server_increase_bytes)}, workers +{mb(m.workers_increase_bytes)}, shm +"
          f"{mb(m.peak_shm_bytes - m.idle_shm_bytes)}; sum of per-process VmHWM increases "
          f"{mb(m.hwm_increase_bytes)}" for m in f.memory),
        "epe CPU: CPU time of server, workers and this client per run (median); others' CPU: "
        "the share of the machine's CPU time other processes took meanwhile (median)",
        f"{f.cpus} CPUs; load average before/after {f.load_before[0]:.2f}/{f.load_after[0]:.2f}"
        f"; Python {f.python}; {f.versions}; commit {f.commit}",
        "all targets met" if f.all_met else "some targets NOT met",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--big", choices=["yes", "no", "only"], default="yes",
                        help=f"the {BIG_ROWS:,}-row table-apply too (never with --quick), "
                             "or alone")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.big == "only":
        main_big(print)
        return


    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    table = make_table(sizes.rows, sizes.groups)
    scripts = {"t_len": LEN, "g_mean": MEAN, "g_burn": BURN.format(seconds=0.001),
               "r_mean": MEAN, "r_burn": BURN.format(seconds=0.01), "i_trivial": TRIVIAL}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="epe-bench-") as tmp:
        server = Server(Path(tmp) / "data")
        with server.guarded():
            server.add_user(USER, PASSWORD)
            log("starting the server, uploading the table ...")
            server.start()
            parquet_bytes, upload_s = setup(server.url, table, scripts)
            server.stop()
            log("restarting it cold for the memory case ...")
            server.start()
            memory = [measure_memory(server, table.nbytes, sizes.rows, label, log)
                      for label in ("cold: the first query since start", "warm: run again")]
            log("timing (epe and baseline alternate) ...")
            cases, per_call, per_call_parallel = measure(server, sizes, table, log)
            if args.big == "yes" and not args.quick:
                del table
                big, big_memory = measure_big(server, log)
                cases.append(big)
                memory.append(big_memory)
    all_met = all(m.met for m in memory) and all(c.met for c in cases)
    figures = Figures(
        sizes={"rows": sizes.rows, "groups": sizes.groups, "chunk": sizes.chunk,
               "times": sizes.times, "repeats": sizes.repeats,
               "fast_repeats": sizes.fast_repeats},
        cases=[{**asdict(c), "epe": c.epe, "baseline": c.baseline} for c in cases],
        memory=memory, index_overhead_us=per_call, index_overhead_parallel_us=per_call_parallel,
        all_met=all_met, cpus=os.cpu_count(), python=platform.python_version(),
        commit=commit(), versions=library_versions(), parquet_bytes=parquet_bytes,
        upload_s=upload_s, load_before=load_before, load_after=os.getloadavg())
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
    else:
        print(report(figures))


if __name__ == "__main__":
    main()
