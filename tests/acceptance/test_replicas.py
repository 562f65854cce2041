"""Several ``epe serve`` on one PostgreSQL database are one service (docs/deploy.md):
tokens, revokes and user deletions, scripts, grants, datastores and jobs are shared;
a burst submitted to one replica is partly run by the other; a replica killed with
``kill -9`` leaves no job hung, and the jobs that waited on it run on the other; racing
writes through both answer 201/409, never 500.
Each replica has a data folder of its own, as on separate machines.

Nothing here asserts on elapsed time. "Within one second" is checked as: one second
after the change, the other replica refuses (its caches keep an answer for half a
second, docs/deploy.md); sleeping longer under load only makes that more certain."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_jobs import (
    DELETED,
    QUICK,
    SLEEPER,
    alive,
    assert_gone,
    children,
    job_id,
    kill_survivors,
    listed,
    result,
    status_of,
    submit,
    wait_status,
)
from tests.pgserver import PostgresServer, on_postgresql_data
from tests.serverproc import (
    API,
    TOKEN_URL,
    EpeServer,
    assert_error,
    put_table,
    run_cli,
    unique_name,
    wait_for,
)

USERS = "/omlusers/api/v1/users"
# Short leases and polls keep the tests quick; they are settings (docs/settings.md).
REPLICA_ENV = {"EPE_JOB_LEASE": "3", "EPE_JOB_POLL_INTERVAL": "0.2",
               "EPE_JOB_CONCURRENCY_LOW": "1"}


def start_replicas(url: str, root: Path, n: int = 2, **env: str) -> list[EpeServer]:
    """``n`` servers on the database ``url``, each with a data folder of its own."""
    replicas = [EpeServer(root / f"replica{i}", {"EPE_METADATA_URL": url, **REPLICA_ENV,
                                                 **env}) for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda r: r.start(), replicas))


@pytest.fixture(scope="module")
def replicas(postgres: PostgresServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EpeServer]]:
    started = start_replicas(postgres.new_database(migrated=True),
                             tmp_path_factory.mktemp("replicas"))
    yield started
    for replica in started:
        replica.stop()


@pytest.fixture
def user(replicas: list[EpeServer]) -> tuple[str, str]:
    return replicas[0].add_user()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(replica: EpeServer, token: str) -> httpx.Client:
    return replica.http(headers=bearer(token))


def ran_here(replica: EpeServer, job: str) -> bool:
    """The replica's log says it ran ``job``."""
    return any(f"job {job} runs here" in line for line in replica.output)


# -- identity: tokens, revokes, deletions ---------------------------------------------


def test_a_token_from_one_replica_works_on_the_other(replicas: list[EpeServer],
                                                      user: tuple[str, str]) -> None:
    a, b = replicas
    token = a.token(*user)
    with client(b, token) as on_b:
        assert on_b.get(f"{API}/scripts").status_code == 200
        r = on_b.post(TOKEN_URL, json={"grant_type": "refresh_token", "refresh_token": token})
        assert r.status_code == 200, r.text
    with client(a, r.json()["accessToken"]) as on_a:  # refreshed on B, used on A
        assert on_a.get(f"{API}/scripts").status_code == 200


def test_a_revoke_on_one_replica_holds_on_the_other_within_a_second(
        replicas: list[EpeServer], user: tuple[str, str]) -> None:
    a, b = replicas
    token = a.token(*user)
    with client(a, token) as on_a, client(b, token) as on_b:
        assert on_b.get(f"{API}/scripts").status_code == 200  # B has it cached as good
        assert on_a.post(TOKEN_URL + "/revoke").json() == {"status": "ok"}
        time.sleep(1.0)
        assert_error(on_b.get(f"{API}/scripts"), 401)
        assert_error(on_b.post(TOKEN_URL, json={"grant_type": "refresh_token",
                                                 "refresh_token": token}), 401)


def test_a_user_deleted_on_one_replica_is_refused_on_the_other_within_a_second(
        replicas: list[EpeServer]) -> None:
    a, b = replicas
    admin = a.add_user(admin=True)
    doomed = a.add_user()
    token = a.token(*doomed)
    with client(b, token) as on_b, client(a, a.token(*admin)) as admin_on_a:
        assert on_b.get(f"{API}/scripts").status_code == 200
        assert admin_on_a.delete(f"{USERS}/{doomed[0]}").status_code == 200
        time.sleep(1.0)
        assert_error(on_b.get(f"{API}/scripts"), 401)
        assert_error(b.http().post(TOKEN_URL, json={
            "grant_type": "password", "username": doomed[0], "password": doomed[1]}), 401)


