"""Async jobs (docs/api.md#async-jobs) over HTTP: submission on every run
endpoint, status, result, log, delete, the jobs list, time limits, admission,
per-service concurrency, idempotent retries, retention, ownership, and what a
restart (SIGTERM or kill -9) leaves behind.

Nothing here asserts on elapsed time: ``wait_for`` polls for a state."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import (
    API,
    API1,
    EpeServer,
    assert_error,
    iris_csv,
    put_table,
    unique_name,
    wait_for,
)

DELETED = {"result": "job deleted successfully"}
STATUSES = {"PENDING", "RUNNING", "FINISH", "FAILED", "CANCELLED", "TIMEOUT"}
ELAPSED = re.compile(r"^\d{2,}:[0-5]\d:[0-5]\d$")

QUICK = "def f(n=1):\n    return n * n\n"
SLEEPER = "import time\ndef f():\n    time.sleep(3600)\n    return 'woke up'\n"
FAILING = "def f():\n    print('about to fail')\n    raise ValueError('bad value 42')\n"

# Oracle's async group-apply example, verbatim (OML REST API, "Asynchronous Script Execution").
ORACLE_ASYNC_BODY = ('{"asyncFlag":true, "input":"select * from IRIS", '
                     '"parameter":"{\\"oml_input_type\\":\\"pandas.DataFrame\\"}", '
                     '"groupBy":"Species", "orderBy":"Sepal_Length", "parallelFlag":true}')
GROUP_COUNT = ('def group_count(dat):\n    import pandas as pd\n'
               '    return pd.DataFrame([(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], '
               'dat.shape[0])], columns=["SPECIES", "SEPAL_LENGTH", "COUNT"])')


# -- helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c(server: EpeServer) -> Iterator[httpx.Client]:
    """One user for the tests on the shared server, with a small table NUMS."""
    _user, client = server.new_client()
    with client:
        put_table(client, "NUMS", "G,X\na,1\nb,2\na,3\nb,4\nc,5\n")
        yield client




def submit(c: httpx.Client, path: str, body: dict[str, Any] | None = None,
           **headers: str) -> str:
    """POST an async run; assert OML's 201 answer and return the job's URL."""
    r = c.post(path, json={**(body or {}), "asyncFlag": True}, headers=headers)
    return created(c, r, path)


def created(c: httpx.Client, r: httpx.Response, path: str) -> str:
    assert r.status_code == 201, r.text
    assert r.content == b""
    url = r.headers["Location"]
    version = "/v1/" if path.startswith(API1) else "/v2/"
    prefix = f"{c.base_url}".rstrip("/") + API.replace("/v2", version) + "jobs/"
    assert url.startswith(prefix), (url, prefix)
    # Clients append "/result": the URL ends in the id, with no query or trailing slash.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", url[len(prefix):]), url
    return url


def job_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def ended(c: httpx.Client, url: str, timeout: float = 60) -> httpx.Response:
    """Poll the job until it answers 302; that answer."""
    def check() -> httpx.Response | None:
        r = c.get(url)
        assert r.status_code in (202, 302), r.text
        return r if r.status_code == 302 else None
    r: httpx.Response = wait_for(check, timeout)
    assert r.headers["Content-Location"] == url + "/result"
    assert "Location" not in r.headers  # redirect-following clients must see the 302
    return r


def result(c: httpx.Client, url: str, timeout: float = 60) -> httpx.Response:
    ended(c, url, timeout)
    return c.get(url + "/result")


def listed(c: httpx.Client) -> dict[str, dict[str, Any]]:
    r = c.get(f"{API}/jobs")
    assert r.status_code == 200, r.text
    return {j["job_id"]: j for j in r.json()["result"]}


def status_of(c: httpx.Client, url: str) -> str | None:
    job = listed(c).get(job_id(url))
    return None if job is None else str(job["status"])


def wait_status(c: httpx.Client, url: str, status: str, timeout: float = 30) -> None:
    wait_for(lambda: status_of(c, url) == status, timeout)


def assert_gone(c: httpx.Client, url: str) -> None:
    """Deleted, or never visible to ``c``: 404 for everything, and not listed."""
    for r in (c.get(url), c.get(url + "/result"), c.get(url + "/log"), c.delete(url)):
        assert_error(r, 404, 4004)
    assert job_id(url) not in listed(c)


def parents() -> dict[int, int]:
    """Every live process's parent."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                found[int(entry.name)] = int(fields[1])
    return found


