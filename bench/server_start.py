"""How long ``epe serve`` takes to be ready, against a bare FastAPI app (docs/benchmarks.md).

Each round starts, in turn, ``epe serve`` on a data folder it has used before (its
migrations done) and a bare FastAPI app with one route served by uvicorn, both as
subprocesses on 127.0.0.1, and times each from the start of its process to its first
answer (``GET /health`` for epe, after its "epe serving on" line; ``GET /`` for the bare
app). Interleaved, so that the machine's noise hits both alike. It prints the medians
and their ratio, and the median of when epe's log says each step of its start ended.

With ``--compare SRC`` each round also starts ``epe serve`` from another copy of epe's
sources (``SRC``, a ``src`` folder, put first on ``PYTHONPATH``; its workers are this
checkout's), so that two versions are timed side by side in the same run.

Run: ``.venv/bin/python bench/server_start.py [--rounds N] [--compare SRC] [--json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchserver import BenchServer, commit

BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict[str, bool]:
    return {"ok": True}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
# epe's own log lines that end a step of its start, and what that step is.
STEPS = {"fork server of .* started": "fork server ready"}
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answered(url: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer")


def epe_start(server: BenchServer) -> tuple[float, dict[str, float]]:
    """Seconds to the first answer, and when each of ``STEPS`` ended."""
    began, wall = time.monotonic(), time.time()
    server.start()
    ready = answered(server.url + "/health", time.monotonic() + 60)
    steps = {}
    for line in server.output(tail=40).splitlines():
        stamp = STAMP.match(line)
        for pattern, step in STEPS.items():
            if stamp and re.search(pattern, line):
                at = time.mktime(time.strptime(stamp.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
                steps[step] = at + int(stamp.group(1)[20:]) / 1000 - wall
    server.stop()
    return ready - began, steps


def bare_start(script: Path) -> float:
    port = free_port()
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        return answered(f"http://127.0.0.1:{port}/", time.monotonic() + 60) - began
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compare", metavar="SRC", help="another epe's src folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bare.py"
        script.write_text(BARE_APP)
        server = BenchServer(Path(tmp) / "data")
        other = BenchServer(Path(tmp) / "other", {"PYTHONPATH": args.compare}) \
            if args.compare else None
        for each in (server, other):
            if each is not None:  # the first start makes and migrates the data folder
                each.start()
                each.stop()
        epe, bare, steps, compared = [], [], [], []
        for _ in range(args.rounds):
            seconds, step = epe_start(server)
            epe.append(seconds)
            steps.append(step)
            if other is not None:
                compared.append(epe_start(other)[0])
            bare.append(bare_start(script))
    result = {
        "epe_serve_ready_s": round(statistics.median(epe), 3),
        "bare_fastapi_ready_s": round(statistics.median(bare), 3),
        "ratio": round(statistics.median(epe) / statistics.median(bare), 2),
        "epe_all_s": [round(s, 3) for s in epe],
        "steps_s": {name: round(statistics.median(s[name] for s in steps if name in s), 3)
                    for name in STEPS.values() if any(name in s for s in steps)},
        "rounds": args.rounds, "commit": commit(), "python": platform.python_version(),
    }
    if compared:
        result |= {"compared_src": args.compare,
                   "compared_ready_s": round(statistics.median(compared), 3),
                   "compared_all_s": [round(s, 3) for s in compared],
                   "compared_ratio": round(statistics.median(compared)
                                           / statistics.median(bare), 2)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"epe serve, ready to answer: median {result['epe_serve_ready_s']:.3f} s "
          f"(all: {', '.join(f'{s:.2f}' for s in epe)})")
    print(f"bare FastAPI app:           median {result['bare_fastapi_ready_s']:.3f} s")
    print(f"ratio: {result['ratio']:.2f}x")
    if compared:
        print(f"epe serve from {args.compare}: median {result['compared_ready_s']:.3f} s "
              f"(all: {', '.join(f'{s:.2f}' for s in compared)}), "
              f"{result['compared_ratio']:.2f}x the bare app")
    for name, at in result["steps_s"].items():
        print(f"  {name}: {at:.3f} s after the process started")


if __name__ == "__main__":
    main()
