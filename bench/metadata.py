"""Metadata on SQLite and on PostgreSQL: do-eval latency and async jobs per second,
with one server and with two replicas.

Starts a PostgreSQL server (Debian's binaries, ``initdb`` into a temporary folder,
its durable defaults: fsync and synchronous commit on; tests/pgserver.py) and four
``epe serve`` on 127.0.0.1, each with a data folder of its own:

* ``sqlite``: one server on the embedded SQLite file (the default);
* ``pg``: one server on a PostgreSQL database;
* ``pg x2``: two replicas on another database.

Each has a user made with ``epe user add`` and the script ``trivial``
(``def f(): return 1``). Measured in the same run, interleaved in rounds so that
machine noise hits every setup alike:

* **do-eval latency**: one keep-alive client per server sends sync do-evals of
  ``trivial`` one at a time; on ``pg x2`` the calls alternate between the replicas,
  as a round-robin load balancer would send them. Median and p99 per setup, and the
  ratio of each median to SQLite's (target: PostgreSQL at most 1.3x).
* **jobs per second**: 8 client threads submit N trivial async jobs as fast as they
  can, then each polls its own jobs (10 ms between polls of a running job) until
  every one answers 302; jobs per second is N over the time from the first
  submission to the last 302. On ``pg x2`` the clients are split between the
  replicas; ``pg x2, all to A`` sends every submission to one replica and lets the
  other take its share from the queue. The figure is the median of the rounds;
  the target is ``pg x2`` not below ``pg`` (both replicas share this machine's
  cores, so this shows the queue adds no contention, not that it scales).

The job queue limit is raised to hold every job of a round; every other setting is
the default (two workers, job concurrency 2 per service level per server).

Run: ``.venv/bin/python bench/metadata.py [--quick] [--json] [--no-sync]`` (``--no-sync``:
PostgreSQL without fsync and synchronous commit, to see what waiting for the disk costs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from benchserver import BenchServer, commit, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pgserver import PostgresServer, binaries

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
DO_EVAL = f"{API}/do-eval/trivial"
USER, PASSWORD = "BENCH", "bench-Secret1"
CLIENTS = 8
POLL_PAUSE = 0.01
JOB_DEADLINE = 120.0
SERVER_ENV = {"EPE_JOB_QUEUE_LIMIT": "100000", "EPE_USER_WAITING_JOBS": "100000"}


@dataclass
class Setup:
    name: str
    urls: list[str]  # its servers
    submit_to: list[str]  # where the job clients send their submissions
    headers: list[dict[str, str]] = field(default_factory=list)  # a token per server
    database: str | None = None  # its PostgreSQL database
    names: list[str] = field(default_factory=list)  # its servers' names in the job queue


@dataclass
class Figures:
    name: str
    servers: int
    calls: int = 0
    median_ms: float = 0.0
    p99_ms: float = 0.0
    median_ratio: float = 0.0  # to SQLite's median
    jobs_per_s: list[float] = field(default_factory=list)  # one per round
    ran_by: list[int] = field(default_factory=list)  # jobs each server ran, all rounds
    jobs_per_s_median: float = 0.0
    jobs_ratio: float = 0.0  # to one PostgreSQL server's


# -- the servers ---------------------------------------------------------------------------


def epe_server(root: Path, name: str, url: str | None) -> BenchServer:
    env = dict(SERVER_ENV, **({"EPE_METADATA_URL": url} if url else {}))
    (root / name).mkdir()
    return BenchServer(root / name / "data", env)


@contextmanager
def setups(root: Path, log: Callable[[str], None], sync: bool) -> Iterator[list[Setup]]:
    bin_dir = binaries()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's binaries are not installed (apt-get install postgresql)")
    with ExitStack() as stack:
        log("starting PostgreSQL...")
        pg = PostgresServer(bin_dir, fsync=sync).start()
        stack.callback(pg.stop)
        one, two = pg.new_database("bench"), pg.new_database("bench")
        servers = {"sqlite": [epe_server(root, "sqlite", None)],
                   "pg": [epe_server(root, "pg", one)],
                   "pg x2": [epe_server(root, f"pg2-{i}", two) for i in "ab"]}
        for name, group in servers.items():
            log(f"starting {name}...")
            group[0].add_user(USER, PASSWORD)  # the replicas share it
            for server in group:
                stack.enter_context(server.guarded())
                server.start()
        databases = {"sqlite": None, "pg": one, "pg x2": two}
        found = [Setup(name, [s.url for s in group], [s.url for s in group], [],
                       databases[name],
                       [(s.data_dir / "server-name").read_text().strip() for s in group])
                 for name, group in servers.items()]
        pair = found[-1]
        found.append(Setup("pg x2, all to A", pair.urls, pair.urls[:1], [], two, pair.names))
        for setup in found:
            setup.headers = [login(url) for url in setup.urls]
        yield found


def login(url: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(TOKEN_URL, json={"grant_type": "password", "username": USER,
                                    "password": PASSWORD})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        r = c.post(f"{API}/scripts", headers=headers, json={
            "name": "trivial", "script": "def f():\n    return 1", "overwrite": True})
        r.raise_for_status()
        sync_call(c, headers)
    return headers


def sync_call(c: httpx.Client, headers: dict[str, str] | None = None) -> None:
    r = c.post(DO_EVAL, json={}, headers=headers)
    if r.status_code != 200 or r.content != b'{"result":1}':
        raise RuntimeError(f"sync do-eval: {r.status_code} {r.text[:500]}")


# -- measuring -------------------------------------------------------------------------------


def latency_round(clients: list[httpx.Client], n: int, samples: list[float]) -> None:
    for i in range(n):
        c = clients[i % len(clients)]
        start = time.perf_counter_ns()
        sync_call(c)
        samples.append((time.perf_counter_ns() - start) / 1e6)


def poll(c: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + JOB_DEADLINE
    while time.monotonic() < deadline:
        r = c.get(url)
        if r.status_code == 302:
            return
        if r.status_code != 202:
            raise RuntimeError(f"job {url}: {r.status_code} {r.text[:500]}")
        time.sleep(POLL_PAUSE)
    raise RuntimeError(f"job {url} did not end within {JOB_DEADLINE:g} s")


def ran_by(setup: Setup) -> list[int]:
    """How many jobs each of the setup's servers has run (its database says)."""
    import psycopg

    if setup.database is None:
        return []
    with psycopg.connect(setup.database) as conn:
        counts = dict(conn.execute("SELECT server, count(*) FROM jobs WHERE status = 'FINISH' "
                                   "GROUP BY server").fetchall())
    return [int(counts.get(name, 0)) for name in setup.names]