def children(pid: int) -> set[int]:
    """The server's workers: its descendants that have none of their own, but for its
    fork servers (its direct children) and their spares (named ``epe-spare`` until they
    become someone's worker)."""
    parent_of = parents()
    below = {pid}
    while grown := {p for p, parent in parent_of.items() if parent in below} - below:
        below |= grown
    has_children = set(parent_of.values())
    return {p for p in below - {pid} if p not in has_children and parent_of[p] != pid
            and not spare(p)}


def spares(pid: int) -> set[int]:
    """The spares of the server's fork servers."""
    parent_of = parents()
    forks = {p for p, parent in parent_of.items() if parent == pid}
    return {p for p, parent in parent_of.items() if parent in forks and spare(p)}


def spare(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "epe-spare"
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"




# -- 1. submission on every run endpoint ----------------------------------------------


def test_oracle_async_group_apply_example_verbatim(server: EpeServer) -> None:
    """OML's own example: store group_count, run it async on IRIS, poll, fetch."""
    _user, c = server.new_client()
    with c:
        put_table(c, "IRIS", iris_csv())
        r = c.post(f"{API1}/scripts", json={"name": "group_count", "script": GROUP_COUNT})
        assert r.status_code == 201, r.text
        path = f"{API1}/group-apply/group_count"
        r = c.post(path, content=ORACLE_ASYNC_BODY,
                   headers={"Content-Type": "application/json", "Accept": "application/json"})
        url = created(c, r, path)
        assert "/v1/jobs/" in url
        first = c.get(url)
        assert first.status_code in (202, 302), first.text
        assert "Deprecation" in first.headers and "Sunset" in first.headers  # v1
        r = result(c, url)
        assert r.status_code == 200, r.text
        # One row per species: its smallest sepal length (orderBy) and its 50 rows.
        assert r.json() == {"result": {
            "setosa": {"SPECIES": {"0": "setosa"}, "SEPAL_LENGTH": {"0": 4.3},
                       "COUNT": {"0": 50}},
            "versicolor": {"SPECIES": {"0": "versicolor"}, "SEPAL_LENGTH": {"0": 4.9},
                           "COUNT": {"0": 50}},
            "virginica": {"SPECIES": {"0": "virginica"}, "SEPAL_LENGTH": {"0": 4.9},
                          "COUNT": {"0": 50}}}}
        # The same request, sync, answers the same body.
        sync = json.loads(ORACLE_ASYNC_BODY) | {"asyncFlag": False}
        assert c.post(path, json=sync).json() == r.json()


RUNS: list[tuple[str, dict[str, Any]]] = [
    ("do-eval", {"script": "def f(k=2):\n    return {'k': k}\n",
                 "parameters": '{"k": 7}', "parallelFlag": True}),
    ("table-apply", {"script": "def f(d):\n    return float(d['X'].sum())\n",
                     "input": "select * from NUMS",
                     "parameters": '{"oml_input_type": "pandas.DataFrame"}'}),
    ("row-apply", {"script": "def f(d):\n    return int(d['X'].sum())\n",
                   "input": "select * from NUMS order by X", "rows": 2,
                   "parameters": '{"oml_input_type": "pandas.DataFrame"}'}),
    ("group-apply", {"script": "def f(d):\n    return int(d['X'].sum())\n",
                     "input": "select * from NUMS", "groupBy": "g", "orderBy": "x"}),
    ("index-apply", {"script": "def f(i):\n    return i * 10\n", "times": 3,
                     "parallelFlag": True}),
]


@pytest.mark.parametrize("operation, body", RUNS, ids=[op for op, _ in RUNS])
@pytest.mark.parametrize("version", [API, API1], ids=["v2", "v1"])
def test_async_on_every_run_endpoint(c: httpx.Client, version: str, operation: str,
                                     body: dict[str, Any]) -> None:
    """201, empty body, absolute Location in the same version; the result is the sync
    call's. Unknown keys (Oracle's "parameter") are ignored."""
    path = f"{version}/{operation}"
    sync = c.post(path, json=body)
    assert sync.status_code == 200, sync.text
    url = submit(c, path, {**body, "parameter": '{"oml_input_type":"pandas.DataFrame"}'})
    r = result(c, url)
    assert (r.status_code, r.json()) == (200, sync.json())
    assert status_of(c, url) == "FINISH"


def test_async_by_stored_name_and_owner(c: httpx.Client, server: EpeServer) -> None:
    name = unique_name("job")
    r = c.post(f"{API}/scripts", json={"name": name, "script": QUICK})
    assert r.status_code == 201, r.text
    url = submit(c, f"{API}/do-eval/{name}", {"parameters": '{"n": 9}'})
    assert result(c, url).json() == {"result": 81}
    r = c.get(f"{API}/scripts")
    owner = next(s["owner"] for s in r.json()["result"] if s["name"] == name)
    url = submit(c, f"{API}/index-apply/{name}/{owner}", {"times": 2})
    assert result(c, url).json() == {"result": [1, 4]}


def test_oml_async_flag_in_parameters(c: httpx.Client) -> None:
    r = c.post(f"{API}/do-eval", json={"script": QUICK,
                                       "parameters": '{"n": 4, "oml_async_flag": true}'})
    url = created(c, r, API)
    assert result(c, url).json() == {"result": 16}


# -- 2, 3, 4. status, result, delete ------------------------------------------------


def test_running_job_status_progress_result_and_delete(c: httpx.Client) -> None:
    """202 with its fields while running, progress in invocations, result 404 until the
    end; DELETE stops it, and afterwards it is gone for every verb."""
    source = "import time\ndef f(i):\n    if i > 1:\n        time.sleep(3600)\n    return i\n"
    url = submit(c, f"{API}/index-apply", {"script": source, "times": 3})
    try:
        def one_done() -> dict[str, Any] | None:
            r = c.get(url)
            assert r.status_code == 202, r.text
            body = r.json()
            return body if body["progress"] == {"done": 1, "total": 3} else None

        body = wait_for(one_done, 10)
        assert set(body) == {"createdDate", "status", "elapsedTime", "progress", "jobStatus"}, body
        assert body["jobStatus"] in ("PENDING", "RUNNING")
        assert body["status"] == "job is still running"
        assert isinstance(body["createdDate"], str) and body["createdDate"]
        assert ELAPSED.match(body["elapsedTime"]), body
        assert "Content-Location" not in c.get(url).headers
        assert_error(c.get(url + "/result"), 404, 4004)
        job = listed(c)[job_id(url)]
        assert job["status"] == "RUNNING"
        assert job["createdDate"] == body["createdDate"] and ELAPSED.match(job["elapsedTime"])
    finally:
        r = c.delete(url)
    assert (r.status_code, r.json()) == (200, DELETED)
    assert_gone(c, url)


def test_result_of_a_finished_job_is_served_again(c: httpx.Client) -> None:
    url = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 12}'})
    ended(c, url)
    # A client that follows redirects still sees the 302 (no Location header).
    assert c.get(url, follow_redirects=True).status_code == 302
    for _ in range(2):
        r = c.get(url + "/result")
        assert (r.status_code, r.json()) == (200, {"result": 144})
    job = listed(c)[job_id(url)]
    assert job["status"] == "FINISH" and ELAPSED.match(job["elapsedTime"])
    r = c.delete(url)
    assert (r.status_code, r.json()) == (200, DELETED)
    assert_gone(c, url)


