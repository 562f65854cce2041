"""Async jobs: submit-to-302 latency and sustained jobs per second (docs/benchmarks.md#async-jobs).

Starts ``epe serve`` on 127.0.0.1 (port 0) with its own temporary data folder and a
user made with ``epe user add``, stores the script ``trivial`` (``def f(): return 1``)
and measures, in the same run:

* **latency**: one keep-alive client submits a do-eval job (``asyncFlag: true``), then
  polls the job's URL with no pause until it answers 302; the time from sending the
  submission to receiving the 302. Baseline: the sync do-eval round trip of the same
  script. The two are interleaved in rounds so machine noise hits both alike.
* **throughput**: 8 client threads, each with its own keep-alive client, submit N jobs
  in all as fast as they can, then each polls its own jobs (10 ms between polls of a
  job that is still running) until every one answers 302; jobs per second is N over
  the time from the first submission to the last 302. Baseline: the same 8 clients
  sending N sync do-evals.

The job queue limit and the user's waiting-jobs limit are raised to hold every job of
the throughput run (with the defaults of 200 and 100, a burst of more would be refused
with 503 or 429: that is admission, not throughput); every other setting is the default.

Run: ``.venv/bin/python bench/jobs.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from benchserver import BenchServer, commit, percentile

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
SCRIPT = "trivial"
DO_EVAL = f"{API}/do-eval/{SCRIPT}"
SYNC_BODY = {"service": "LOW"}
ASYNC_BODY = {"service": "LOW", "asyncFlag": True}
USER, PASSWORD = "BENCH", "bench-Secret1"
CLIENTS = 8
POLL_PAUSE = 0.01  # between polls of a still-running job, in the throughput run
JOB_DEADLINE = 120.0  # seconds any one job may take before the bench gives up


# -- measuring ---------------------------------------------------------------------


@dataclass
class Latency:
    n: int
    median_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


@dataclass
class Figures:
    sync: Latency  # the baseline: a sync do-eval round trip
    submit: Latency  # POST with asyncFlag until its 201
    to_302: Latency  # POST with asyncFlag until the job's URL answers 302
    polls_per_job: float  # GETs of the job URL per job, the 302 included
    created_to_started_ms: float  # median, from the server's jobs table
    started_to_finished_ms: float  # median, from the server's jobs table
    median_ratio: float  # to_302 / sync
    p99_ratio: float
    jobs: int  # in the throughput run
    clients: int
    submit_phase_s: float  # until every job of the throughput run was accepted
    jobs_per_s: float  # jobs / time until the last 302
    sync_per_s: float  # sync do-evals per second, same clients, same count
    throughput_ratio: float
    refused: int  # 503 answers in the throughput run (should be 0)
    cpus: int | None
    python: str
    commit: str | None


def summarize(samples_ns: list[int]) -> Latency:
    ms = sorted(s / 1e6 for s in samples_ns)
    return Latency(n=len(ms), median_ms=percentile(ms, 50), p99_ms=percentile(ms, 99),
                   mean_ms=sum(ms) / len(ms), min_ms=ms[0], max_ms=ms[-1])


def sync_call(c: httpx.Client) -> None:
    r = c.post(DO_EVAL, json=SYNC_BODY)
    if r.status_code != 200 or r.content != b'{"result":1}':
        raise RuntimeError(f"sync do-eval: {r.status_code} {r.text[:500]}")


def submit(c: httpx.Client) -> str:
    r = c.post(DO_EVAL, json=ASYNC_BODY)
    if r.status_code != 201:
        raise RuntimeError(f"async do-eval: {r.status_code} {r.text[:500]}")
    return r.headers["Location"]


def poll(c: httpx.Client, url: str, pause: float = 0.0) -> int:
    """GET the job until it answers 302; how many GETs that took."""
    deadline = time.monotonic() + JOB_DEADLINE
    polls = 0
    while time.monotonic() < deadline:
        r = c.get(url)
        polls += 1
        if r.status_code == 302:
            return polls
        if r.status_code != 202:
            raise RuntimeError(f"job {url}: {r.status_code} {r.text[:500]}")
        if pause:
            time.sleep(pause)
    raise RuntimeError(f"job {url} did not end within {JOB_DEADLINE:g} s")


def check_result(c: httpx.Client, url: str) -> None:
    r = c.get(url + "/result")
    if r.status_code != 200 or r.content != b'{"result":1}':
        raise RuntimeError(f"job {url} result: {r.status_code} {r.text[:500]}")


def login(url: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(TOKEN_URL, json={"grant_type": "password", "username": USER,
                                    "password": PASSWORD})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        r = c.post(f"{API}/scripts", headers=headers,
                   json={"name": SCRIPT, "script": "def f():\n    return 1"})
        r.raise_for_status()
        r = c.post(DO_EVAL, headers=headers, json=SYNC_BODY)
        if r.content != b'{"result":1}':
            raise RuntimeError(f"sync do-eval: {r.status_code} {r.text[:500]}")
    return headers


def latency(url: str, headers: dict[str, str], n: int, rounds: int,
            warmup: int) -> tuple[list[int], list[int], list[int], int, list[str]]:
    """``n`` sync calls and ``n`` jobs, one at a time, alternating in ``rounds`` blocks."""
    ids: list[str] = []
    sync_ns: list[int] = []
    submit_ns: list[int] = []
    done_ns: list[int] = []
    polls = 0
    per_round = max(1, n // rounds)

    def one_job(c: httpx.Client) -> tuple[int, int, int, str]:
        start = time.perf_counter_ns()
        job = submit(c)
        accepted = time.perf_counter_ns()
        count = poll(c, job)
        ended = time.perf_counter_ns()
        check_result(c, job)
        return accepted - start, ended - start, count, job.rsplit("/", 1)[1]

    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        for _ in range(warmup):
            sync_call(c)
            one_job(c)
        for _ in range(rounds):
            for _ in range(per_round):
                start = time.perf_counter_ns()
                sync_call(c)
                sync_ns.append(time.perf_counter_ns() - start)
            for _ in range(per_round):
                accepted, ended, count, job_id = one_job(c)
                submit_ns.append(accepted)
                done_ns.append(ended)
                polls += count
                ids.append(job_id)
    return sync_ns, submit_ns, done_ns, polls, ids


def server_side(metadata: Path, ids: list[str]) -> tuple[float, float]:
    """Medians, in ms, of created -> started and started -> finished, as the server
    recorded them in its jobs table."""
    db = sqlite3.connect(f"file:{metadata}?mode=ro", uri=True, timeout=30)
    try:
        rows = {r[0]: r[1:] for r in db.execute("select id, created, started, finished from jobs")}
    finally:
        db.close()
    waits = sorted((rows[i][1] - rows[i][0]) * 1000 for i in ids)
    runs = sorted((rows[i][2] - rows[i][1]) * 1000 for i in ids)
    return percentile(waits, 50), percentile(runs, 50)


def in_parallel(url: str, headers: dict[str, str],
                work: Callable[[httpx.Client], None]) -> tuple[float, float]:
    """Run ``work(client)`` on ``CLIENTS`` threads at once; when they started and ended."""
    clients = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def run(i: int) -> None:
        try:
            clients[i].get(f"{API}/jobs/none")  # open the connection before the clock starts
            barrier.wait(timeout=120)
            work(clients[i])
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=120)
        start = time.perf_counter()
        for t in threads:
            t.join()
        end = time.perf_counter()
    finally:
        for c in clients:
            c.close()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return start, end


def throughput(url: str, headers: dict[str, str], jobs: int) -> tuple[float, float, float, int]:
    """(jobs/s, submit phase seconds, sync calls/s, refusals) with ``CLIENTS`` clients."""
    per_client = jobs // CLIENTS
    submitted_at: list[float] = []
    refused = 0
    lock = threading.Lock()

    def jobs_work(c: httpx.Client) -> None:
        nonlocal refused
        urls = []
        for _ in range(per_client):
            r = c.post(DO_EVAL, json=ASYNC_BODY)
            if r.status_code == 503:  # counted; the bench's queue limit should prevent it
                with lock:
                    refused += 1
                continue
            if r.status_code != 201:
                raise RuntimeError(f"async do-eval: {r.status_code} {r.text[:500]}")
            urls.append(r.headers["Location"])
        with lock:
            submitted_at.append(time.perf_counter())
        for job in urls:
            poll(c, job, POLL_PAUSE)

    def sync_work(c: httpx.Client) -> None:
        for _ in range(per_client):
            sync_call(c)

    start, end = in_parallel(url, headers, jobs_work)
    jobs_per_s = (per_client * CLIENTS - refused) / (end - start)
    submit_phase = max(submitted_at) - start
    sync_start, sync_end = in_parallel(url, headers, sync_work)
    return jobs_per_s, submit_phase, per_client * CLIENTS / (sync_end - sync_start), refused


def measure(url: str, metadata: Path, quick: bool, log: Callable[[str], None]) -> Figures:
    n, jobs, warmup = (60, 400, 10) if quick else (400, 2000, 40)
    headers = login(url)
    log(f"latency: {n} sync calls and {n} jobs, one at a time, interleaved in 10 rounds "
        f"(after {warmup} warm-up each)...")
    sync_ns, submit_ns, done_ns, polls, ids = latency(url, headers, n, rounds=10, warmup=warmup)
    created_to_started, started_to_finished = server_side(metadata, ids)
    log(f"throughput: {jobs} jobs, then {jobs} sync calls, with {CLIENTS} clients...")
    jobs_per_s, submit_phase, sync_per_s, refused = throughput(url, headers, jobs)
    sync, submit_l, to_302 = summarize(sync_ns), summarize(submit_ns), summarize(done_ns)
    return Figures(sync=sync, submit=submit_l, to_302=to_302, polls_per_job=polls / len(done_ns),
                   created_to_started_ms=created_to_started,
                   started_to_finished_ms=started_to_finished,
                   median_ratio=to_302.median_ms / sync.median_ms,
                   p99_ratio=to_302.p99_ms / sync.p99_ms, jobs=jobs // CLIENTS * CLIENTS,
                   clients=CLIENTS, submit_phase_s=submit_phase, jobs_per_s=jobs_per_s,
                   sync_per_s=sync_per_s, throughput_ratio=jobs_per_s / sync_per_s,
                   refused=refused, cpus=os.cpu_count(), python=platform.python_version(),
                   commit=commit())


def report(f: Figures) -> str:
    rows = [("", "sync do-eval", "job: submit", "job: to 302", "to 302 / sync"),
            ("median (ms)", f"{f.sync.median_ms:.2f}", f"{f.submit.median_ms:.2f}",
             f"{f.to_302.median_ms:.2f}", f"{f.median_ratio:.2f}x"),
            ("p99 (ms)", f"{f.sync.p99_ms:.2f}", f"{f.submit.p99_ms:.2f}",
             f"{f.to_302.p99_ms:.2f}", f"{f.p99_ratio:.2f}x"),
            ("mean (ms)", f"{f.sync.mean_ms:.2f}", f"{f.submit.mean_ms:.2f}",
             f"{f.to_302.mean_ms:.2f}", f"{f.to_302.mean_ms / f.sync.mean_ms:.2f}x"),
            ("max (ms)", f"{f.sync.max_ms:.2f}", f"{f.submit.max_ms:.2f}",
             f"{f.to_302.max_ms:.2f}", ""),
            (f"per s, {f.clients} clients", f"{f.sync_per_s:.0f}", "",
             f"{f.jobs_per_s:.0f}", f"{f.throughput_ratio:.2f}x")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", f"{f.sync.n} sequential jobs and sync calls; {f.polls_per_job:.1f} polls "
              f"per job; {f.jobs} jobs with {f.clients} clients, all accepted within "
              f"{f.submit_phase_s:.2f} s, {f.refused} refused",
              f"server side (median): created -> started {f.created_to_started_ms:.2f} ms, "
              f"started -> finished {f.started_to_finished_ms:.2f} ms",
              f"{f.cpus} CPUs; Python {f.python}; commit {f.commit}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()


    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory(prefix="epe-bench-jobs-") as tmp:
        server = BenchServer(Path(tmp) / "data", {"EPE_JOB_QUEUE_LIMIT": "100000",
                                                   "EPE_USER_WAITING_JOBS": "100000"})
        with server.guarded():
            server.add_user(USER, PASSWORD)
            log("starting the server...")
            server.start()
            figures = measure(server.url, server.data_dir / "metadata.sqlite", args.quick, log)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
    else:
        print(report(figures))


if __name__ == "__main__":
    main()
