"""An operation a plugin registers runs end to end with no change to the server's code
(docs/architecture.md#adding-an-operation).

``tests/plugins/batch_apply.py`` defines ``batch-apply`` (its request model and its
record); a server started with ``EPE_PLUGINS`` naming it serves the operation's
three routes, sync and async, names a failing chunk, checks the body against the
plugin's model, lists the paths in its version document and its OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import API, EpeServer, assert_error, put_table, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.plugins.batch_apply"
SIZES = "def f(d, scale=1):\n    return int(d.sum()) * scale\n"  # d: a float matrix


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    env = {"EPE_PLUGINS": PLUGIN, "PYTHONPATH": str(ROOT)}
    server = EpeServer(tmp_path_factory.mktemp("plugin"), env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def c(srv: EpeServer) -> Iterator[httpx.Client]:
    _user, client = srv.new_client()
    put_table(client, "SEVEN", "N\n" + "".join(f"{n}\n" for n in range(1, 8)))
    yield client
    client.close()


def batch(c: httpx.Client, path: str = "", **body: object) -> httpx.Response:
    return c.post(f"{API}/batch-apply{path}", json={"input": "select * from SEVEN order by N",
                                                     **body})


def test_a_sixth_operation_runs_inline_and_stored(c: httpx.Client) -> None:
    r = batch(c, rows=3, script=SIZES, label="ignored by the function")
    assert r.status_code == 200, r.text
    assert r.json() == {"result": [6, 15, 7]}  # 1+2+3, 4+5+6, 7: one value per chunk
    assert c.post(f"{API}/scripts", json={"name": "sizes", "script": SIZES}).status_code == 201
    r = batch(c, "/sizes", rows=4, parameters='{"scale": 10}', parallelFlag=True)
    assert r.json() == {"result": [100, 180]}, r.text


def test_a_sixth_operation_runs_as_a_job(c: httpx.Client) -> None:
    r = batch(c, "/sizes", rows=7, asyncFlag=True)
    assert r.status_code == 201, r.text
    job = r.headers["location"]
    wait_for(lambda: c.get(job).status_code == 302)
    assert c.get(job + "/result").json() == {"result": [28]}


def test_a_sixth_operation_names_the_failing_chunk_and_checks_its_body(
        c: httpx.Client) -> None:
    failing = "def f(d):\n    if 4 in d:\n        raise ValueError('four')\n    return 1\n"
    body = assert_error(batch(c, rows=3, script=failing))
    assert body["chunk"] == 1 and "four" in body["errorMessage"], body
    assert "'rows' is required" in assert_error(batch(c, script=SIZES))["errorMessage"]
    assert "label" in assert_error(batch(c, rows=3, script=SIZES, label=""))["errorMessage"]


def test_a_sixth_operation_is_listed_and_documented(c: httpx.Client) -> None:
    children = [link["href"] for link in c.get(API).json()["links"]]
    spec = c.get("/openapi.json").json()
    assert any(href.endswith("/batch-apply/{scriptName}/{ownerName}") for href in children)
    route = spec["paths"][f"{API}/batch-apply/{{scriptName}}"]["post"]
    assert "one per chunk" in route["description"] and "201" in route["responses"]


def test_a_plugin_that_cannot_be_imported_stops_the_server_with_one_line(
        tmp_path: Path) -> None:
    done = run_cli("serve", "--data-dir", str(tmp_path), "--port", "0",
                   env={"EPE_PLUGINS": "no_such_plugin_module"}, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: EPE_PLUGINS names no_such_plugin_module, which cannot be imported: "
        "No module named 'no_such_plugin_module' (errorCode 5001)"]