def test_unknown_job_is_404(c: httpx.Client) -> None:
    for r in (c.get(f"{API}/jobs/nosuchjob"), c.get(f"{API}/jobs/nosuchjob/result"),
              c.get(f"{API}/jobs/nosuchjob/log"), c.delete(f"{API}/jobs/nosuchjob"),
              c.get(f"{API1}/jobs/nosuchjob")):
        assert_error(r, 404, 4004)


def test_failing_job_answers_what_the_sync_call_would(c: httpx.Client) -> None:
    sync = assert_error(c.post(f"{API}/do-eval", json={"script": FAILING}), 400, 1011)
    assert "bad value 42" in sync["errorMessage"] + sync.get("traceback", "")
    url = submit(c, f"{API}/do-eval", {"script": FAILING})
    r = result(c, url)
    assert (r.status_code, r.json()) == (400, sync)
    assert status_of(c, url) == "FAILED"


def test_failing_invocation_of_an_index_apply_job(c: httpx.Client) -> None:
    source = "def f(i):\n    if i == 2:\n        raise KeyError('two')\n    return i\n"
    body = {"script": source, "times": 3}
    sync = assert_error(c.post(f"{API}/index-apply", json=body), 400, 1011)
    assert sync.get("index") == 2, sync
    r = result(c, submit(c, f"{API}/index-apply", body))
    assert (r.status_code, r.json()) == (400, sync)