def jobs_round(setup: Setup, jobs: int) -> float:
    """Jobs per second: ``jobs`` submitted by ``CLIENTS`` threads, each polling its own."""
    per_client = jobs // CLIENTS
    headers = dict(zip(setup.urls, setup.headers, strict=True))
    clients = [httpx.Client(base_url=setup.submit_to[i % len(setup.submit_to)], timeout=60,
                            headers=headers[setup.submit_to[i % len(setup.submit_to)]])
               for i in range(CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def run(c: httpx.Client) -> None:
        try:
            c.get(f"{API}/jobs/none")  # the connection opened before the clock starts
            barrier.wait(timeout=120)
            urls = []
            for _ in range(per_client):
                r = c.post(DO_EVAL, json={"asyncFlag": True})
                if r.status_code != 201:
                    raise RuntimeError(f"async do-eval: {r.status_code} {r.text[:500]}")
                urls.append(r.headers["Location"])
            for url in urls:
                poll(c, url)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    try:
        for t in threads:
            t.start()
        barrier.wait(timeout=120)
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        for c in clients:
            c.close()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return per_client * CLIENTS / elapsed


def measure(found: list[Setup], quick: bool, log: Callable[[str], None]) -> list[Figures]:
    calls, jobs, rounds = (200, 160, 2) if quick else (1000, 600, 3)
    latency: dict[str, list[float]] = {s.name: [] for s in found[:3]}
    clients = {s.name: [httpx.Client(base_url=u, headers=h, timeout=60)
                        for u, h in zip(s.urls, s.headers, strict=True)] for s in found[:3]}
    try:
        log(f"do-eval latency: {calls} calls per setup, interleaved in 10 rounds...")
        for group in clients.values():  # warm-up
            latency_round(group, 50, [])
        for _ in range(10):
            for name, group in clients.items():
                latency_round(group, calls // 10, latency[name])
    finally:
        for group in clients.values():
            for c in group:
                c.close()
    per_s: dict[str, list[float]] = {s.name: [] for s in found}
    ran: dict[str, list[int]] = {s.name: [0] * len(s.names) for s in found}
    log(f"jobs per second: {jobs} jobs with {CLIENTS} clients, {rounds} rounds per setup...")
    for r in range(rounds):
        for setup in found:
            before = ran_by(setup)
            per_s[setup.name].append(jobs_round(setup, jobs))
            ran[setup.name] = [total + after - earlier for total, after, earlier in
                               zip(ran[setup.name], ran_by(setup), before, strict=False)]
        log(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in per_s.items()))
    figures = summarize(found, latency, per_s)
    for f in figures:
        f.ran_by = ran[f.name]
    return figures


def summarize(found: list[Setup], latency: dict[str, list[float]],
              per_s: dict[str, list[float]]) -> list[Figures]:
    figures = []
    base = statistics.median(latency["sqlite"])
    one_pg = statistics.median(per_s["pg"])
    for setup in found:
        f = Figures(setup.name, len(setup.submit_to), jobs_per_s=per_s[setup.name])
        if setup.name in latency:
            ms = sorted(latency[setup.name])
            f.calls, f.median_ms, f.p99_ms = len(ms), percentile(ms, 50), percentile(ms, 99)
            f.median_ratio = f.median_ms / base
        f.jobs_per_s_median = statistics.median(per_s[setup.name])
        f.jobs_ratio = f.jobs_per_s_median / one_pg
        figures.append(f)
    return figures


def report(figures: list[Figures]) -> str:
    rows = [("setup", "do-eval median", "p99", "vs sqlite", "jobs/s (median)", "vs pg",
             "rounds")]
    for f in figures:
        rows.append((f.name, f"{f.median_ms:.2f} ms" if f.calls else "",
                     f"{f.p99_ms:.2f} ms" if f.calls else "",
                     f"{f.median_ratio:.2f}x" if f.calls else "",
                     f"{f.jobs_per_s_median:.0f}", f"{f.jobs_ratio:.2f}x",
                     " ".join(f"{v:.0f}" for v in f.jobs_per_s)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for f in figures:
        if len(f.ran_by) > 1:
            lines.append(f"{f.name}: jobs run by each replica: "
                         + ", ".join(str(n) for n in f.ran_by))
    lines.append(f"\n{os.cpu_count()} CPUs; Python {platform.python_version()}; "
                 f"commit {commit()}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and jobs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-sync", action="store_true",
                        help="PostgreSQL without fsync or synchronous commit (as in the tests)")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory(prefix="epe-bench-metadata-") as tmp, \
            setups(Path(tmp), log, not args.no_sync) as found:
        figures = measure(found, args.quick, log)
    if args.json:
        print(json.dumps([asdict(f) for f in figures], indent=2))
    else:
        print(report(figures))


if __name__ == "__main__":
    main()
