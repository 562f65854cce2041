"""do-eval latency and throughput against a bare endpoint of the same server (docs/benchmarks.md).

Starts a real server process on 127.0.0.1 with its own temporary data folder: epe's
own app (``epe.app.create_app``) with one extra route, ``POST /bench/bare``, that
does nothing, served by uvicorn exactly as ``epe serve`` serves. Then it measures,
in the same run and interleaved so machine noise hits both alike:

* round-trip latency (median, p99) of sequential requests on one keep-alive client,
  for the bare endpoint and for a sync do-eval of ``def f(): return 1``;
* requests per second with 8 concurrent clients, for both.

Run: ``.venv/bin/python bench/do_eval_latency.py [--quick] [--json]``
(the server side is this same file, run with ``--serve DATA_DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from benchserver import BenchServer, commit, library_versions, percentile

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
BARE = "/bench/bare"
SCRIPT = "trivial"
DO_EVAL = f"{API}/do-eval/{SCRIPT}"
BODY = {"parameters": "{}", "service": "LOW"}
USER, PASSWORD = "BENCH", "bench-Secret1"
CLIENTS = 8
TARGET_RATIO = 1.5


# -- the server side ---------------------------------------------------------------


def serve(data_dir: Path) -> None:
    """epe's app plus one bare route, served as ``epe serve`` serves it."""
    import uvicorn

    from epe.app import create_app
    from epe.cli import _Server
    from epe.core.requests import DoEvalRequest
    from epe.observe.logs import configure
    from epe.settings import Settings

    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=0)
    app = create_app(settings)

    @app.post(BARE)
    async def bare(body: DoEvalRequest | None = None) -> dict[str, int]:
        return {"result": 1}

    configure(settings.log_format, settings.log_level)
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on",
                            log_config=None)
    _Server(config, app).run()


# -- the client side ---------------------------------------------------------------


@dataclass
class Latency:
    n: int
    median_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    over_100ms: int  # stalls: a request that waited for a worker to be (re)started


@dataclass
class Figures:
    bare: Latency
    do_eval: Latency
    median_ratio: float
    p99_ratio: float
    bare_rps: float
    do_eval_rps: float
    rps_ratio: float
    clients: int
    throughput_requests: int
    target_met: bool
    cpus: int | None
    python: str
    commit: str | None
    versions: str


def summarize(samples_ns: list[int]) -> Latency:
    ms = sorted(s / 1e6 for s in samples_ns)
    return Latency(n=len(ms), median_ms=percentile(ms, 50), p99_ms=percentile(ms, 99),
                   mean_ms=sum(ms) / len(ms), min_ms=ms[0], max_ms=ms[-1],
                   over_100ms=sum(1 for m in ms if m > 100))


def post(client: httpx.Client, path: str) -> None:
    r = client.post(path, json=BODY)
    if r.status_code != 200:
        raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:500]}")


def timed(client: httpx.Client, path: str, n: int) -> list[int]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        post(client, path)
        samples.append(time.perf_counter_ns() - start)
    return samples