def test_job_with_a_bad_input_query_fails(c: httpx.Client) -> None:
    body = {"script": "def f(d):\n    return 1\n", "input": "select * from NO_SUCH_TABLE"}
    sync = c.post(f"{API}/table-apply", json=body)
    assert sync.status_code in (400, 404), sync.text
    url = submit(c, f"{API}/table-apply", body)
    r = result(c, url)
    assert (r.status_code, r.json()) == (sync.status_code, sync.json())
    assert status_of(c, url) == "FAILED"


# -- 6. time limits --------------------------------------------------------------


def test_timed_out_job(c: httpx.Client) -> None:
    body = {"script": SLEEPER, "timeout": 1}
    sync = assert_error(c.post(f"{API}/do-eval", json=body), 400, 1014)
    url = submit(c, f"{API}/do-eval", body)
    r = result(c, url)
    assert (r.status_code, r.json()) == (400, sync)
    assert "time limit" in r.json()["errorMessage"]
    assert status_of(c, url) == "TIMEOUT"


def test_default_and_maximum_timeout_are_settings(
        make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_DEFAULT_TIMEOUT="1", EPE_MAX_TIMEOUT="3")
    _user, c = srv.new_client()
    with c:
        url = submit(c, f"{API}/do-eval", {"script": SLEEPER})  # no timeout: the default
        assert_error(result(c, url), 400, 1014)
        assert status_of(c, url) == "TIMEOUT"
        # Over the maximum: refused at once, not accepted as a job.
        r = c.post(f"{API}/do-eval", json={"script": QUICK, "asyncFlag": True, "timeout": 4})
        assert "3" in assert_error(r, 400, 1001)["errorMessage"]
        assert len(listed(c)) == 1
        # Up to the maximum is fine, and the timed-out worker was replaced.
        url = submit(c, f"{API}/do-eval", {"script": QUICK, "timeout": 3})
        assert result(c, url).json() == {"result": 1}


# -- 4. cancelling frees the workers ----------------------------------------------


