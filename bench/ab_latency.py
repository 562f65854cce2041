"""do-eval latency of two versions of epe side by side: an earlier commit and this checkout.

``do_eval_latency.py`` measures one server, so two of its runs, one per version, are
minutes apart, and on a shared machine the load moves more than what is compared. This
script starts both servers at once (each exactly as ``do_eval_latency.py`` serves it:
epe's app plus the bare route) and times them in alternating rounds (REV bare, REV
do-eval, this bare, this do-eval; the next round this first), so that noise hits both
alike. It reports, per version, the pooled medians and their ratio (the figure
``do_eval_latency.py`` reports) and the median of the per-round ratios, and, round by
round, how much this checkout adds to each endpoint.

The earlier version is ``git archive REV src bench`` in a temporary folder, run with
this venv and ``PYTHONPATH`` pointing there. Its workers run this checkout's worker
code: they start from an environment built from nothing, so they find the installed
package. Compare commits whose worker code is the same.

Run: ``.venv/bin/python bench/ab_latency.py REV [--rounds 40] [--per 50] [--json]``
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import httpx

import do_eval_latency as single
from benchserver import BenchServer, commit

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("base", "this")


def unpack(rev: str, into: Path) -> Path:
    """``src`` and ``bench`` of ``rev``, in ``into``."""
    archive = subprocess.run(["git", "archive", rev, "src", "bench"], cwd=ROOT,
                             capture_output=True, check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)  # our own repository's files
    return into


def start(folder: Path, bench_file: Path, env: dict[str, str]) -> BenchServer:
    data = folder / "data"
    server = BenchServer(data, env=env,
                         command=[sys.executable, str(bench_file), "--serve", str(data)])
    server.add_user(single.USER, single.PASSWORD)
    server.start()
    return server


def measure(servers: dict[str, BenchServer], rounds: int, per: int) -> dict[str, object]:
    clients = {name: httpx.Client(base_url=s.url, headers=single.login(s.url), timeout=60)
               for name, s in servers.items()}
    samples: dict[str, dict[str, list[int]]] = {n: {"bare": [], "do_eval": []}
                                                for n in VERSIONS}
    medians: dict[str, list[tuple[float, float]]] = {n: [] for n in VERSIONS}
    try:
        for c in clients.values():
            single.timed(c, single.BARE, 200)
            single.timed(c, single.DO_EVAL, 200)
        for r in range(rounds):
            for name in VERSIONS if r % 2 == 0 else reversed(VERSIONS):
                bare = single.timed(clients[name], single.BARE, per)
                do_eval = single.timed(clients[name], single.DO_EVAL, per)
                samples[name]["bare"] += bare
                samples[name]["do_eval"] += do_eval
                medians[name].append((statistics.median(bare) / 1e6,
                                      statistics.median(do_eval) / 1e6))
    finally:
        for c in clients.values():
            c.close()
    figures: dict[str, object] = {}
    for name in VERSIONS:
        bare = single.summarize(samples[name]["bare"])
        do_eval = single.summarize(samples[name]["do_eval"])
        figures[name] = {
            "bare_median_ms": bare.median_ms, "do_eval_median_ms": do_eval.median_ms,
            "median_ratio": do_eval.median_ms / bare.median_ms,
            "round_ratio_median": statistics.median(d / b for b, d in medians[name]),
            "bare_p99_ms": bare.p99_ms, "do_eval_p99_ms": do_eval.p99_ms, "n": bare.n}
    pairs = list(zip(medians["base"], medians["this"], strict=True))
    figures["added_ms"] = {"bare": statistics.median(t[0] - b[0] for b, t in pairs),
                           "do_eval": statistics.median(t[1] - b[1] for b, t in pairs)}
    return figures


def report(rev: str, figures: dict[str, object]) -> str:
    lines = [f"{'':6}  {'bare med':>9}  {'do-eval med':>11}  {'ratio':>6}  "
             f"{'round ratio':>11}"]
    for name in VERSIONS:
        f = figures[name]
        assert isinstance(f, dict)
        lines.append(f"{name:6}  {f['bare_median_ms']:8.3f}ms  {f['do_eval_median_ms']:10.3f}ms"
                     f"  {f['median_ratio']:5.2f}x  {f['round_ratio_median']:10.2f}x")
    added = figures["added_ms"]
    assert isinstance(added, dict)
    lines += ["", f"base: {rev}; this: {commit()}",
              f"added by this, median over rounds: bare {added['bare']:+.3f} ms, "
              f"do-eval {added['do_eval']:+.3f} ms"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per", type=int, default=50, help="requests per endpoint a round")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="epe-ab-") as tmp:
        base_tree = unpack(args.rev, Path(tmp) / "tree")
        (Path(tmp) / "base").mkdir()
        (Path(tmp) / "this").mkdir()
        servers: dict[str, BenchServer] = {}
        try:
            servers["base"] = start(Path(tmp) / "base",
                                    base_tree / "bench" / "do_eval_latency.py",
                                    {"PYTHONPATH": str(base_tree / "src")})
            servers["this"] = start(Path(tmp) / "this", ROOT / "bench" / "do_eval_latency.py",
                                    {})
            figures = measure(servers, args.rounds, args.per)
        finally:
            for s in servers.values():
                s.stop()
    print(json.dumps(figures, indent=2) if args.json else report(args.rev, figures))


if __name__ == "__main__":
    main()
