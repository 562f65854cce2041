"""Users' data on both backends (``data_server``: the embedded DuckDB, and a PostgreSQL
started by the suite): Oracle's example functions over the five operations on IRIS
(loaded by ``epe demo``), ``groupBy``/``orderBy``, ``oml_na_omit``, an async job,
``oml.sync`` inside a function, the database's refusals of anything but one read-only
query, users who cannot read each other's tables, and column names with quotes, odd
case and unicode.

The queries quote their identifiers, as PostgreSQL needs for names that are not lower
case (docs/tables.md#postgresql); DuckDB accepts the same SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.test_apply import BUILD_LM, LM_COEF, RANDOM_MEANS, SCORE_LM
from tests.acceptance.test_jobs import result as job_result
from tests.acceptance.test_jobs import submit
from tests.serverproc import API, EpeServer, assert_error, run_cli, unique_name

DEMO_PASSWORD = "demo-Secret1"
IRIS = 'select * from "IRIS"'
CSV = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def oml(data_server: EpeServer) -> Iterator[httpx.Client]:
    """OMLUSER, with IRIS and Oracle's example scripts from ``epe demo``."""
    run_cli("demo", "--data-dir", str(data_server.data_dir),
            env={**data_server.env, "EPE_DEMO_PASSWORD": DEMO_PASSWORD})
    with data_server.client("OMLUSER", DEMO_PASSWORD) as c:
        yield c


@pytest.fixture(scope="module")
def ann(data_server: EpeServer) -> Iterator[httpx.Client]:
    _user, c = data_server.new_client()
    with c:
        yield c


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()["result"]


def run(c: httpx.Client, op: str, body: dict[str, Any], name: str | None = None) -> Any:
    return c.post(f"{API}/{op}" + (f"/{name}" if name else ""), json=body)


def store(c: httpx.Client, source: str) -> str:
    name = unique_name("s")
    r = c.post(f"{API}/scripts", json={"name": name, "script": source})
    assert r.status_code == 201, r.text
    return name


def upload(c: httpx.Client, name: str, body: bytes | list[dict[str, Any]]) -> dict[str, Any]:
    r = c.put(f"{API}/tables/{name}", content=body, headers=CSV) if isinstance(body, bytes) \
        else c.put(f"{API}/tables/{name}", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json()["result"])


# -- Oracle's examples, the five operations ------------------------------------------


def test_do_eval_and_index_apply(oml: httpx.Client) -> None:
    assert ok(run(oml, "do-eval", {}, "hello_world")) == "Hello World!"
    assert ok(run(oml, "index-apply", {"times": 10}, "compute_random_mean")) == \
        pytest.approx(RANDOM_MEANS, abs=1e-9)


def test_group_count_per_species(oml: httpx.Client) -> None:
    got = ok(run(oml, "group-apply", {"input": IRIS, "groupBy": "Species",
                                      "orderBy": "Sepal_Length"}, "group_count"))
    assert {k: (v["SEPAL_LENGTH"], v["COUNT"]) for k, v in got.items()} == {
        "setosa": ({"0": 4.3}, {"0": 50}), "versicolor": ({"0": 4.9}, {"0": 50}),
        "virginica": ({"0": 4.9}, {"0": 50})}


def test_linear_model_fitted_by_table_apply_scored_by_row_apply(oml: httpx.Client) -> None:
    ds = unique_name("ds_regr")
    fitted = ok(run(oml, "table-apply", {"input": IRIS, "parameters": f'{{"dsname": "{ds}"}}'},
                    store(oml, BUILD_LM)))
    assert fitted["coef"] == pytest.approx(LM_COEF, abs=5e-4)
    scored = ok(run(oml, "row-apply", {"input": IRIS, "rows": 10,
                                       "parameters": f'{{"ds_name": "{ds}"}}'},
                    store(oml, SCORE_LM)))
    assert len(scored) == 150 and [r["N"] for r in scored] == [10] * 150


def test_async_group_apply(oml: httpx.Client) -> None:
    url = submit(oml, f"{API}/group-apply/group_count",
                 {"input": IRIS, "groupBy": "SPECIES"})
    r = job_result(oml, url)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["result"]) == ["setosa", "versicolor", "virginica"]