def test_deleting_sleeping_jobs_kills_and_replaces_their_workers(
        make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_WORKERS="3", EPE_JOB_CONCURRENCY_LOW="3")
    assert srv.proc is not None
    _user, c = srv.new_client()
    with c:
        urls = [submit(c, f"{API}/do-eval", {"script": SLEEPER}) for _ in range(3)]
        wait_for(lambda: all(status_of(c, u) == "RUNNING" for u in urls))
        # Every worker is taken: a sync call cannot get one within its time limit.
        assert_error(c.post(f"{API}/do-eval", json={"script": QUICK, "timeout": 1}), 400, 1014)
        old_workers = children(srv.proc.pid)
        assert len(old_workers) == 3, old_workers

        for url in urls:
            r = c.delete(url)
            assert (r.status_code, r.json()) == (200, DELETED)
        for url in urls:
            assert_gone(c, url)
        assert listed(c) == {}
        wait_for(lambda: not any(alive(p) for p in old_workers), 10)

        # Three fresh workers, all free: three invocations that overlap in time each get
        # a different one, none of them an old one, well within a short time limit.
        # Each worker's own mark (in a sandbox, every worker is process 1 of its own).
        pids = ("import builtins, time, uuid\ndef f(i):\n    time.sleep(0.5)\n    return "
                "builtins.__dict__.setdefault('epe_test_worker', uuid.uuid4().hex)\n")
        run = {"script": pids, "times": 3, "parallelFlag": True, "parallel": 3,
               "service": "MEDIUM", "timeout": 5}

        def three_free_workers() -> set[str] | None:
            r = c.post(f"{API}/index-apply", json=run)
            if r.status_code != 200:
                assert_error(r, 400, 1014)
                return None
            seen = set(r.json()["result"])
            return seen if len(seen) == 3 else None

        wait_for(three_free_workers, 30)
        new_workers = children(srv.proc.pid)
        assert len(new_workers) == 3 and not new_workers & old_workers


# -- 5, 8. the jobs list, per-service concurrency, pending jobs ------------------


def test_concurrency_per_service_level_and_pending_jobs(
        make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_JOB_CONCURRENCY_LOW="1")
    _user, c = srv.new_client()
    with c:
        running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(c, running, "RUNNING")
        pending = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 5}'})
        # HIGH has a slot of its own: it runs while LOW's only slot is taken.
        high = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 6}',
                                            "service": "HIGH"})
        assert result(c, high).json() == {"result": 36}

        r = c.get(pending)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "job is still running" and ELAPSED.match(body["elapsedTime"])
        assert set(body) >= {"createdDate", "status", "elapsedTime", "progress"}
        assert_error(c.get(pending + "/result"), 404, 4004)
        jobs = listed(c)
        assert [j["status"] for j in jobs.values()] == ["FINISH", "PENDING", "RUNNING"]
        for j in jobs.values():  # newest first
            assert set(j) >= {"job_id", "status", "createdDate", "elapsedTime"}
            assert j["status"] in STATUSES and ELAPSED.match(j["elapsedTime"])
        assert list(jobs) == [job_id(high), job_id(pending), job_id(running)]

        # Stopping the running job lets the pending one through.
        assert c.delete(running).json() == DELETED
        assert result(c, pending).json() == {"result": 25}
        assert {j["status"] for j in listed(c).values()} == {"FINISH"}


def test_deleting_a_pending_job(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_JOB_CONCURRENCY_LOW="1")
    _user, c = srv.new_client()
    with c:
        running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(c, running, "RUNNING")
        pending = submit(c, f"{API}/do-eval", {"script": QUICK})
        assert status_of(c, pending) == "PENDING"
        assert c.delete(pending).json() == DELETED
        assert_gone(c, pending)
        assert c.delete(running).json() == DELETED
        assert listed(c) == {}
        url = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 3}'})
        assert result(c, url).json() == {"result": 9}


# -- 8. admission: a bounded queue -----------------------------------------------


