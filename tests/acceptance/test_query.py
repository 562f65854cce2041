"""POST /query (docs/tables.md): read-only rows as the caller sees them, on both
backends of users' tables (identifiers quoted: PostgreSQL folds unquoted ones)."""

from __future__ import annotations

import httpx
import pyarrow as pa
import pytest

from tests.serverproc import API, EpeServer

CSV = "ID,NAME,SCORE\n1,a,0.5\n2,b,\n3,c,2.5\n"


@pytest.fixture(scope="module")
def owner(data_server: EpeServer) -> httpx.Client:
    _user, client = data_server.new_client()
    r = client.put(f"{API}/tables/T", content=CSV, headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    return client


def test_rows_come_back_as_json_records(owner: httpx.Client) -> None:
    r = owner.post(f"{API}/query", json={"input": 'select * from "T" order by "ID"'})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": [{"ID": 1, "NAME": "a", "SCORE": 0.5},
                                   {"ID": 2, "NAME": "b", "SCORE": None},
                                   {"ID": 3, "NAME": "c", "SCORE": 2.5}]}


def test_rows_come_back_as_an_arrow_stream_when_asked(owner: httpx.Client) -> None:
    r = owner.post(f"{API}/query", json={"input": 'select "ID", "SCORE" from "T" order by "ID"'},
                   headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.apache.arrow.stream")
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column_names == ["ID", "SCORE"]
    assert table.column("ID").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("sql", [
    'drop table "T"', "insert into \"T\" values (4, 'd', 1)", 'delete from "T"',
    'create table "T2" as select * from "T"', "select * from read_csv('/etc/passwd')",
    'select 1; select 2', 'select 1; drop table "T"', 'copy "T" to stdout',
    "copy \"T\" to '/tmp/t.csv'", "select pg_read_file('/etc/passwd')",
])
def test_only_one_read_only_query_is_accepted(owner: httpx.Client, sql: str) -> None:
    r = owner.post(f"{API}/query", json={"input": sql})
    assert r.status_code == 400, r.text
    assert set(r.json()) >= {"errorCode", "errorMessage"}
    still = owner.post(f"{API}/query", json={"input": 'select count(*) AS "N" from "T"'})
    assert still.json() == {"result": [{"N": 3}]}


def test_another_user_does_not_see_the_table(data_server: EpeServer,
                                             owner: httpx.Client) -> None:
    _other, client = data_server.new_client()
    r = client.post(f"{API}/query", json={"input": 'select * from "T"'})
    assert r.status_code == 400
    assert "T" in r.json()["errorMessage"]


def test_a_missing_input_is_a_400(owner: httpx.Client) -> None:
    r = owner.post(f"{API}/query", json={})
    assert r.status_code == 400
