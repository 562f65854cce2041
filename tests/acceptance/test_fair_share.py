"""Sharing one server fairly (docs/operations.md#sharing-the-server-fairly), on a real
``epe serve``: jobs start by fair share, each user's limits hold (running and waiting
jobs, storage) and an admin sets them, and every run leaves a usage record that matches
it.

Nothing here asserts on elapsed time: fair share is checked by what has ended when."""

from __future__ import annotations

import json
import re

import httpx
import orjson

from tests.acceptance.test_jobs import DELETED, SLEEPER, listed, result, submit, wait_status
from tests.acceptance.test_users import USERS
from tests.serverproc import API, EpeServer, assert_error, put_table, run_cli, wait_for

USAGE = "/omlusers/api/v1/usage"
NAP = "import time\ndef f(s):\n    time.sleep(s)\n    return s\n"


def limits(admin: httpx.Client, user: str, **values: int | None) -> dict[str, object]:
    r = admin.patch(f"{USERS}/{user}", json={"limits": values})
    assert r.status_code == 200, r.text
    shown: dict[str, object] = r.json()["result"]
    return shown


def nap(c: httpx.Client, seconds: float) -> str:
    return submit(c, f"{API}/do-eval", {"script": NAP,
                                         "parameters": json.dumps({"s": seconds})})


def unfinished(c: httpx.Client, urls: list[str]) -> list[str]:
    jobs = listed(c)
    return [u for u in urls if jobs[u.rsplit("/", 1)[1]]["status"] in ("PENDING", "RUNNING")]


# -- fair share -----------------------------------------------------------------------------


def test_one_job_waits_about_one_slot_behind_another_users_burst(server: EpeServer) -> None:
    _a, on_a = server.new_client()
    _b, on_b = server.new_client()
    with on_a, on_b:
        burst = [nap(on_a, 1.5) for _ in range(12)]  # two slots of LOW: 9 s first come
        wait_status(on_a, burst[0], "RUNNING")
        mine = nap(on_b, 0.3)
        wait_for(lambda: not unfinished(on_b, [mine]), 60)
        # It ran at the first free slot: before the third-to-last of the burst ended
        # (first come, first served would have run it after all twelve).
        assert len(unfinished(on_a, burst)) >= 3
        assert result(on_b, mine).json() == {"result": 0.3}
        for url in unfinished(on_a, burst):
            assert on_a.delete(url).json() == DELETED


# -- limits -----------------------------------------------------------------------------------


