"""Sharing one server fairly: ratios measured side by side in one run (docs/benchmarks.md#fairness).

Starts ``epe serve`` processes on 127.0.0.1 with temporary data folders, users made
through the admin API, and measures:

* **burst**: user A submits 12 async do-eval jobs of ``SLOT`` seconds each (sleeping),
  then user B one of 0.5 s; B's wait (its submission to its 302, less its own 0.5 s)
  divided by one slot. Goal <= 1.5: B waits for about one of A's jobs, not for all.
* **latency under burners**: B's do-eval median while A keeps 6 CPU burners busy,
  divided by B's median alone (alternating). Goal <= 1.3.
* **CPU share**: A's 6 burners and B's 1 burn until the same deadline; the share of a
  core each got while it burned (its CPU seconds over its wall seconds), B's over the
  sum. Goal >= 0.45 (half, less noise). On cgroup v1 each round alternates with the
  kernel's own figure: the same seven burners as bare processes in two groups of the
  cpu hierarchy (six in one, one in the other), no epe involved, so the row shows how
  much of the gap from half is the kernel's load balancing. Goal for the ratio >= 0.95:
  epe's groups give B what the kernel gives any two groups.
  These two on a server with ``EPE_WORKERS=6`` (A's pool holds 6 burners), once with
  cgroups and once with ``EPE_RESOURCE_LIMITS=rlimit``, side by side: the goals are
  for cgroups; the rlimit figures show what they change.
* **cgroup cost**: a warm do-eval's median, and a new user's first do-eval, on a
  default server with cgroups against one with ``EPE_RESOURCE_LIMITS=rlimit``,
  alternating request by request. Goal <= 1.1 each.
* **many users**: 40 new users each make 10 do-evals at once (a thread each, their
  first calls included: their pools start cold), against one warm user making the
  same 400 calls from 40 threads, on a server with default settings, in calls per
  second; alternating, fresh users each round, the median of the rounds' ratios.
  Goal >= 0.8.
* **spares**: a new user's first do-eval on a default server, whose first worker is a
  spare the fork server made ahead of need, against one with ``EPE_WORKER_SPARES=0``,
  alternating, a second between users (time for the spare taken to be replaced). Goal
  <= 1: spares are worth keeping only if they make a first call no slower.

The machine's load average is printed with the figures: other processes on the
machine make absolute times noisy, which the ratios (both sides measured in the same
minutes) mostly are not. Run: ``.venv/bin/python bench/fairness.py [--quick] [--json]
[--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from benchserver import BenchServer, commit

API = "/oml/api/py-scripts/v2"
TOKEN_URL = "/omlusers/api/oauth2/v1/token"
USERS = "/omlusers/api/v1/users"
ADMIN, PASSWORD = "BENCHADMIN", "bench-Secret1"
SLOT = 2.0  # seconds each of A's burst jobs holds a slot
BURNERS = 6
TRIVIAL = {"script": "def f():\n    return 1\n"}
SLEEP = "def f(s):\n    import time\n    time.sleep(s)\n    return s\n"
# Burns CPU until ``until`` (epoch seconds); returns the share of a core it got while it
# burned (CPU seconds over wall seconds: a call that starts late is not counted short).
BURN = ("def f(until):\n    import time\n    t0, w0 = time.process_time(), time.time()\n"
        "    while time.time() < until:\n        pass\n"
        "    return (time.process_time() - t0) / max(time.time() - w0, 1e-3)\n")
RLIMIT = {"EPE_RESOURCE_LIMITS": "rlimit"}


@dataclass
class Row:
    name: str
    value: float
    goal: str
    detail: str

    @property
    def met(self) -> bool:
        op, target = self.goal.split()
        return self.value <= float(target) if op == "<=" else self.value >= float(target)


# -- servers and users -------------------------------------------------------------


class Server(BenchServer):
    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        super().__init__(root / name / "data", env)
        (root / name).mkdir()
        self.made = 0

    def begin(self) -> Server:
        self.add_user(ADMIN, PASSWORD, admin=True)
        self.start()
        self.admin = self.headers(ADMIN)
        return self

    def headers(self, user: str) -> dict[str, str]:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            r = c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                        "password": PASSWORD})
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['accessToken']}"}

    def new_user(self, prefix: str = "U") -> dict[str, str]:
        """A new user's authorization header (made through the admin API)."""
        self.made += 1
        name = f"{prefix}{self.made}"
        with httpx.Client(base_url=self.url, timeout=60, headers=self.admin) as c:
            r = c.post(USERS, json={"username": name, "password": PASSWORD})
            if r.status_code != 201:
                raise RuntimeError(f"creating {name}: {r.status_code} {r.text[:300]}")
        return self.headers(name)

    def limits(self) -> str:
        return str(httpx.get(self.url + "/health").json().get("resourceLimits"))


