"""Spares as a server uses them: a new user's first worker is a child its fork server
forked ahead of need; one that dies just as it is handed the request is passed over for
the next spare, or a child forked then, and the user never sees it
(docs/architecture.md#spares)."""

from __future__ import annotations

import platform
import resource
from collections.abc import Callable
from pathlib import Path

from tests.acceptance.test_jobs import alive, spares
from tests.serverproc import API, EpeServer, wait_for

# recvmsg(2)'s number, as /proc/PID/syscall shows the call a process sleeps in.
RECVMSG = {"x86_64": 47, "aarch64": 212}[platform.machine()]


def waiting_for_a_request(pid: int) -> bool:
    """Whether spare ``pid`` is past its warm-up (which opens files) and waits on its
    socket for the request that makes it someone's worker."""
    return Path(f"/proc/{pid}/syscall").read_text().split()[0] == str(RECVMSG)


def starve_of_descriptors(pid: int) -> None:
    """Leave ``pid`` no descriptor it may open: its lowest free number becomes its limit,
    so what it receives next over a socket arrives without the descriptors it brings."""
    taken = {int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    lowest_free = min(set(range(len(taken) + 1)) - taken)
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))


def test_a_spare_that_dies_as_it_is_handed_a_request_is_passed_over(
        make_server: Callable[..., EpeServer]) -> None:
    # One spare: the next worker asked for after it is forked when asked for.
    srv = make_server(EPE_WORKER_SPARES="1")
    assert srv.proc is not None
    server = srv.proc.pid
    (spare,) = wait_for(lambda: spares(server), 60)
    wait_for(lambda: waiting_for_a_request(spare), 30)
    starve_of_descriptors(spare)
    _user, c = srv.new_client()
    with c:
        r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 42\n"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 42
    wait_for(lambda: not alive(spare), 10)  # it was handed the request, and died of it
    wait_for(lambda: "a spare worker ended before it was ready" in "".join(srv.output), 10)
    assert "could not start a worker" not in "".join(srv.output)