def test_burst_of_200_submissions(make_server: Callable[..., EpeServer]) -> None:
    """Every accepted job completes with its own result; every refusal is a 503 with
    Retry-After and the error body; nothing is dropped silently."""
    srv = make_server(EPE_JOB_QUEUE_LIMIT="20", EPE_WORKERS="2", EPE_RETRY_AFTER="7")
    _user, c = srv.new_client()
    source = "import time\ndef f(n):\n    time.sleep(0.2)\n    return n * n\n"

    def one(n: int) -> tuple[int, httpx.Response]:
        body = {"script": source, "parameters": json.dumps({"n": n}), "asyncFlag": True}
        return n, c.post(f"{API}/do-eval", json=body)

    with c, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(200)))
        accepted = {n: created(c, r, API) for n, r in answers if r.status_code == 201}
        refused = [r for _n, r in answers if r.status_code != 201]
        assert len(accepted) >= 20, len(accepted)
        assert refused, "200 submissions of 0.2 s jobs never filled a queue of 20"
        for r in refused:
            assert_error(r, 503, 5003)
            assert r.headers["Retry-After"] == "7"
        assert len(set(accepted.values())) == len(accepted)

        def all_finished() -> bool:
            jobs = listed(c)
            assert set(jobs) == {job_id(u) for u in accepted.values()}
            return all(j["status"] == "FINISH" for j in jobs.values())

        wait_for(all_finished, 120, interval=0.2)
        for n, url in accepted.items():
            r = c.get(url + "/result")
            assert (r.status_code, r.json()) == (200, {"result": n * n})
        # The queue drained: new work is accepted again.
        url = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 11}'})
        assert result(c, url).json() == {"result": 121}


# -- 9. logs -----------------------------------------------------------------------


def test_log_keeps_stdout_and_stderr(c: httpx.Client) -> None:
    source = ("import sys\ndef f(i):\n    print(f'out {i}')\n"
              "    print(f'err {i}', file=sys.stderr)\n    return i\n")
    url = submit(c, f"{API}/index-apply", {"script": source, "times": 3})
    r = result(c, url)
    assert r.json() == {"result": [1, 2, 3]}  # what was printed never corrupts the result
    r = c.get(url + "/log")
    assert r.status_code == 200, r.text
    text = r.json()["result"]
    for i in (1, 2, 3):
        assert f"out {i}\n" in text and f"err {i}\n" in text, text
    assert text.index("out 1") < text.index("out 2") < text.index("out 3"), text


def test_log_of_a_failed_job_keeps_what_it_printed(c: httpx.Client) -> None:
    url = submit(c, f"{API}/do-eval", {"script": FAILING})
    assert_error(result(c, url), 400, 1011)
    r = c.get(url + "/log")
    assert r.status_code == 200, r.text
    assert "about to fail" in r.json()["result"], r.json()


# -- 10. idempotent retries -------------------------------------------------------


def test_idempotency_key_returns_the_same_job(c: httpx.Client, server: EpeServer) -> None:
    key = unique_name("key")
    body = {"script": QUICK, "parameters": '{"n": 8}'}
    first = submit(c, f"{API}/do-eval", body, **{"Idempotency-Key": key})
    again = submit(c, f"{API}/do-eval", body, **{"Idempotency-Key": key})
    assert again == first
    assert result(c, first).json() == {"result": 64}
    # Retried after it finished: still the same job, not a new run.
    assert submit(c, f"{API}/do-eval", body, **{"Idempotency-Key": key}) == first
    other = submit(c, f"{API}/do-eval", body, **{"Idempotency-Key": key + "-other"})
    plain = submit(c, f"{API}/do-eval", body)
    assert len({first, other, plain}) == 3
    # Keys are per user: someone else's same key is their own job.
    _user, d = server.new_client()
    with d:
        theirs = submit(d, f"{API}/do-eval", body, **{"Idempotency-Key": key})
        assert theirs != first
        assert result(d, theirs).json() == {"result": 64}
    assert result(c, first).json() == {"result": 64}


# -- 11. retention ---------------------------------------------------------------