@contextmanager
def servers(root: Path, **envs: dict[str, str]) -> Iterator[dict[str, Server]]:
    with ExitStack() as stack:
        started = {}
        for name, env in envs.items():
            server = Server(root, name, env)
            stack.enter_context(server.guarded())
            started[name] = server.begin()
        yield started


def call(c: httpx.Client, body: dict[str, Any], path: str = "/do-eval") -> Any:
    r = c.post(API + path, json=body)
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text[:500]}")
    return r.json()["result"]


def timed(c: httpx.Client, body: dict[str, Any] = TRIVIAL) -> float:
    start = time.perf_counter()
    call(c, body)
    return time.perf_counter() - start


def in_threads(count: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` in ``count`` threads started together; the seconds until all end."""
    gate = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        gate.wait()
        try:
            work(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


# -- the measurements --------------------------------------------------------------


def burst(server: Server, jobs: int) -> Row:
    """B's wait behind A's burst of ``jobs`` async jobs, in slots."""
    a, b = server.new_user("A"), server.new_user("B")
    with httpx.Client(base_url=server.url, timeout=120, headers=a) as ca, \
            httpx.Client(base_url=server.url, timeout=120, headers=b) as cb:
        call(ca, TRIVIAL), call(cb, TRIVIAL)  # both pools warm
        urls = [submit(ca, SLOT) for _ in range(jobs)]
        start = time.perf_counter()
        mine = submit(cb, 0.5)
        wait_for(cb, mine)
        waited = time.perf_counter() - start - 0.5
        for url in urls:
            wait_for(ca, url)
    return Row("B's wait behind A's burst / one slot", waited / SLOT, "<= 1.5",
               f"{waited:.1f} s behind {jobs} jobs of {SLOT:g} s")


def submit(c: httpx.Client, seconds: float) -> str:
    r = c.post(f"{API}/do-eval", json={"script": SLEEP, "asyncFlag": True,
                                       "parameters": json.dumps({"s": seconds})})
    if r.status_code != 201:
        raise RuntimeError(f"async do-eval: {r.status_code} {r.text[:300]}")
    return r.headers["Location"]


def wait_for(c: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        r = c.get(url)
        if r.status_code == 302:
            return
        if r.status_code != 202:
            raise RuntimeError(f"job {url}: {r.status_code} {r.text[:300]}")
        time.sleep(0.02)
    raise RuntimeError(f"job {url} did not end")


def burners(server: Server, calls: int, share_rounds: int) -> list[Row]:
    """B's do-eval latency while A burns, against alone; B's CPU share while both burn,
    and with cgroup v1 that share over the kernel's for the same burners without epe."""
    limits = server.limits()
    a, b = server.new_user("A"), server.new_user("B")
    with httpx.Client(base_url=server.url, timeout=120, headers=b) as cb:
        burn(server, a, b, 1.0)  # both pools grown to what they hold under load
        alone: list[float] = []
        loaded: list[float] = []
        for _ in range(2):
            alone += [timed(cb) for _ in range(calls)]
            with burning(server, a):
                loaded += [timed(cb) for _ in range(calls)]
        groups = bare_groups() if limits == "cgroup1" else None
        shares, bare = [], []
        for _ in range(share_rounds):
            shares.append(burn(server, a, b, 3.0))
            if groups is not None:
                bare.append(burn_bare(groups, 3.0))
    share = statistics.median(shares)
    rows = [Row(f"B's do-eval under A's {BURNERS} burners / alone ({limits})",
                statistics.median(loaded) / statistics.median(alone), "<= 1.3",
                f"median {statistics.median(loaded) * 1e3:.1f} ms against "
                f"{statistics.median(alone) * 1e3:.1f} ms"),
            Row(f"B's CPU share, 1 burner against A's {BURNERS} ({limits})", share, ">= 0.45",
                "rounds: " + ", ".join(f"{s:.2f}" for s in shares))]
    if bare:
        rows.append(Row(f"B's CPU share through epe / bare processes in two groups ({limits})",
                        share / statistics.median(bare), ">= 0.95",
                        "the kernel's own share, alternated: "
                        + ", ".join(f"{s:.2f}" for s in bare)))
    return rows


@contextmanager
def burning(server: Server, a: dict[str, str]) -> Iterator[None]:
    """A's burners, kept busy (each a do-eval of 1 s after another) during the block."""
    stop = threading.Event()

    def keep(_i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120, headers=a) as c:
            while not stop.is_set():
                call(c, {"script": BURN, "parameters": json.dumps({"until": time.time() + 1})})

    runner = threading.Thread(target=in_threads, args=(BURNERS, keep))
    runner.start()
    time.sleep(0.5)  # all of them under way
    try:
        yield
    finally:
        stop.set()
        runner.join()


def burn(server: Server, a: dict[str, str], b: dict[str, str], seconds: float) -> float:
    """A's burners and B's one burn until the same moment; B's share of the CPU they got
    (each one's CPU seconds per second of burning, B's over all of them)."""
    until = time.time() + seconds
    got: dict[int, float] = {}

    def one(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120, headers=b if i == 0 else a) as c:
            got[i] = call(c, {"script": BURN, "parameters": json.dumps({"until": until})})

    in_threads(BURNERS + 1, one)
    return got[0] / sum(got.values())


# The bench's burner as a bare process: told the deadline on stdin, it prints its share.
BARE = BURN + "import sys\nprint(f(float(sys.stdin.readline())), flush=True)\n"


def bare_groups() -> Path | None:
    """A fresh group of this process's cgroup v1 cpu hierarchy to make the bare burners'
    two groups in, or None where there is none this process may write to."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            mount = Path("/sys/fs/cgroup", controllers)
            here = mount / path.lstrip("/") / f"epe-bench-{os.getpid()}"
            try:
                here.mkdir()
            except OSError:
                return None
            here.rmdir()
            return here
    return None


def burn_bare(groups: Path, seconds: float) -> float:
    """The kernel's share for B with no epe: BURNERS bare burners in one group, one in
    another, under ``groups`` (made for the burn and removed after it)."""
    made = [groups, groups / "A", groups / "B"]
    for g in made:
        g.mkdir()
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(BURNERS + 1):
            p = subprocess.Popen([sys.executable, "-c", BARE], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            (made[2] if i == 0 else made[1]).joinpath("cgroup.procs").write_text(str(p.pid))
        time.sleep(0.3)  # each started and waiting for its deadline
        until = time.time() + seconds
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{until}\n")
            p.stdin.flush()
        got = [float(p.communicate()[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for g in reversed(made):
            g.rmdir()
    return got[0] / sum(got)


def cgroup_cost(cg: Server, rl: Server, users: int, calls: int) -> tuple[Row, Row]:
    """Warm do-eval and a new user's first do-eval, cgroups against rlimits."""
    warm: dict[str, list[float]] = {"cg": [], "rl": []}
    first: dict[str, list[float]] = {"cg": [], "rl": []}
    clients = {k: httpx.Client(base_url=s.url, timeout=120, headers=s.new_user("W"))
               for k, s in (("cg", cg), ("rl", rl))}
    try:
        for c in clients.values():
            call(c, TRIVIAL)
        for _ in range(calls):
            for k, c in clients.items():
                warm[k].append(timed(c))
        for _ in range(users):
            for k, s in (("cg", cg), ("rl", rl)):
                headers = s.new_user("F")
                with httpx.Client(base_url=s.url, timeout=120, headers=headers) as c:
                    first[k].append(timed(c))
                time.sleep(0.3)  # its pool's other workers start meanwhile, not in the next
    finally:
        for c in clients.values():
            c.close()
    med = {k: {n: statistics.median(v[k]) for n, v in (("warm", warm), ("first", first))}
           for k in ("cg", "rl")}
    return (Row("warm do-eval, cgroups / rlimits", med["cg"]["warm"] / med["rl"]["warm"],
                "<= 1.1", f"median {med['cg']['warm'] * 1e3:.2f} ms against "
                          f"{med['rl']['warm'] * 1e3:.2f} ms"),
            Row("a new user's first do-eval, cgroups / rlimits",
                med["cg"]["first"] / med["rl"]["first"], "<= 1.1",
                f"median {med['cg']['first'] * 1e3:.1f} ms against "
                f"{med['rl']['first'] * 1e3:.1f} ms ({users} users each)"))


def spare_cost(spares: Server, none: Server, users: int) -> Row:
    """A new user's first do-eval on a default server (its first worker a spare) against
    one with ``EPE_WORKER_SPARES=0`` (forked when asked for), alternating."""
    first: dict[str, list[float]] = {"spares": [], "none": []}
    for _ in range(users):
        for name, server in (("spares", spares), ("none", none)):
            with httpx.Client(base_url=server.url, timeout=120,
                              headers=server.new_user("S")) as c:
                first[name].append(timed(c))
        time.sleep(1.0)  # the spare taken is replaced once the fork server is quiet
    med = {k: statistics.median(v) for k, v in first.items()}
    return Row("a new user's first do-eval, spares / none", med["spares"] / med["none"],
               "<= 1.0", f"median {med['spares'] * 1e3:.1f} ms against "
                         f"{med['none'] * 1e3:.1f} ms ({users} users each)")


def many_users(server: Server, users: int, calls: int, rounds: int) -> Row:
    """``users`` new users x ``calls`` do-evals at once, against one user's same calls.

    Each thread's client is made before the clock starts: an ``httpx.Client`` loads the
    system's CA certificates when made (22 ms of CPU here, even for plain HTTP), which in
    the timed part made the bench client, not the server, most of what was measured.
    """
    one = server.new_user("ONE")
    with httpx.Client(base_url=server.url, timeout=120, headers=one) as c:
        call(c, TRIVIAL)
    many_s, one_s = [], []
    for _ in range(rounds):
        fresh = [server.new_user("M") for _ in range(users)]
        with clients(server, [one] * users) as ones, clients(server, fresh) as manys:
            one_s.append(in_threads(users, lambda i: calls_of(ones[i], calls)))
            many_s.append(in_threads(users, lambda i: calls_of(manys[i], calls)))
    total = users * calls
    ratios = [o / m for m, o in zip(many_s, one_s, strict=True)]  # each round side by side
    return Row(f"{users} users x {calls} do-evals / one user's {total} from {users} threads",
               statistics.median(ratios), ">= 0.8",
               "calls/s by round: " + ", ".join(f"{total / m:.0f} against {total / o:.0f}"
                                               for m, o in zip(many_s, one_s, strict=True)))


@contextmanager
def clients(server: Server, headers: list[dict[str, str]]) -> Iterator[list[httpx.Client]]:
    with ExitStack() as stack:
        yield [stack.enter_context(httpx.Client(base_url=server.url, timeout=120, headers=h))
               for h in headers]


def calls_of(c: httpx.Client, calls: int) -> None:
    for _ in range(calls):
        call(c, TRIVIAL)


# -- the run -----------------------------------------------------------------------


def measure(only: set[str], quick: bool, log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="epe-bench-") as tmp:
        root = Path(tmp)
        if not only or "burst" in only or "burners" in only:
            six = {"EPE_WORKERS": str(BURNERS)}
            with servers(root, cg6=six, rl6={**six, **RLIMIT}) as s:
                if not only or "burst" in only:
                    log("A's burst, B's job ...")
                    rows.append(burst(s["cg6"], 6 if quick else 12))
                if not only or "burners" in only:
                    for name in ("cg6", "rl6"):
                        log(f"B against A's burners ({s[name].limits()}) ...")
                        rows += burners(s[name], 10 if quick else 30,
                                        2 if quick else 5)
        if not only or "cost" in only or "many" in only:
            extra = json.loads(os.environ.get("FAIRNESS_ENV", "{}"))  # trying settings
            with servers(root, cg=extra, rl={**extra, **RLIMIT}) as s:
                if not only or "cost" in only:
                    log("cgroups against rlimits: warm and first calls ...")
                    rows += cgroup_cost(s["cg"], s["rl"], 4 if quick else 10,
                                        50 if quick else 200)
                if not only or "many" in only:
                    log("40 users at once against one user ...")
                    rows.append(many_users(s["cg"], 40, 10, 1 if quick else 3))
        if not only or "spares" in only:
            with servers(root, sp={}, nosp={"EPE_WORKER_SPARES": "0"}) as s:
                log("a new user's first call: spares against none ...")
                rows.append(spare_cost(s["sp"], s["nosp"], 5 if quick else 20))
    return rows


def report(rows: list[Row], load: tuple[float, float]) -> str:
    table = [("measure", "ratio", "goal", "met", "detail")]
    table += [(r.name, f"{r.value:.2f}", r.goal, "yes" if r.met else "NO", r.detail)
              for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(t[:4], widths, strict=True)), t[4]])
             for t in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"\n{os.cpu_count()} CPUs; load average before/after {load[0]:.2f}/"
                 f"{load[1]:.2f}; commit {commit()}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--only", nargs="*", default=[],
                        choices=["burst", "burners", "cost", "many", "spares"])
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    before = os.getloadavg()[0]
    rows = measure(set(args.only), args.quick, log)
    load = (before, os.getloadavg()[0])
    if args.json:
        print(json.dumps({"rows": [{**asdict(r), "met": r.met} for r in rows],
                          "load": load, "commit": commit()}, indent=2))
    else:
        print(report(rows, load))


if __name__ == "__main__":
    main()