def login(url: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(TOKEN_URL, json={"grant_type": "password", "username": USER,
                                    "password": PASSWORD})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        r = c.post(f"{API}/scripts", headers=headers,
                   json={"name": SCRIPT, "script": "def f():\n    return 1"})
        r.raise_for_status()
        for path in (DO_EVAL, BARE):
            r = c.post(path, headers=headers, json=BODY)
            r.raise_for_status()
            if r.json() != {"result": 1}:
                raise RuntimeError(f"POST {path} answered {r.text!r}, not {{\"result\": 1}}")
    return headers


def sequential(url: str, headers: dict[str, str], n: int, rounds: int,
               warmup: int) -> tuple[list[int], list[int]]:
    """``n`` timed requests to each endpoint, alternating in ``rounds`` blocks."""
    bare: list[int] = []
    do_eval: list[int] = []
    per_round = max(1, n // rounds)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        timed(c, BARE, warmup)
        timed(c, DO_EVAL, warmup)
        for _ in range(rounds):
            bare += timed(c, BARE, per_round)
            do_eval += timed(c, DO_EVAL, per_round)
    return bare, do_eval


def concurrent(url: str, headers: dict[str, str], path: str, total: int) -> float:
    """Requests per second of ``CLIENTS`` threads, each with its own keep-alive client."""
    per_client = total // CLIENTS
    clients = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def hammer(client: httpx.Client) -> None:
        try:
            post(client, path)  # open the connection before the clock starts
            barrier.wait(timeout=120)
            for _ in range(per_client):
                post(client, path)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
    try:
        for t in threads:
            t.start()
        with contextlib.suppress(threading.BrokenBarrierError):
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


def throughput(url: str, headers: dict[str, str], total: int,
               rounds: int) -> tuple[float, float]:
    """Requests per second for bare and do-eval, alternating in ``rounds`` blocks."""
    elapsed = {BARE: 0.0, DO_EVAL: 0.0}
    per_round = max(CLIENTS, total // rounds)
    done = per_round // CLIENTS * CLIENTS * rounds
    for _ in range(rounds):
        for path in (BARE, DO_EVAL):
            rps = concurrent(url, headers, path, per_round)
            elapsed[path] += per_round // CLIENTS * CLIENTS / rps
    return done / elapsed[BARE], done / elapsed[DO_EVAL]


def measure(url: str, quick: bool, log: Callable[[str], None]) -> Figures:
    n, tput, warmup = (300, 800, 50) if quick else (2000, 4000, 200)
    headers = login(url)
    log(f"latency: {n} sequential requests each, interleaved in 10 rounds "
        f"(after {warmup} warm-up each)...")
    bare_ns, do_eval_ns = sequential(url, headers, n, rounds=10, warmup=warmup)
    log(f"throughput: {tput} requests each with {CLIENTS} concurrent clients...")
    bare_rps, do_eval_rps = throughput(url, headers, tput, rounds=2)
    bare, do_eval = summarize(bare_ns), summarize(do_eval_ns)
    median_ratio = do_eval.median_ms / bare.median_ms
    return Figures(bare=bare, do_eval=do_eval, median_ratio=median_ratio,
                   p99_ratio=do_eval.p99_ms / bare.p99_ms, bare_rps=bare_rps,
                   do_eval_rps=do_eval_rps, rps_ratio=do_eval_rps / bare_rps,
                   clients=CLIENTS, throughput_requests=tput,
                   target_met=median_ratio <= TARGET_RATIO, cpus=os.cpu_count(),
                   python=platform.python_version(), commit=commit(),
                   versions=library_versions())


def report(f: Figures) -> str:
    rows = [("", "bare", "do-eval", "do-eval/bare"),
            ("median (ms)", f"{f.bare.median_ms:.3f}", f"{f.do_eval.median_ms:.3f}",
             f"{f.median_ratio:.2f}x"),
            ("p99 (ms)", f"{f.bare.p99_ms:.3f}", f"{f.do_eval.p99_ms:.3f}",
             f"{f.p99_ratio:.2f}x"),
            ("mean (ms)", f"{f.bare.mean_ms:.3f}", f"{f.do_eval.mean_ms:.3f}",
             f"{f.do_eval.mean_ms / f.bare.mean_ms:.2f}x"),
            ("max (ms)", f"{f.bare.max_ms:.3f}", f"{f.do_eval.max_ms:.3f}", ""),
            ("requests > 100 ms", str(f.bare.over_100ms), str(f.do_eval.over_100ms), ""),
            (f"req/s, {f.clients} clients", f"{f.bare_rps:.0f}", f"{f.do_eval_rps:.0f}",
             f"{f.rps_ratio:.2f}x")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    verdict = "met" if f.target_met else "NOT met"
    lines += ["", f"{f.bare.n} sequential requests per endpoint; {f.cpus} CPUs; "
              f"Python {f.python}; {f.versions}; commit {f.commit}",
              f"target: median do-eval <= {TARGET_RATIO:.1f}x bare: {verdict} "
              f"({f.median_ratio:.2f}x)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", type=Path, metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return


    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory(prefix="epe-bench-") as tmp:
        data = Path(tmp) / "data"
        server = BenchServer(data, command=[sys.executable, __file__, "--serve", str(data)])
        with server.guarded():
            server.add_user(USER, PASSWORD)
            log("starting the server...")
            server.start()
            figures = measure(server.url, args.quick, log)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
    else:
        print(report(figures))


if __name__ == "__main__":
    main()