# -- scripts, grants, datastores --------------------------------------------------------


def test_scripts_grants_and_datastores_are_shared(replicas: list[EpeServer]) -> None:
    a, b = replicas
    owner, friend = a.add_user(), a.add_user()
    with client(a, a.token(*owner)) as owner_a, client(b, b.token(*owner)) as owner_b, \
            client(b, b.token(*friend)) as friend_b:
        r = owner_a.post(f"{API}/scripts", json={
            "name": "saver", "script": "def f(n):\n    import oml\n"
            "    oml.ds.save({'n': n}, 'box', grantable=True, overwrite=True)\n    return n\n"})
        assert r.status_code == 201, r.text
        r = owner_b.post(f"{API}/do-eval/saver", json={"parameters": '{"n": 41}'})
        assert r.json() == {"result": 41}  # saved through A, run on B
        assert owner_a.post(f"{API}/scripts/saver/grants",
                            json={"user": friend[0]}).status_code == 200
        assert owner_a.post(f"{API}/datastores/box/grants",
                            json={"user": friend[0]}).status_code == 200
        loader = ("def g(who):\n    import oml\n"
                  "    return oml.ds.load('box', owner=who, to_globals=False)['n']\n")
        r = friend_b.post(f"{API}/do-eval", json={"script": loader,
                                                  "parameters": json.dumps({"who": owner[0]})})
        assert r.json() == {"result": 41}, r.text  # a datastore saved on B, granted on A
        r = friend_b.post(f"{API}/do-eval/saver/{owner[0]}", json={"parameters": '{"n": 1}'})
        assert r.status_code == 200, r.text  # a grant made on A, honoured on B


# -- jobs -----------------------------------------------------------------------------------


def test_a_job_submitted_on_one_is_polled_fetched_and_deleted_on_the_other(
        replicas: list[EpeServer], user: tuple[str, str]) -> None:
    a, b = replicas
    token = a.token(*user)
    with client(a, token) as on_a, client(b, token) as on_b:
        url = submit(on_a, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 7}'})
        on_b_url = b.url + url[len(a.url):]
        r = result(on_b, on_b_url)
        assert (r.status_code, r.json()) == (200, {"result": 49})
        assert on_b.get(on_b_url + "/log").status_code == 200
        assert listed(on_b)[job_id(url)]["status"] == "FINISH"

        sleeping = submit(on_a, f"{API}/do-eval", {"script": SLEEPER})
        sleeping_b = b.url + sleeping[len(a.url):]
        wait_status(on_b, sleeping_b, "RUNNING")
        runner = wait_for(lambda: next((r for r in replicas if ran_here(r, job_id(sleeping))),
                                       None))
        assert runner.proc is not None
        workers = children(runner.proc.pid)
        assert on_b.delete(sleeping_b).json() == DELETED
        assert_gone(on_a, sleeping)
        assert_gone(on_b, sleeping_b)
        # Its worker is stopped (by the replica running it, at its next heartbeat) and
        # replaced: that replica takes new work.
        wait_for(lambda: not all(alive(p) for p in workers), 30)
        again = submit(on_a, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 3}'})
        assert result(on_a, again).json() == {"result": 9}


def test_a_burst_submitted_to_one_replica_is_partly_run_by_the_other(
        replicas: list[EpeServer], user: tuple[str, str]) -> None:
    a, b = replicas
    source = "import time\ndef f(n):\n    time.sleep(0.3)\n    return n * n\n"
    with client(a, a.token(*user)) as on_a:
        urls = {n: submit(on_a, f"{API}/do-eval", {"script": source,
                                                     "parameters": json.dumps({"n": n})})
                for n in range(12)}
        for n, url in urls.items():
            r = result(on_a, url, timeout=120)
            assert (r.status_code, r.json()) == (200, {"result": n * n})
    ids = [job_id(u) for u in urls.values()]
    by_b = [i for i in ids if ran_here(b, i)]
    by_a = [i for i in ids if ran_here(a, i)]
    assert by_b, "the idle replica ran none of the burst"
    assert sorted(by_a + by_b) == sorted(ids)  # each job ran once, on one replica


