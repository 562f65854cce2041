"""A new user's first do-eval, a warm do-eval and the bare endpoint, in one run.

Starts the server of ``bench/do_eval_latency.py`` (epe's app plus a ``POST /bench/bare``
route that does nothing) on 127.0.0.1 with its own data folder, and measures:

* **first call**: for each of several new users, the round trip of their very first
  do-eval (no worker of theirs exists yet: their pool is forked from the fork server,
  each worker entering its sandbox and its user's uid), after one login;
* **warm**: the median of sequential do-evals of a warm user against the bare endpoint,
  interleaved so machine noise hits both alike (the ratio is what holds);
* **throughput**: requests per second with 8 concurrent clients, do-eval and bare.

Targets: first call <= 250 ms (the median and the slowest of the users are shown);
warm median <= 2x bare. Run: ``.venv/bin/python bench/sandbox.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from benchserver import BenchServer, commit
from do_eval_latency import (
    API,
    PASSWORD,
    TOKEN_URL,
    USER,
    Figures,
    measure,
    report,
)

FIRST_CALL_TARGET_MS = 250.0
NEW_USERS = 8
TRIVIAL = {"script": "def f():\n    return 1\n"}


@dataclass
class FirstCalls:
    users: int
    median_ms: float
    max_ms: float
    each_ms: list[float]
    target_met: bool


def first_calls(server: BenchServer, count: int) -> FirstCalls:
    """Each new user's first do-eval, timed alone (after the login, which is not)."""
    each = []
    for i in range(count):
        user = f"FIRST{i}"
        server.add_user(user, PASSWORD)
        with httpx.Client(base_url=server.url, timeout=120) as c:
            token = c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                            "password": PASSWORD}).json()["accessToken"]
            headers = {"Authorization": f"Bearer {token}"}
            start = time.perf_counter()
            r = c.post(f"{API}/do-eval", json=TRIVIAL, headers=headers)
            each.append((time.perf_counter() - start) * 1000)
            if r.json() != {"result": 1}:
                raise RuntimeError(f"first do-eval of {user}: {r.status_code} {r.text[:300]}")
    median = statistics.median(each)
    return FirstCalls(count, median, max(each), [round(x, 1) for x in each],
                      max(each) <= FIRST_CALL_TARGET_MS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    script = Path(__file__).with_name("do_eval_latency.py")
    with tempfile.TemporaryDirectory(prefix="epe-bench-") as tmp:
        data = Path(tmp) / "data"
        # Room for every bench user's pool at once, so no first call waits for an eviction.
        server = BenchServer(data, env={"EPE_MAX_POOLS": str(NEW_USERS + 2),
                                        "EPE_MAX_WORKERS": str(2 * NEW_USERS + 4)},
                             command=[sys.executable, str(script), "--serve", str(data)])
        with server.guarded():
            server.add_user(USER, PASSWORD)
            log("starting the server...")
            server.start()
            isolated = httpx.get(server.url + "/health").json().get("tenantIsolation")
            log(f"first calls of {NEW_USERS} new users (isolated: {isolated})...")
            first = first_calls(server, NEW_USERS)
            warm: Figures = measure(server.url, args.quick, log)
    if args.json:
        print(json.dumps({"first": asdict(first), "warm": asdict(warm),
                          "isolated": isolated}, indent=2))
        return
    print(report(warm))
    verdict = "met" if first.target_met else "NOT met"
    print(f"\nfirst do-eval of a new user (tenant isolation {isolated}): median "
          f"{first.median_ms:.1f} ms, slowest {first.max_ms:.1f} ms of {first.users} users "
          f"{first.each_ms}\ntarget: first call <= {FIRST_CALL_TARGET_MS:.0f} ms: {verdict}; "
          f"commit {commit()}")


if __name__ == "__main__":
    main()