def test_results_past_retention_are_deleted(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_JOB_RETENTION="2")
    _user, c = srv.new_client()
    with c:
        done = submit(c, f"{API}/do-eval", {"script": QUICK})
        assert result(c, done).status_code == 200
        folder = srv.data_dir / "jobs" / job_id(done)
        assert folder.is_dir()
        running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_for(lambda: c.get(done).status_code == 404, 30, interval=0.2)
        assert_gone(c, done)
        assert not folder.exists()
        # Retention counts from a job's end: one still running is kept.
        assert c.get(running).status_code == 202
        assert c.delete(running).json() == DELETED


# -- 12. a job is its submitter's alone ------------------------------------------


def test_a_job_is_its_submitters_alone(c: httpx.Client, server: EpeServer) -> None:
    finished = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 2}'})
    ended(c, finished)
    running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
    try:
        _user, other = server.new_client()
        with other:
            for url in (finished, running):
                theirs = [other.get(url), other.get(url + "/result"), other.get(url + "/log"),
                          other.delete(url)]
                missing = url[: -len(job_id(url))] + "0" * len(job_id(url))
                for r, m in zip(theirs, [other.get(missing), other.get(missing + "/result"),
                                         other.get(missing + "/log"), other.delete(missing)],
                                strict=True):
                    body = assert_error(r, 404, 4004)
                    # Exactly what a job that does not exist looks like.
                    same = m.json() | {"errorMessage": m.json()["errorMessage"].replace(
                        job_id(missing), job_id(url))}
                    assert body == same
                assert job_id(url) not in listed(other)
        # Untouched for its owner.
        assert c.get(finished + "/result").json() == {"result": 4}
        assert c.get(running).status_code == 202
    finally:
        assert c.delete(running).json() == DELETED


# -- 7. restarts -------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGTERM twice", "kill-9"])
def test_restart_keeps_finished_jobs_fails_the_running_one_and_runs_the_waiting_ones(
        make_server: Callable[..., EpeServer], stop: str) -> None:
    # SIGTERM: the sleeper outlasts the drain's grace (1 s) and is stopped; a second
    # SIGTERM ends a long grace at once; kill -9: the sleeper is found running when the
    # server starts again. Either way it ends FAILED, and the jobs that waited behind it
    # run after the restart (docs/deploy.md#restarting-without-losing-work).
    grace = "600" if stop == "SIGTERM twice" else "1"
    srv = make_server(EPE_JOB_CONCURRENCY_LOW="1", EPE_SHUTDOWN_GRACE=grace)
    user, password = srv.add_user()
    with srv.client(user, password) as c:
        finished = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 13}'})
        assert result(c, finished).json() == {"result": 169}
        failed = submit(c, f"{API}/do-eval", {"script": FAILING})
        failed_answer = result(c, failed)
        assert failed_answer.status_code == 400
        running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(c, running, "RUNNING")
        pending = [submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": f'{{"n": {n}}}'})
                   for n in (3, 4)]
        assert {status_of(c, url) for url in pending} == {"PENDING"}
        assert srv.proc is not None
        workers = children(srv.proc.pid)
        if stop == "SIGTERM twice":
            drain_then_stop_again(srv, c, running)
    srv.stop(signal.SIGKILL if stop == "kill-9" else signal.SIGTERM)
    old_url = srv.url
    try:
        srv.start()
        if stop != "kill-9":  # a clean stop takes its workers with it
            wait_for(lambda: not any(alive(p) for p in workers), 10)
        why = check_after_restart(srv, user, password, old_url, finished, failed, running,
                                  pending, failed_answer.json())
        assert ("second stop signal" in why) == (stop == "SIGTERM twice"), why
    finally:
        kill_survivors(workers)