def test_racing_writes_through_both_replicas_answer_201_or_409(
        replicas: list[EpeServer]) -> None:
    a = replicas[0]
    admin, writer = a.add_user(admin=True), a.add_user()
    clients = [client(r, r.token(*who)) for r in replicas for who in (admin, writer)]
    admin_clients, writer_clients = clients[0::2], clients[1::2]
    script, newcomer = unique_name("s"), unique_name("NEW")
    start = threading.Barrier(8)

    def race(requests: list[Callable[[], httpx.Response]]) -> list[int]:
        def one(send: Callable[[], httpx.Response]) -> int:
            start.wait()
            return send().status_code
        with ThreadPoolExecutor(8) as pool:
            return sorted(pool.map(one, requests))

    try:
        codes = race([lambda c=c: c.post(f"{API}/scripts", json={"name": script,
                                                                 "script": QUICK})
                      for c in writer_clients * 4])
        assert codes == [201] + [409] * 7
        codes = race([lambda c=c: c.post(f"{API}/scripts", json={
            "name": script, "script": QUICK, "overwrite": True}) for c in writer_clients * 4])
        assert codes == [201] * 8
        codes = race([lambda c=c: c.post(USERS, json={"username": newcomer,
                                                      "password": "pw-Secret1"})
                      for c in admin_clients * 4])
        assert codes == [201] + [409] * 7
        codes = race([lambda c=c: c.post(f"{API}/scripts/{script}/grants",
                                         json={"user": newcomer}) for c in writer_clients * 4])
        assert codes == [200] * 8
        append = ("def f(i):\n    import oml\n"
                  "    oml.ds.save({f'o{i}': i}, 'appended', append=True)\n    return i\n")
        codes = race([lambda c=c, i=i: c.post(f"{API}/do-eval", json={
            "script": append, "parameters": json.dumps({"i": i})})
            for i, c in enumerate(writer_clients * 4)])
        assert codes == [200] * 8
        r = writer_clients[0].get(f"{API}/datastores/appended")
        assert r.status_code == 200, r.text
        assert sorted(o["name"] for o in r.json()["result"]["objects"]) == [
            f"o{i}" for i in range(8)], r.json()
    finally:
        for c in clients:
            c.close()


# -- a replica dies -------------------------------------------------------------------------


def test_kill_9_of_the_replica_running_a_job_fails_it_and_its_waiting_job_runs_elsewhere(
        postgres: PostgresServer, tmp_path: Path) -> None:
    pair = start_replicas(postgres.new_database(migrated=True), tmp_path)
    workers: set[int] = set()
    try:
        user = pair[0].add_user()
        tokens = [r.token(*user) for r in pair]
        with client(pair[0], tokens[0]) as on_a:
            url = submit(on_a, f"{API}/do-eval", {"script": SLEEPER})
            wait_status(on_a, url, "RUNNING")
        victim = wait_for(lambda: next((r for r in pair if ran_here(r, job_id(url))), None))
        survivor = pair[1] if victim is pair[0] else pair[0]
        # Both busy (one job at a time each): a job accepted by the victim waits there.
        with client(survivor, tokens[pair.index(survivor)]) as on_s, \
                client(victim, tokens[pair.index(victim)]) as on_v:
            busy = submit(on_s, f"{API}/do-eval", {"script": SLEEPER})
            wait_for(lambda: ran_here(survivor, job_id(busy)))
            waiting = submit(on_v, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 6}'})
            assert status_of(on_v, waiting) == "PENDING"
        assert victim.proc is not None
        workers = children(victim.proc.pid)
        victim.stop(signal.SIGKILL)
        with client(survivor, tokens[pair.index(survivor)]) as c:
            there = survivor.url + url[len(pair[0].url):]
            wait_for(lambda: status_of(c, there) == "FAILED", 60, interval=0.2)
            body = assert_error(c.get(there + "/result"), 400)
            assert "server stopped" in body["errorMessage"], body
            assert c.get(there).status_code == 302
            # The job that waited on the victim had not started: it is not lost, but run
            # by the survivor once it has room.
            waited = survivor.url + waiting[len(victim.url):]
            assert status_of(c, waited) == "PENDING"
            assert c.delete(busy).json() == DELETED
            assert result(c, waited).json() == {"result": 36}
            assert ran_here(survivor, job_id(waiting))
            # The survivor serves on, and has its capacity.
            fresh = submit(c, f"{API}/do-eval", {"script": QUICK, "parameters": '{"n": 5}'})
            assert result(c, fresh).json() == {"result": 25}
        assert any("marked FAILED" in line for line in survivor.output), survivor.output
    finally:
        for replica in pair:
            replica.stop()
        kill_survivors(workers)


# -- starting with a URL that cannot serve ----------------------------------------------------


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["user", "add", "X",
                                                                 "--password-stdin"],
                                     ["demo"]])
def test_an_unreachable_database_is_one_line_at_start(command: list[str],
                                                     tmp_path: Path) -> None:
    from tests.pgserver import free_port

    url = f"postgresql://epe:hidden-pw@127.0.0.1:{free_port()}/epe"
    done = run_cli(*command, "--data-dir", str(tmp_path), stdin="pw\n", check=False,
                   env={"EPE_METADATA_URL": url})
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr + done.stdout
    assert re.fullmatch(r"error: cannot open the metadata database \S+: .+\n", done.stderr), \
        done.stderr
    assert "hidden-pw" not in done.stderr


