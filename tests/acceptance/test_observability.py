"""What operators see, over HTTP from a real ``epe serve`` (docs/operations.md): the
Prometheus metrics and who may read them, the request id, JSON log lines, and
readiness. Metrics are compared as deltas of one scrape to the next; nothing here
asserts on elapsed time (``wait_for`` polls for a state)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error, put_table, wait_for

MakeServer = Callable[..., EpeServer]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DO_EVAL = f"{API}/do-eval"
RUN_ROUTE = "/oml/api/py-scripts/v2/do-eval"
OK = "def f(n=1):\n    return n * 2\n"
FAILING = "def f():\n    return 1 / 0\n"
SLEEPER = "def f():\n    import time\n    time.sleep(3600)\n"
COUNT = "def f(df):\n    return int(df.shape[0])\n"


def scrape(c: httpx.Client, path: str = "/metrics") -> Samples:
    r = c.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_move_with_runs_failures_timeouts_and_refusals(make_server: MakeServer) -> None:
    srv = make_server(EPE_JOB_QUEUE_LIMIT="1")
    _admin, a = srv.new_client(admin=True)
    _user, u = srv.new_client()
    put_table(u, "NUMS", "X\n1\n2\n3\n")
    before = scrape(a)

    assert u.post(DO_EVAL, json={"script": OK, "parameters": '{"n": 21}'}).json() == \
        {"result": 42}
    assert_error(u.post(DO_EVAL, json={"script": FAILING}), 400, 1011)
    assert_error(u.post(DO_EVAL, json={"script": SLEEPER, "timeout": 1}), 400, 1014)
    r = u.post(f"{API}/table-apply", json={"script": COUNT, "input": "SELECT * FROM NUMS"})
    assert r.json() == {"result": 3}
    quick = u.post(DO_EVAL, json={"script": OK, "asyncFlag": True})
    assert quick.status_code == 201, quick.text
    wait_for(lambda: u.get(quick.headers["Location"]).status_code == 302)
    job = u.post(DO_EVAL, json={"script": SLEEPER, "asyncFlag": True})
    assert job.status_code == 201, job.text
    assert_error(u.post(DO_EVAL, json={"script": OK, "asyncFlag": True}), 503, 5003)
    wait_for(lambda: value(scrape(a), "epe_jobs", state="RUNNING") == 1)
    after = scrape(a)

    runs = "epe_runs_total"
    assert delta(before, after, runs, operation="do_eval", mode="sync", outcome="ok") == 1
    assert delta(before, after, runs, operation="do_eval", mode="sync",
                 outcome="ScriptFailed") == 1
    assert delta(before, after, runs, operation="do_eval", mode="sync",
                 outcome="TimeLimitExceeded") == 1
    assert delta(before, after, runs, operation="table_apply", mode="sync", outcome="ok") == 1
    assert delta(before, after, "epe_run_duration_seconds_count", operation="do_eval",
                 mode="sync") == 3
    assert delta(before, after, "epe_run_invocations_sum", operation="do_eval") == 4  # 3 + job
    assert delta(before, after, "epe_run_input_rows_sum", operation="table_apply") == 3
    assert delta(before, after, "epe_run_input_seconds_count", operation="table_apply") == 1
    assert delta(before, after, "epe_run_output_bytes_sum", operation="do_eval") == \
        len("42") + len("2")  # the successful sync run's result, and the quick job's
    assert delta(before, after, "epe_workers_killed_total", reason="timeout") == 1
    assert delta(before, after, "epe_admission_refusals_total", reason="job_queue_full") == 1
    assert delta(before, after, "epe_jobs_submitted_total", kind="do_eval") == 2
    assert delta(before, after, "epe_jobs_ended_total", state="FINISH") == 1
    assert delta(before, after, runs, operation="do_eval", mode="async", outcome="ok") == 1
    assert delta(before, after, "epe_http_requests_total", method="POST", route=RUN_ROUTE,
                 status="200") == 1
    assert delta(before, after, "epe_http_requests_total", method="POST", route=RUN_ROUTE,
                 status="400") == 2
    assert delta(before, after, "epe_http_requests_total", method="POST", route=RUN_ROUTE,
                 status="503") == 1
    assert delta(before, after, "epe_http_request_duration_seconds_count", method="POST",
                 route=RUN_ROUTE) == 6  # the four above, and the jobs' submissions (201)

    # Deleting the running job stops it: it leaves the gauge, and its run ends cancelled.
    assert u.delete(job.headers["Location"]).status_code == 200
    wait_for(lambda: value(scrape(a), "epe_jobs", state="RUNNING") == 0)
    ended = scrape(a)
    assert delta(before, ended, runs, operation="do_eval", mode="async",
                 outcome="cancelled") == 1
    assert value(ended, "epe_workers", state="busy") == 0
    # Its worker was killed, and replaced: the pool's workers are all idle again.
    wait_for(lambda: value(scrape(a), "epe_workers", state="idle") >= 1)


def test_a_path_no_route_matches_is_one_series(server: EpeServer) -> None:
    _admin, a = server.new_client(admin=True)
    before = scrape(a)
    for path in ("/no/such/path", "/another/one"):
        assert_error(a.get(path), 404, 4004)
    after = scrape(a)
    assert delta(before, after, "epe_http_requests_total", method="GET", route="unmatched",
                 status="404") == 2
    assert not any("/no/such/path" in dict(labels).get("route", "") for _, labels in after)


def test_only_admins_read_the_metrics(server: EpeServer) -> None:
    _user, u = server.new_client()
    assert_error(u.get("/metrics"), 403, 3001)
    with server.http() as anonymous:
        assert_error(anonymous.get("/metrics"), 401, 2001)


def test_a_separate_metrics_address_needs_no_token(make_server: MakeServer) -> None:
    srv = make_server(EPE_METRICS_ADDRESS="127.0.0.1:0")
    line = wait_for(lambda: next((x for x in srv.output if "metrics on http://" in x), None))
    url = re.search(r"metrics on (http://[\d.:]+/metrics)", line)
    assert url is not None, line
    _user, u = srv.new_client()
    assert u.post(DO_EVAL, json={"script": OK}).json() == {"result": 2}
    with httpx.Client(timeout=60) as anonymous:
        samples = scrape(anonymous, url.group(1))
    assert value(samples, "epe_runs_total", operation="do_eval", mode="sync", outcome="ok") == 1
    assert_error(u.get("/metrics"), 403, 3001)  # the API's own port still asks for an admin


def test_metrics_are_kept_in_files_in_multiprocess_mode(make_server: MakeServer,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    srv = make_server(PROMETHEUS_MULTIPROC_DIR=str(folder))
    _admin, a = srv.new_client(admin=True)
    _user, u = srv.new_client()
    assert u.post(DO_EVAL, json={"script": OK}).json() == {"result": 2}
    samples = scrape(a)
    assert value(samples, "epe_runs_total", operation="do_eval", mode="sync", outcome="ok") == 1
    # The user's pool: one worker, forked for the first run, idle again (a pool grows
    # only when a run waits for a worker).
    wait_for(lambda: value(scrape(a), "epe_workers", state="idle") == 1)
    assert any(folder.glob("*.db"))  # what other processes' scrapes would sum


# -- request ids and logs --------------------------------------------------------------------


def test_the_request_id_is_echoed_or_made(server: EpeServer) -> None:
    _user, u = server.new_client()
    given = u.post(DO_EVAL, json={"script": OK}, headers={"X-Request-ID": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b"
    made = u.post(DO_EVAL, json={"script": OK})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    # One that could forge a log line is replaced; errors carry their id too.
    forged = u.post(DO_EVAL, json={"script": FAILING}, headers={"X-Request-ID": 'a" b'})
    assert forged.status_code == 400
    assert re.fullmatch(r"[0-9a-f]{16}", forged.headers["x-request-id"])
    with server.http() as anonymous:
        assert "x-request-id" in anonymous.get("/no/such/path").headers


def test_json_logs_parse_and_carry_the_request_and_job_ids(make_server: MakeServer) -> None:
    srv = make_server(EPE_LOG_FORMAT="json")
    user, password = srv.add_user(password="Pass-Word-Zq9")
    with srv.http() as c:
        r = c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                    "password": password}, headers={"X-Request-ID": "login-1"})
        token = r.json()["accessToken"]
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.post(DO_EVAL, json={"script": OK, "parameters": '{"n": "zebra-"}'},
                      headers={"X-Request-ID": "run-1"}).json() == {"result": "zebra-zebra-"}
        assert c.post(DO_EVAL, json={"script": FAILING},
                      headers={"X-Request-ID": "fail-1"}).status_code == 400
        job = c.post(DO_EVAL, json={"script": OK, "asyncFlag": True},
                     headers={"X-Request-ID": "job-1"})
        url = job.headers["Location"]
        wait_for(lambda: c.get(url).status_code == 302)
    during = len(srv.output)
    srv.stop()

    ready = next(i for i, line in enumerate(srv.output) if line.startswith("epe serving on"))
    # The two lines epe serve prints for people (where it serves, and its console) are
    # not log lines.
    lines = [json.loads(line) for line in srv.output
             if not line.startswith(("epe serving on", "epe console on"))]
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    # Everything logged while requests were answered says which request it belongs to.
    answering = [json.loads(line) for line in srv.output[ready + 1:during]
                 if not line.startswith("epe console on")]
    assert answering and all("requestId" in x for x in answering), answering
    by_request = {x["requestId"]: x for x in answering if x["logger"] == "epe.access"}
    assert by_request["login-1"]["status"] == 200
    assert by_request["run-1"]["route"] == RUN_ROUTE
    assert by_request["fail-1"]["status"] == 400
    job_lines = [x for x in lines if x.get("jobId") == url.rsplit("/", 1)[1]]
    assert job_lines and all(x["requestId"] == "job-1" for x in job_lines)
    everything = "".join(srv.output)
    for secret in (password, token, "zebra-"):
        assert secret not in everything


# -- health ----------------------------------------------------------------------------------


def test_liveness_is_cheap_and_open(server: EpeServer) -> None:
    with server.http() as anonymous:
        r = anonymous.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert isinstance(r.json()["tenantIsolation"], bool)


def test_readiness_names_each_part_and_is_503_when_one_cannot_serve(
        make_server: MakeServer) -> None:
    srv = make_server()
    with srv.http() as anonymous:
        ready = anonymous.get("/health/ready")
        assert ready.status_code == 200, ready.text
        body: dict[str, Any] = ready.json()
        assert body["status"] == "ready"
        assert {k: v["state"] for k, v in body["parts"].items()} == \
            {"store": "ok", "data": "ok", "executor": "ok"}
        # Pools are per user, started on first use: none yet, the fork server ready.
        executor = body["parts"]["executor"]
        assert (executor["pools"], executor["forkServers"]) == (0, 1), executor

        tables = srv.data_dir / "tables"
        shutil.move(tables, srv.data_dir / "tables.away")  # the volume went away
        try:
            down = assert_error(anonymous.get("/health/ready"), 503, 5004)
            assert down["status"] == "unready"
            assert {k: v["state"] for k, v in down["parts"].items()} == \
                {"store": "ok", "data": "unavailable", "executor": "ok"}
            assert "data" in down["errorMessage"]
        finally:
            shutil.move(srv.data_dir / "tables.away", tables)
        assert anonymous.get("/health/ready").status_code == 200


# -- environments ----------------------------------------------------------------------------


def test_an_environments_pool_is_counted_warm_and_its_changes_audited(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.acceptance.test_envs import IMPORTS_IT, create, make_wheel, run

    wheels = tmp_path_factory.mktemp("wheels")
    make_wheel(wheels, "epe_envtest_pkg", 42)
    parent = Path(tempfile.mkdtemp(prefix="epe-obs-envs-"))
    os.chmod(parent, 0o711)  # the worker user starts the environment's Python from here
    srv = EpeServer(parent / "data", {"EPE_ENV_WORKERS": "1",
                                      "EPE_ENV_IDLE_TIMEOUT": "1"}).start()
    try:
        admin_name, a = srv.new_client(admin=True)
        warm = value(scrape(a), "epe_pools_warm", kind="environment")
        assert create(a, "obsenv", packages=["epe_envtest_pkg"],
                      findLinks=str(wheels)).status_code == 200
        assert run(a, IMPORTS_IT, "obsenv").json() == {"result": 42}
        assert value(scrape(a), "epe_pools_warm", kind="environment") == warm + 1
        wait_for(lambda: value(scrape(a), "epe_pools_warm", kind="environment") == warm,
                 timeout=60)  # stopped when idle
        assert a.delete(f"{API}/envs/obsenv").status_code == 200
        changes = a.get("/omlusers/api/v1/audit", params={"kind": "env"}).json()["result"]
        assert [(e["action"], e["name"], e["user"], e["status"]) for e in changes["items"]] == [
            ("create", "obsenv", admin_name, "ok"), ("delete", "obsenv", admin_name, "ok")]
        assert changes["items"][0]["details"]["jobId"]
    finally:
        srv.stop()
        shutil.rmtree(parent, ignore_errors=True)
