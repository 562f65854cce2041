"""User tables over HTTP (docs/tables.md, and ``epe demo``): upload CSV, Parquet and
JSON, list, describe, delete, overwrite, the error bodies, and isolation
between users; on both backends of users' tables (``data_server``)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.serverproc import API, API1, EpeServer, run_cli, unique_name

CSV = {"Content-Type": "text/csv"}
PARQUET = {"Content-Type": "application/vnd.apache.parquet"}


@pytest.fixture(scope="module")
def client(data_server: EpeServer) -> Iterator[httpx.Client]:
    """One user for the tests that need no clean slate: each uses tables of its own."""
    _user, c = data_server.new_client()
    with c:
        yield c


def names(client: httpx.Client) -> list[str]:
    return [t["name"] for t in client.get(f"{API}/tables").json()["result"]]


def assert_error(r: httpx.Response, status: int, code: int, text: str = "") -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"errorCode", "errorMessage"} and body["errorCode"] == code, body
    assert text in body["errorMessage"], body


def columns(info: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in info["columns"]}


def test_csv_upload_list_describe_delete(data_server: EpeServer) -> None:
    _user, client = data_server.new_client()
    with client:
        r = client.put(f"{API}/tables/SALES", content=b"REGION,AMOUNT\neast,1.5\nwest,2\n",
                       headers=CSV)
        assert r.status_code == 201, r.text
        info = r.json()["result"]
        assert (info["name"], info["rows"]) == ("SALES", 2)
        assert columns(info) == {"REGION": "VARCHAR", "AMOUNT": "DOUBLE"}
        assert client.get(f"{API}/tables").json() == {"result": [info]}
        assert client.get(f"{API}/tables/sales").json() == {"result": info}
        r = client.delete(f"{API}/tables/SALES")
        assert r.status_code == 200, r.text
        assert client.get(f"{API}/tables").json() == {"result": []}
        assert_error(client.get(f"{API}/tables/SALES"), 404, 4004, "SALES")
        assert_error(client.delete(f"{API}/tables/SALES"), 404, 4004)


def test_parquet_upload_keeps_types(client: httpx.Client, data_server: EpeServer) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"I": pa.array([1, 2], pa.int16()), "TS": pa.array(
        [0, 1], pa.timestamp("ms"))}), sink)
    r = client.put(f"{API}/tables/{unique_name('P')}", content=sink.getvalue(),
                   headers=PARQUET)
    assert r.status_code == 201, r.text
    # PostgreSQL keeps every timestamp in microseconds.
    ts = "TIMESTAMP" if "EPE_DATA_URL" in data_server.env else "TIMESTAMP_MS"
    assert columns(r.json()["result"]) == {"I": "SMALLINT", "TS": ts}


def test_json_records_upload(client: httpx.Client) -> None:
    name = unique_name("J")
    r = client.put(f"{API}/tables/{name}", json=[{"A": 1, "B": "x"}, {"A": 2, "B": None}])
    assert r.status_code == 201, r.text
    assert r.json()["result"] == {"name": name, "rows": 2, "columns": [
        {"name": "A", "type": "BIGINT"}, {"name": "B", "type": "VARCHAR"}]}


def test_v1_answers_too(client: httpx.Client) -> None:
    v1, name = API1, unique_name("T")
    assert client.put(f"{v1}/tables/{name}", content=b"X\n1\n", headers=CSV).status_code == 201
    assert client.get(f"{API}/tables/{name}").json()["result"]["rows"] == 1


def test_existing_table_needs_overwrite(client: httpx.Client) -> None:
    url = f"{API}/tables/{unique_name('T')}"
    assert client.put(url, content=b"X\n1\n", headers=CSV).status_code == 201
    assert_error(client.put(url, content=b"X\n1\n2\n", headers=CSV), 409, 4009, "overwrite")
    assert client.get(url).json()["result"]["rows"] == 1
    r = client.put(url, params={"overwrite": "true"}, content=b"Y\na\nb\n", headers=CSV)
    assert r.status_code == 201, r.text
    assert r.json()["result"]["rows"] == 2


def test_failed_overwrite_keeps_the_old_table(client: httpx.Client) -> None:
    url = f"{API}/tables/{unique_name('T')}"
    client.put(url, content=b"X\n1\n", headers=CSV)
    r = client.put(url, params={"overwrite": "true"}, content=b"nope", headers=PARQUET)
    assert_error(r, 400, 1001, "Parquet")
    assert client.get(url).json()["result"]["rows"] == 1


@pytest.mark.parametrize(("path", "body", "headers", "text"), [
    ("BADFILE", b"A,B\n1,2\n", {"Content-Type": "application/xml"}, "text/csv"),
    ("BADFILE", b"A,B\n1,2\n3\n", CSV, "CSV"),
    ("BADFILE", b"[1, 2]", {"Content-Type": "application/json"}, "array of records"),
    ("BADFILE", b"", CSV, "empty"),
    ("1BAD", b"A\n1\n", CSV, "invalid table name"),
    ("BAD-NAME", b"A\n1\n", CSV, "invalid table name"),
])
def test_bad_uploads_are_400s(client: httpx.Client, path: str, body: bytes,
                              headers: dict[str, str], text: str) -> None:
    assert_error(client.put(f"{API}/tables/{path}", content=body, headers=headers),
                 400, 1001, text)
    assert path not in names(client)


def test_tables_need_a_token(server: EpeServer) -> None:
    with server.http() as anonymous:
        assert_error(anonymous.get(f"{API}/tables"), 401, 2001)
        assert_error(anonymous.put(f"{API}/tables/T", content=b"X\n1\n", headers=CSV),
                     401, 2001)


def test_users_see_only_their_own_tables(data_server: EpeServer) -> None:
    _ann, ann = data_server.new_client()
    _bob, bob = data_server.new_client()
    with ann, bob:
        ann.put(f"{API}/tables/SECRET", content=b"S\nann\n", headers=CSV)
        assert bob.get(f"{API}/tables").json() == {"result": []}
        assert_error(bob.get(f"{API}/tables/SECRET"), 404, 4004)
        assert_error(bob.delete(f"{API}/tables/SECRET"), 404, 4004)
        r = bob.put(f"{API}/tables/SECRET", content=b"S\nbob\nbob\n", headers=CSV)
        assert r.status_code == 201, r.text
        assert ann.get(f"{API}/tables/SECRET").json()["result"]["rows"] == 1
        assert bob.get(f"{API}/tables/SECRET").json()["result"]["rows"] == 2


def test_demo_loads_iris_for_omluser(make_server: Callable[..., EpeServer]) -> None:
    srv = make_server()
    env = {"EPE_DEMO_PASSWORD": "demo-Secret1"}
    out = run_cli("demo", "--data-dir", str(srv.data_dir), env=env).stdout
    assert "IRIS" in out
    with srv.client("OMLUSER", "demo-Secret1") as c:
        info = c.get(f"{API}/tables/IRIS").json()["result"]
        assert info["rows"] == 150
        assert [col["name"] for col in info["columns"]] == [
            "SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH", "SPECIES"]
        # Again, while the server has OMLUSER's tables open: IRIS is replaced, not doubled.
        run_cli("demo", "--data-dir", str(srv.data_dir), env=env)
        assert c.get(f"{API}/tables/IRIS").json()["result"]["rows"] == 150