def drain_then_stop_again(srv: EpeServer, c: httpx.Client, running: str) -> None:
    """A first SIGTERM with a sync run under way: the server drains. It is unready, refuses
    new runs and jobs (503, Retry-After), serves the rest, and the run finishes; the job
    still runs, for its grace is long. A second SIGTERM is the caller's."""
    def runs_started() -> int:
        return sum("epe.run: do_eval" in line for line in srv.output)

    started = runs_started()
    with ThreadPoolExecutor(1) as pool:
        under_way = pool.submit(c.post, f"{API}/do-eval", json={
            "script": "import time\ndef f():\n    time.sleep(1)\n    return 'rested'\n"})
        wait_for(lambda: runs_started() > started)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: c.get("/health/ready").status_code == 503)
        for r in (c.post(f"{API}/do-eval", json={"script": QUICK}),
                  c.post(f"{API}/do-eval", json={"script": QUICK, "asyncFlag": True})):
            assert_error(r, 503, 5003)
            assert int(r.headers["Retry-After"]) >= 1
        assert c.get(running).status_code == 202
        r = under_way.result(60)
        assert (r.status_code, r.json()) == (200, {"result": "rested"}), r.text
    assert srv.proc.poll() is None  # the job under way holds the server: its grace is long


def kill_survivors(pids: set[int]) -> None:
    """Workers of a server this test killed that outlived it (see the test below)."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def check_after_restart(srv: EpeServer, user: str, password: str, old_url: str,
                        finished: str, failed: str, running: str, pending: list[str],
                        failed_answer: dict[str, Any]) -> str:
    """Checks the jobs after a restart; why the running one failed."""
    assert srv.url  # a new port: every URL below is rebuilt from the job id
    base = f"{srv.url}{API}/jobs/"

    def moved(url: str) -> str:
        return base + job_id(url)

    with srv.client(user, password) as c:
        r = result(c, moved(finished))
        assert (r.status_code, r.json()) == (200, {"result": 169})
        r = result(c, moved(failed))
        assert (r.status_code, r.json()) == (400, failed_answer)
        r = result(c, moved(running))
        body = assert_error(r, 400, 1015)  # an error answer, not our bug (500)
        assert "server stopped" in body["errorMessage"], body
        for url, n in zip(pending, (3, 4), strict=True):
            r = result(c, moved(url))
            assert (r.status_code, r.json()) == (200, {"result": n * n})
        jobs = listed(c)
        assert {k: j["status"] for k, j in jobs.items()} == {
            job_id(finished): "FINISH", job_id(failed): "FAILED",
            job_id(running): "FAILED", **{job_id(url): "FINISH" for url in pending}}
        # The job that was running was not re-run behind the user's back.
        assert not [line for line in srv.output if f"job {job_id(running)} runs" in line]
        # The result files were written whole: no temporary file is left over.
        assert not list((srv.data_dir / "jobs").rglob("*.tmp"))
        # And the server takes new work.
        url = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 2}'})
        assert url.startswith(base) and not url.startswith(old_url)
        assert result(c, url).json() == {"result": 4}
        return str(body["errorMessage"])


def test_kill_9_leaves_no_user_code_running(make_server: Callable[..., EpeServer]) -> None:
    """A job reported FAILED after a restart must not still be running: its worker may
    not outlive the server that was killed."""
    srv = make_server()
    assert srv.proc is not None
    _user, c = srv.new_client()
    with c:
        url = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(c, url, "RUNNING")
    # A job is RUNNING once it holds a slot; its user's workers are forked just after.
    # The spares waiting to be someone's worker must go with the server too.
    workers = wait_for(lambda: children(srv.proc.pid), 30)
    workers |= wait_for(lambda: spares(srv.proc.pid), 30)
    srv.stop(signal.SIGKILL)
    try:
        srv.start()
        survivors = set()
        try:
            wait_for(lambda: not any(alive(p) for p in workers), 5)
        except AssertionError:
            survivors = {p for p in workers if alive(p)}
        assert not survivors, (f"workers of the killed server still running: {survivors} "
                               "(one of them runs the job now reported FAILED)")
    finally:
        kill_survivors(workers)  # started by this test's server: don't leave them behind