def test_oml_sync_inside_a_function(oml: httpx.Client) -> None:
    source = ("def f(table=None, query=None):\n"
              "    import oml\n"
              "    return list(oml.sync(table=table, query=query).pull().shape)\n")
    # The table's name matched ignoring case, as the table endpoints match it.
    assert ok(run(oml, "do-eval", {"script": source, "parameters": '{"table": "iris"}'})) \
        == [150, 5]
    query = 'select \\"SPECIES\\", count(*) from \\"IRIS\\" group by 1'
    assert ok(run(oml, "do-eval", {"script": source,
                                   "parameters": f'{{"query": "{query}"}}'})) == [3, 2]


def test_oml_na_omit_and_order_by(ann: httpx.Client) -> None:
    table = unique_name("NA")
    upload(ann, table, b"G,X\na,3\na,\nb,1\na,2\n")
    count = "def f(d):\n    return [len(d), d['X'].tolist()]\n"
    body = {"script": count, "input": f'select * from "{table}"', "groupBy": "g",
            "orderBy": "x"}
    assert ok(run(ann, "group-apply", body))["a"][0] == 3
    omitted = ok(run(ann, "group-apply", {**body, "parameters": '{"oml_na_omit": true}'}))
    assert omitted == {"a": [2, [2.0, 3.0]], "b": [1, [1.0]]}


# -- read-only, and each user's own ------------------------------------------------------


@pytest.mark.parametrize("query", [
    'drop table "{t}"', 'delete from "{t}"', 'insert into "{t}" select * from "{t}"',
    'update "{t}" set "X" = 0', 'create table "{t}_copy" as select * from "{t}"',
    'alter table "{t}" rename to gone', 'truncate "{t}"',
    'select 1; drop table "{t}"', 'select * from "{t}"; delete from "{t}"',
    'copy "{t}" to stdout', "copy \"{t}\" to '/tmp/{t}.csv'", "copy \"{t}\" from '/etc/hosts'",
])
def test_only_one_read_only_query_runs(ann: httpx.Client, query: str) -> None:
    table = unique_name("RO")
    upload(ann, table, b"X\n1\n2\n")
    script = "def f(d):\n    return len(d)\n"
    assert_error(run(ann, "table-apply", {"script": script, "input": query.format(t=table)}),
                 400, 1001)
    assert ok(run(ann, "table-apply", {"script": script,
                                       "input": f'select * from "{table}"'})) == 2


def test_users_cannot_read_each_others_tables(data_server: EpeServer,
                                              ann: httpx.Client) -> None:
    table = unique_name("MINE")
    upload(ann, table, b"S\nann\n")
    _bob, bob = data_server.new_client()
    with bob:
        r = bob.post(f"{API}/query", json={"input": f'select * from "{table}"'})
        assert table.lower() in assert_error(r, 400, 1001)["errorMessage"].lower()
        assert_error(bob.get(f"{API}/tables/{table}"), 404, 4004)


def test_column_names_with_quotes_odd_case_and_unicode(ann: httpx.Client) -> None:
    table = unique_name("Odd")
    info = upload(ann, table, [{'we"ird': 1, "MiXed Case": "a", "Größe": 1.5},
                               {'we"ird': 2, "MiXed Case": "b", "Größe": None}])
    assert [c["name"] for c in info["columns"]] == ['we"ird', "MiXed Case", "Größe"]
    assert [c["type"] for c in info["columns"]] == ["BIGINT", "VARCHAR", "DOUBLE"]
    sql = f'select "we""ird" as "Ω", "Größe" from "{table}" where "MiXed Case" = \'a\''
    assert ok(ann.post(f"{API}/query", json={"input": sql})) == [{"Ω": 1, "Größe": 1.5}]
    script = "def f(d):\n    return sorted(d.columns)\n"
    got = ok(run(ann, "group-apply", {"script": script, "input": f'select * from "{table}"',
                                      "groupBy": "mixed case"}))
    assert got == {"a": ["Größe", "MiXed Case", 'we"ird'],
                   "b": ["Größe", "MiXed Case", 'we"ird']}