def test_demo_and_user_add_write_to_the_shared_database(
        replicas: list[EpeServer], tmp_path: Path) -> None:
    a, b = replicas
    env = {**a.env, "EPE_DEMO_PASSWORD": "demo-Secret1"}
    run_cli("demo", "--data-dir", str(tmp_path / "demo"), env=env)
    with client(b, b.token("OMLUSER", "demo-Secret1")) as on_b:
        r = on_b.post(f"{API}/do-eval/hello_world")
        assert r.json() == {"result": "Hello World!"}  # a demo script, stored in PostgreSQL
        # Tables are each replica's own (DuckDB in its data folder): IRIS is where demo ran.
        assert_error(on_b.get(f"{API}/tables/IRIS"), 404)



def test_a_job_that_reads_tables_runs_where_they_are(replicas: list[EpeServer],
                                                      user: tuple[str, str]) -> None:
    # Tables are each replica's own (DuckDB): a job reading them waits for the replica
    # that accepted it, even while the other is idle.
    a, b = replicas
    with client(a, a.token(*user)) as on_a:
        put_table(on_a, "NUMS", "X\n1\n2\n3\n")
        busy = submit(on_a, f"{API}/do-eval", {"script": SLEEPER})
        wait_status(on_a, busy, "RUNNING")
        # A had a free slot, so it started the job it accepted at once: it is busy now.
        wait_for(lambda: ran_here(a, job_id(busy)))
        reading = submit(on_a, f"{API}/table-apply", {
            "script": "def f(d):\n    return int(d.sum())\n", "input": "select * from NUMS"})
        assert status_of(on_a, reading) == "PENDING"
        time.sleep(1.0)  # several of B's polls: it must leave the job alone
        assert status_of(on_a, reading) == "PENDING"
        assert on_a.delete(busy).json() == DELETED
        assert result(on_a, reading).json() == {"result": 6}
        assert ran_here(a, job_id(reading)) and not ran_here(b, job_id(reading))


@pytest.fixture(scope="module")
def pg_replicas(postgres: PostgresServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EpeServer]]:
    """Two replicas sharing users' tables too: one PostgreSQL database of tables (and
    its roles) beside the shared metadata database."""
    started = start_replicas(postgres.new_database(migrated=True),
                             tmp_path_factory.mktemp("pg-replicas"),
                             **on_postgresql_data(postgres))
    yield started
    for replica in started:
        replica.stop()


def test_tables_in_postgresql_are_every_replicas_and_so_are_jobs_reading_them(
        pg_replicas: list[EpeServer]) -> None:
    a, b = pg_replicas
    user = a.add_user()  # made through A: its database role too
    total = {"script": "def f(d):\n    return int(d.sum())\n",
             "input": "select * from NUMS"}
    with client(a, a.token(*user)) as on_a, client(b, b.token(*user)) as on_b:
        put_table(on_a, "NUMS", "X\n1\n2\n3\n")
        assert [t["name"] for t in on_b.get(f"{API}/tables").json()["result"]] == ["NUMS"]
        r = on_b.post(f"{API}/table-apply", json=total)  # B logs in as the role A made
        assert r.status_code == 200, r.text
        assert r.json() == {"result": 6}
        # A is busy (one job at a time): the job reading tables it accepts is B's to run.
        busy = submit(on_a, f"{API}/do-eval", {"script": SLEEPER})
        wait_for(lambda: ran_here(a, job_id(busy)))
        reading = submit(on_a, f"{API}/table-apply", total)
        assert result(on_a, reading).json() == {"result": 6}
        assert ran_here(b, job_id(reading)) and not ran_here(a, job_id(reading))
        assert on_a.delete(busy).json() == DELETED
        # Dropped through B: gone for A.
        assert on_b.delete(f"{API}/tables/NUMS").status_code in (200, 204)
        assert_error(on_a.post(f"{API}/table-apply", json=total), 400)


@pytest.mark.parametrize("url", ["mysql://epe@localhost/epe", "postgresql://epe@localhost/"])
def test_a_url_naming_no_usable_database_is_one_line_at_start(url: str, tmp_path: Path) -> None:
    done = run_cli("serve", "--data-dir", str(tmp_path), "--port", "0", check=False,
                   env={"EPE_METADATA_URL": url})
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr + done.stdout
    assert re.fullmatch(r"error: the metadata URL .+ names .+\n", done.stderr), done.stderr
