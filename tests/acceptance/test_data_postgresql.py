"""What is PostgreSQL's own when users' tables are kept there (docs/tables.md#postgresql):
each user's role and schema made and dropped with the user, tables granted by plain
SQL read by the role they were granted to and refused to another, ``--db-role``
binding, the role as a boundary (a query cannot switch to another role), names as
PostgreSQL's rules say, a query past its time cancelled by the database, and the
database stopped mid-service (a 503 with ``Retry-After`` for those requests, the rest
served, and everything again once it is back), and users' roles logging in with their
passwords.

The shared ``pg_data_server`` for most; the faults stop a PostgreSQL server of their
own.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.pgserver import PostgresServer, binaries, on_postgresql_data
from tests.serverproc import API, EpeServer, assert_error, run_cli, unique_name, wait_for

USERS_API = "/omlusers/api/v1/users"
_schemas = itertools.count(1)


def role_of(srv: EpeServer, user: str) -> str:
    return srv.env["EPE_DATA_ROLE_PREFIX"] + user.lower()


def sql(srv: EpeServer, *statements: str) -> list[Any]:
    """Run ``statements`` as the database's superuser; the last one's rows, if any."""
    with psycopg.connect(srv.env["EPE_DATA_URL"], autocommit=True) as conn:
        rows: list[Any] = []
        for statement in statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else []
        return rows


def query(c: httpx.Client, text: str) -> httpx.Response:
    return c.post(f"{API}/query", json={"input": text})


def rows(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()["result"]


@pytest.fixture(scope="module")
def srv(pg_data_server: EpeServer) -> EpeServer:
    return pg_data_server


@pytest.fixture(scope="module")
def ann(srv: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    user, c = srv.new_client()
    with c:
        yield user, c


@pytest.fixture(scope="module")
def bob(srv: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    user, c = srv.new_client()
    with c:
        yield user, c


def test_a_table_granted_by_sql_is_read_by_its_grantee_alone(
        srv: EpeServer, ann: tuple[str, httpx.Client], bob: tuple[str, httpx.Client]) -> None:
    schema = f"sales{next(_schemas)}"
    sql(srv, f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.orders (id int, amount float8)",
        f"INSERT INTO {schema}.orders VALUES (1, 2.5), (2, 4.0)",
        f"GRANT USAGE ON SCHEMA {schema} TO PUBLIC",
        f'GRANT SELECT ON {schema}.orders TO "{role_of(srv, ann[0])}"')
    text = f"select id, amount from {schema}.orders order by id"
    assert rows(query(ann[1], text)) == [{"id": 1, "amount": 2.5}, {"id": 2, "amount": 4.0}]
    script = "def f(d):\n    return float(d['amount'].sum())\n"
    r = ann[1].post(f"{API}/table-apply", json={
        "script": script, "input": text,
        "parameters": '{"oml_input_type": "pandas.DataFrame"}'})
    assert rows(r) == 6.5
    refused = assert_error(query(bob[1], text), 400, 1001)["errorMessage"]
    assert "permission denied for table orders" in refused


def test_names_follow_postgresqls_rules(srv: EpeServer, ann: tuple[str, httpx.Client]) -> None:
    user, c = ann
    odd = f'Odd "Näme" {next(_schemas)}'
    quoted = '"' + odd.replace('"', '""') + '"'
    sql(srv, f"CREATE TABLE public.{quoted} (\"Größe\" int)",
        f"INSERT INTO public.{quoted} VALUES (7)",
        f'GRANT SELECT ON public.{quoted} TO "{role_of(srv, user)}"')
    assert rows(query(c, f'select "Größe" from {quoted}')) == [{"Größe": 7}]  # via public
    # An upload keeps the case it was given: quoted, it is found; unquoted, it folds.
    assert c.put(f"{API}/tables/MixedCase", content=b"X\n1\n",
                 headers={"Content-Type": "text/csv"}).status_code == 201
    assert rows(query(c, 'select "X" from "MixedCase"')) == [{"X": 1}]
    message = assert_error(query(c, "select * from MixedCase"), 400, 1001)["errorMessage"]
    assert '"mixedcase" does not exist' in message and "lower case" in message
    # epe's own look-ups match ignoring case, as on DuckDB.
    assert c.get(f"{API}/tables/mixedcase").json()["result"]["name"] == "MixedCase"


def test_a_query_cannot_become_another_role(srv: EpeServer, ann: tuple[str, httpx.Client],
                                            bob: tuple[str, httpx.Client]) -> None:
    table = unique_name("PRIVATE")
    assert bob[1].put(f"{API}/tables/{table}", content=b"S\nbob\n",
                      headers={"Content-Type": "text/csv"}).status_code == 201
    bobs = f'{role_of(srv, bob[0])}."{table}"'
    for become in (f"set_config('role', '{role_of(srv, bob[0])}', true)",
                   "set_config('role', 'postgres', true)"):
        text = (f"select {become} as r, "
                f"query_to_xml('select * from {bobs}', true, false, '') as x")
        message = assert_error(query(ann[1], text), 400, 1001)["errorMessage"]
        assert "permission denied" in message, message


def test_users_roles_and_schemas_come_and_go_with_them(srv: EpeServer) -> None:
    _admin, admin = srv.new_client(admin=True)
    name = unique_name("GONE")
    role = role_of(srv, name)
    with admin:
        r = admin.post(USERS_API, json={"username": name, "password": "pw-Secret1"})
        assert r.status_code == 201, r.text
        assert sql(srv, f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == [(1,)]
        with srv.client(name.upper(), "pw-Secret1") as user:
            assert user.put(f"{API}/tables/T", content=b"X\n1\n",
                            headers={"Content-Type": "text/csv"}).status_code == 201
        assert sql(srv, "SELECT count(*) FROM pg_tables WHERE schemaname = "
                        f"'{role}'") == [(1,)]
        assert admin.delete(f"{USERS_API}/{name}").status_code == 200
    assert sql(srv, f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == [(0,)]
    assert sql(srv, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{role}'") == [(0,)]


def test_a_user_bound_to_an_existing_role_reads_what_it_may(srv: EpeServer) -> None:
    team = f"Analysts {next(_schemas)}"  # a role name that needs quoting
    schema = f"team{next(_schemas)}"
    sql(srv, f'CREATE ROLE "{team}" NOLOGIN', f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.kpi AS SELECT 42 AS v",
        f'GRANT USAGE ON SCHEMA {schema} TO "{team}"',
        f'GRANT SELECT ON {schema}.kpi TO "{team}"')
    name = unique_name("BOUND")
    run_cli("user", "add", name, "--data-dir", str(srv.data_dir), "--password-stdin",
            "--db-role", team, stdin="pw-Secret1\n", env=srv.env)
    with srv.client(name.upper(), "pw-Secret1") as c:
        assert rows(query(c, f"select v from {schema}.kpi")) == [{"v": 42}]
    _other, other_client = srv.new_client()
    with other_client:
        assert_error(query(other_client, f"select v from {schema}.kpi"), 400, 1001)
    # A role that is not there: a clear refusal, and no user made.
    missing = unique_name("NOROLE")
    done = run_cli("user", "add", missing, "--data-dir", str(srv.data_dir), "--password-stdin",
                   "--db-role", "no such role", stdin="pw-Secret1\n", env=srv.env, check=False)
    assert done.returncode != 0 and "no role 'no such role'" in done.stderr, done.stderr
    with srv.http() as anonymous:
        r = anonymous.post("/omlusers/api/oauth2/v1/token", json={
            "grant_type": "password", "username": missing, "password": "pw-Secret1"})
        assert r.status_code == 401, r.text


# -- the time limit and the database going away ----------------------------------------


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, to be stopped and started again."""
    bin_dir = binaries()
    assert bin_dir is not None
    pg = PostgresServer(bin_dir).start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def limited(own_postgres: PostgresServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    env = on_postgresql_data(own_postgres, {"EPE_QUERY_TIMEOUT": "3"})
    server = EpeServer(Path(tmp_path_factory.mktemp("epe-pg-faults")), env).start()
    yield server
    server.stop()


def active(srv: EpeServer, text: str) -> list[Any]:
    return sql(srv, "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                    f"'%{text}%' AND pid <> pg_backend_pid()")


def test_a_query_past_its_time_is_cancelled_by_the_database(limited: EpeServer) -> None:
    _user, c = limited.new_client()
    marker = f"pg_sleep(600 + {os.getpid()})"
    with c:
        message = assert_error(query(c, f"select {marker}"), 400, 1014)["errorMessage"]
        assert "query_timeout" in message
        assert wait_for(lambda: not active(limited, marker)) is True
        assert rows(query(c, 'select 1 as "N"')) == [{"N": 1}]


def test_the_database_stopped_mid_service(limited: EpeServer,
                                          own_postgres: PostgresServer) -> None:
    _user, c = limited.new_client()
    with c:
        assert rows(query(c, 'select 1 as "N"')) == [{"N": 1}]
        answers: list[httpx.Response] = []
        # Longer than the time limit: if the stop came too late, the answer says so (1014).
        slow = threading.Thread(target=lambda: answers.append(
            query(c, f"select pg_sleep(20 + {os.getpid()} * 0)")))
        slow.start()
        wait_for(lambda: active(limited, f"pg_sleep(20 + {os.getpid()}"))
        own_postgres.halt()
        try:
            slow.join(60)
            for r in (answers[0], query(c, 'select 1 as "N"'), c.get(f"{API}/tables")):
                assert_error(r, 503, 5003)
                assert int(r.headers["Retry-After"]) >= 1
            # Everything that does not read tables is served meanwhile.
            hello = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 7\n"})
            assert rows(hello) == 7
            assert c.get(f"{API}/scripts").status_code == 200
            assert limited.http().get("/health/ready").status_code == 503
        finally:
            own_postgres.resume()
        assert rows(query(c, 'select 1 as "N"')) == [{"N": 1}]
        assert limited.http().get("/health/ready").status_code == 200


def test_roles_log_in_with_their_passwords(limited: EpeServer,
                                           own_postgres: PostgresServer) -> None:
    own_postgres.require_passwords()
    user, c = limited.new_client()
    role = role_of(limited, user)
    with c:
        assert rows(query(c, 'select current_user as "u"')) == [{"u": role}]
        # As if another server had made the user again: a new password, which this
        # server has not read, and its connection as the role cut.
        book = f'"{limited.env["EPE_DATA_ROLE_PREFIX"]}_catalog".owners'
        sql(limited, f"ALTER ROLE \"{role}\" PASSWORD 'changed-elsewhere'",
            f"UPDATE {book} SET password = 'changed-elsewhere' WHERE owner = '{user}'",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        assert query(c, 'select 1 as "N"').status_code in (200, 503)  # the cut connection
        assert rows(query(c, 'select 1 as "N"')) == [{"N": 1}]