def test_an_admin_sets_a_users_limits_and_past_them_jobs_wait_or_get_429(
        server: EpeServer, admin: httpx.Client) -> None:
    user, c = server.new_client()
    with c:
        shown = limits(admin, user, runningJobs=1, waitingJobs=1)
        assert shown["limitsSet"] == ["runningJobs", "waitingJobs"]
        assert shown["limits"]["runningJobs"] == 1  # type: ignore[index]
        running = submit(c, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(c, running, "RUNNING")
        waiting = submit(c, f"{API}/do-eval", {"script": SLEEPER})  # LOW has a free slot
        r = c.post(f"{API}/do-eval", json={"script": SLEEPER, "asyncFlag": True})
        body = assert_error(r, 429, 4029)
        assert int(r.headers["Retry-After"]) >= 1
        assert "EPE_USER_WAITING_JOBS" in body["errorMessage"], body
        me = c.get(f"{USERS}/me").json()["result"]
        assert (me["usage"]["runningJobs"], me["usage"]["waitingJobs"]) == (1, 1)
        assert listed(c)[waiting.rsplit("/", 1)[1]]["status"] == "PENDING"
        # Back to the default: the waiting job takes the free slot.
        assert limits(admin, user, runningJobs=None)["limitsSet"] == ["waitingJobs"]
        wait_status(c, waiting, "RUNNING")
        for url in (running, waiting):
            assert c.delete(url).json() == DELETED


def test_limits_are_admins_to_set_and_checked(server: EpeServer, admin: httpx.Client) -> None:
    user, c = server.new_client()
    with c:
        assert_error(c.patch(f"{USERS}/{user}", json={"limits": {"storage": 1}}), 403, 3001)
        assert_error(c.get(f"{USERS}/TESTS_NOBODY"), 403, 3001)  # another user's account
        assert c.get(f"{USERS}/{user}").json()["result"]["username"] == user  # their own
    for name, bad in (("cpu", 1), ("memory", 1024), ("runningJobs", "2"),
                      ("waitingJobs", True)):
        r = admin.patch(f"{USERS}/{user}", json={"limits": {name: bad}})
        assert name in assert_error(r, 400, 1001)["errorMessage"]
    assert_error(admin.patch(f"{USERS}/NOSUCHUSER", json={"limits": {}}), 404, 4004)


def test_epe_user_limits_changes_them_while_the_server_runs(server: EpeServer,
                                                            admin: httpx.Client) -> None:
    user, _password = server.add_user()
    done = run_cli("user", "limits", user, "--data-dir", str(server.data_dir),
                   "--waiting-jobs", "7", "--storage", "default", env=server.env)
    assert re.search(r"^waitingJobs +7$", done.stdout, re.M), done.stdout
    assert "storage" in done.stdout and "(default)" in done.stdout
    # The server sees it once its short-lived copy of the user's limits expires.
    wait_for(lambda: admin.get(f"{USERS}/{user}").json()["result"]["limits"]["waitingJobs"]
             == 7, 10)


# -- storage ------------------------------------------------------------------------------------


BIG = "X,Y\n" + "".join(f"{i},{i * 2}\n" for i in range(4000))  # 64,000 bytes of Arrow
BLOB = ("def f():\n    import oml\n    oml.ds.save({'blob': b'x' * 60000}, 'box')\n"
        "    return 1\n")


def test_the_storage_quota_refuses_the_write_that_would_cross_it_and_keeps_the_rest(
        server: EpeServer, admin: httpx.Client) -> None:
    user, c = server.new_client()
    with c:
        limits(admin, user, storage=50_000)
        put_table(c, "SMALL", "X\n1\n2\n3\n")  # 24 bytes
        r = c.put(f"{API}/tables/BIG", content=BIG.encode(),
                  headers={"Content-Type": "text/csv"})
        body = assert_error(r, 413, 4113)
        assert (body["storageUsed"], body["storageQuota"]) == (24, 50_000), body
        assert "64000 bytes" in body["errorMessage"] and "50000" in body["errorMessage"]
        assert_error(c.get(f"{API}/tables/BIG"), 404)
        assert c.get(f"{API}/tables/SMALL").json()["result"]["rows"] == 3
        # A datastore saved from inside a function: the function fails, nothing is saved.
        body = assert_error(c.post(f"{API}/do-eval", json={"script": BLOB}), 400, 1011)
        assert "quota of 50000 bytes" in body["errorMessage"], body
        assert_error(c.get(f"{API}/datastores/box"), 404)
        # A job's result: the job fails with the refusal as its answer.
        url = submit(c, f"{API}/do-eval", {"script": "def f():\n    return 'y' * 60000\n"})
        assert_error(result(c, url), 413, 4113)
        me = c.get(f"{USERS}/me").json()["result"]["usage"]
        assert me["storageDetail"]["tables"] == 24 and me["storageDetail"]["datastores"] == 0
        assert me["storage"] == 24 + me["storageDetail"]["jobResults"]
        # Within the quota, the same writes are kept.
        limits(admin, user, storage=None)
        assert c.post(f"{API}/do-eval", json={"script": BLOB}).json() == {"result": 1}
        put_table(c, "BIG", BIG)
        me = c.get(f"{USERS}/me").json()["result"]["usage"]["storageDetail"]
        box = c.get(f"{API}/datastores/box").json()["result"]["size"]
        assert (me["tables"], me["datastores"]) == (24 + 64_000, box) and box > 60_000
        assert c.delete(f"{API}/tables/BIG").status_code == 200
        assert c.get(f"{USERS}/me").json()["result"]["usage"]["storageDetail"]["tables"] == 24


# -- usage --------------------------------------------------------------------------------------


def usage(c: httpx.Client, **params: str) -> list[dict[str, object]]:
    r = c.get(USAGE, params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_usage_rows_match_the_runs_made(server: EpeServer, admin: httpx.Client) -> None:
    user, c = server.new_client()
    with c:
        assert c.post(f"{API}/scripts", json={"name": "sq", "script": "def f(n):\n"
                                              "    return n * n\n"}).status_code == 201
        put_table(c, "NUMS", "X\n1\n2\n3\n4\n5\n")
        assert c.post(f"{API}/do-eval/sq", json={"parameters": '{"n": 3}'}).json() == {
            "result": 9}
        assert_error(c.post(f"{API}/do-eval", json={"script": "def f():\n    1 / 0\n"}), 400)
        r = c.post(f"{API}/table-apply", json={"script": "def f(d):\n    return len(d)\n",
                                              "input": "select * from NUMS",
                                              "service": "MEDIUM"})
        assert r.json() == {"result": 5}
        job = submit(c, f"{API}/do-eval/sq", {"parameters": '{"n": 4}'})
        assert result(c, job).json() == {"result": 16}
        runs = usage(c)
        assert [(u["operation"], u["script"], u["service"], u["mode"], u["outcome"])
                for u in runs] == [
            ("do_eval", f"{user}.sq", "LOW", "async", "ok"),
            ("table_apply", None, "MEDIUM", "sync", "ok"),
            ("do_eval", None, "LOW", "sync", "ScriptFailed"),
            ("do_eval", f"{user}.sq", "LOW", "sync", "ok")]
        assert all(u["user"] == user for u in runs)
        assert runs[0]["jobId"] == job.rsplit("/", 1)[1]
        assert runs[1]["inputRows"] == 5
        assert 40 <= int(str(runs[1]["inputBytes"])) < 100  # five int64 values, in Arrow
        assert [u["outputBytes"] for u in runs] == [2, 1, 0, 1]
        assert all(float(str(u["wallSeconds"])) > 0 for u in runs)
        scripts = {u["script"]: (u["runs"], u["failed"]) for u in usage(c, by="script")}
        assert scripts == {f"{user}.sq": (2, 0), None: (2, 1)}
        [day] = usage(c, by="day")
        assert (day["runs"], day["failed"], day["inputRows"]) == (4, 1, 5)
        # Users see their own; admins, anyone's.
        assert_error(c.get(USAGE, params={"user": "SOMEONE_ELSE"}), 403, 3001)
        assert usage(admin, user=user) == runs
        assert_error(c.get(USAGE, params={"by": "week"}), 400, 1001)
    env = {**server.env, "EPE_URL": server.url, "EPE_USER": user, "EPE_PASSWORD": "pw-Secret1"}
    printed = orjson.loads(run_cli("usage", "--json", "--limit", "2", env=env).stdout)
    assert printed == runs[:2]


def test_a_cpu_burn_records_its_cpu_seconds(server: EpeServer) -> None:
    _user, c = server.new_client()
    burn = ("import time\ndef f():\n    end = time.process_time() + 2\n"
            "    while time.process_time() < end:\n        pass\n    return 1\n")
    with c:
        assert c.post(f"{API}/do-eval", json={"script": burn}).json() == {"result": 1}
        [run] = usage(c)
    assert float(str(run["cpuSeconds"])) >= 1.8, run
    assert int(str(run["peakMemory"])) > 0, run
