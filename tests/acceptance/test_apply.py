"""table-, row-, group- and index-apply over HTTP (docs/api.md#running-functions).

Oracle's own example functions with their published values (``group_count``,
``build_lm`` fitted in table-apply and scored by row-apply in chunks of 10 through a
datastore, ``compute_random_mean``), every request field, the result shapes,
parallelism (same answer whatever the degree, the degree used is logged, the
service levels' caps are settings), the errors naming the failing chunk, group or
index, every bad input, and users who cannot see each other's tables.

One server for the module, with 4 workers and the service caps set to LOW 2,
MEDIUM 3, HIGH 4 so that every cap is observable; ``epe demo`` loads IRIS and
Oracle's scripts for ``OMLUSER``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from epe.runner.worker.main import IDLE_BEFORE_GIVING_BACK
from tests.oracle_examples import BUILD_LM
from tests.serverproc import API, API1, EpeServer, assert_error, run_cli, unique_name, wait_for

DEMO_PASSWORD = "demo-Secret1"
WORKERS = 4
CAPS = {"LOW": 2, "MEDIUM": 3, "HIGH": 4}
CSV = {"Content-Type": "text/csv"}

# NUMS: ID 0..999, G one of 40 groups "g00".."g39", H = ID % 3, X = ID / 4, Y = ID*7 % 11.
NUMS_ROWS = 1000
NUMS_CSV = "ID,G,H,X,Y\n" + "".join(
    f"{i},g{i % 40:02d},{i % 3},{i / 4},{i * 7 % 11}\n" for i in range(NUMS_ROWS))
NUMS_COLUMNS = ["ID", "G", "H", "X", "Y"]

# Oracle's published values (index-apply example of compute_random_mean, times=10).
RANDOM_MEANS = [7.2032449344, 0.2592623183, 7.0814782262, 5.4723224918, 8.7073230618,
                3.3197980531, 7.7991879224, 9.6854066282, 5.0187459215, 0.2075194936]
# SEPAL_LENGTH ~ SEPAL_WIDTH + PETAL_LENGTH + PETAL_WIDTH on IRIS.
LM_COEF = [0.6508, 0.7091, -0.5565]

GROUP_COUNT = (
    "def group_count(dat):\n"
    "    import pandas as pd\n"
    '    return pd.DataFrame([(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], dat.shape[0])],\n'
    '                        columns=["SPECIES","SEPAL_LENGTH","COUNT"])\n')

# Oracle's lab: fit in table-apply (BUILD_LM), keep the model in a datastore, score in
# row-apply.
SCORE_LM = (
    "def score_lm(dat, ds_name):\n"
    "    import oml\n"
    "    import pandas as pd\n"
    "    regr = oml.ds.load(name=ds_name, objs=['regr'], to_globals=False)['regr']\n"
    '    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]\n'
    "    pred = pd.DataFrame(regr.predict(X), columns=['PRED'])\n"
    "    return pd.concat([dat[['SPECIES', 'SEPAL_WIDTH', 'PETAL_LENGTH', 'PETAL_WIDTH']], pred,\n"
    "                      pd.DataFrame({'N': [len(dat)] * len(dat)})], axis=1)\n")


# -- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    env = {"EPE_WORKERS": str(WORKERS), "EPE_SERVICE_LOW_PARALLEL": str(CAPS["LOW"]),
           "EPE_SERVICE_MEDIUM_PARALLEL": str(CAPS["MEDIUM"]),
           "EPE_SERVICE_HIGH_PARALLEL": str(CAPS["HIGH"])}
    server = EpeServer(tmp_path_factory.mktemp("epe-apply"), env).start()
    try:
        run_cli("demo", "--data-dir", str(server.data_dir),
                env={**env, "EPE_DEMO_PASSWORD": DEMO_PASSWORD})
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oml(srv: EpeServer) -> Iterator[httpx.Client]:
    """OMLUSER, with IRIS and Oracle's example scripts from ``epe demo``."""
    with srv.client("OMLUSER", DEMO_PASSWORD) as c:
        yield c


@pytest.fixture(scope="module")
def user_a(srv: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    """A user with the NUMS table."""
    user, c = srv.new_client()
    with c:
        upload(c, "NUMS", NUMS_CSV)
        yield user, c


@pytest.fixture
def a(user_a: tuple[str, httpx.Client]) -> httpx.Client:
    return user_a[1]


@pytest.fixture(scope="module")
def user_b(srv: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    user, c = srv.new_client()
    with c:
        yield user, c


@pytest.fixture(params=[API1, API], ids=["v1", "v2"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def upload(c: httpx.Client, name: str, csv: str, overwrite: bool = False) -> dict[str, Any]:
    r = c.put(f"{API}/tables/{name}", content=csv.encode(), headers=CSV,
              params={"overwrite": "true"} if overwrite else None)
    assert r.status_code == 201, r.text
    return dict(r.json()["result"])


def upload_json(c: httpx.Client, name: str, records: list[dict[str, Any]]) -> None:
    r = c.put(f"{API}/tables/{name}", json=records)
    assert r.status_code == 201, r.text


def path(op: str, name: str | None = None, owner: str | None = None, api: str = API) -> str:
    return "/".join(p for p in (api, op, name, owner) if p)


def call(c: httpx.Client, op: str, body: dict[str, Any], name: str | None = None,
         owner: str | None = None, api: str = API) -> httpx.Response:
    return c.post(path(op, name, owner, api), json=body)


def result(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"}, body
    return body["result"]


def inline(c: httpx.Client, op: str, source: str, **body: Any) -> Any:
    return result(call(c, op, {"script": source, **body}))


def params(**kw: Any) -> str:
    return json.dumps(kw)




def store(c: httpx.Client, source: str, name: str | None = None,
          is_global: bool = False) -> str:
    name = name or unique_name("s")
    r = c.post(f"{API}/scripts", json={"name": name, "script": source, "isGlobal": is_global})
    assert r.status_code == 201, r.text
    return name


def nums_intact(c: httpx.Client, table: str = "NUMS", rows: int = NUMS_ROWS) -> None:
    r = c.get(f"{API}/tables/{table}")
    assert r.status_code == 200, r.text
    assert r.json()["result"]["rows"] == rows
    assert inline(c, "table-apply", "def f(d):\n    return len(d)\n",
                  input=f"select * from {table}") == rows


# -- Oracle's examples ---------------------------------------------------------------


def test_group_count_per_species(oml: httpx.Client, api: str) -> None:
    # Oracle's group_count, as stored by `epe demo`, with Oracle's mixed-case names.
    r = call(oml, "group-apply", {"input": "select * from IRIS", "groupBy": "Species",
                                  "orderBy": "Sepal_Length"}, "group_count", api=api)
    assert result(r) == {
        "setosa": {"SPECIES": {"0": "setosa"}, "SEPAL_LENGTH": {"0": 4.3}, "COUNT": {"0": 50}},
        "versicolor": {"SPECIES": {"0": "versicolor"}, "SEPAL_LENGTH": {"0": 4.9},
                       "COUNT": {"0": 50}},
        "virginica": {"SPECIES": {"0": "virginica"}, "SEPAL_LENGTH": {"0": 4.9},
                      "COUNT": {"0": 50}}}
    if api == API1:
        assert r.headers.get("Deprecation") and r.headers.get("Sunset")


def test_group_count_stored_by_the_user(oml: httpx.Client) -> None:
    # The same function from its source, as a user would store it themselves.
    name = store(oml, GROUP_COUNT)
    got = result(call(oml, "group-apply", {"input": "select * from IRIS", "groupBy": "species",
                                           "orderBy": "SEPAL_LENGTH"}, name))
    assert {k: (v["SEPAL_LENGTH"], v["COUNT"]) for k, v in got.items()} == {
        "setosa": ({"0": 4.3}, {"0": 50}), "versicolor": ({"0": 4.9}, {"0": 50}),
        "virginica": ({"0": 4.9}, {"0": 50})}


def test_compute_random_mean_published_values(oml: httpx.Client, api: str) -> None:
    r = oml.post(path("index-apply", "compute_random_mean", api=api), content='{"times":10}',
                 headers={"Content-Type": "application/json"})
    assert result(r) == pytest.approx(RANDOM_MEANS, abs=1e-9)


def test_compute_random_mean_in_parallel(oml: httpx.Client) -> None:
    for body in ({"times": 10, "parallelFlag": True},
                 {"times": 10, "parallelFlag": True, "parallel": 3, "service": "HIGH"}):
        assert result(call(oml, "index-apply", body, "compute_random_mean")) == \
            pytest.approx(RANDOM_MEANS, abs=1e-9)


def test_oracle_table_apply_request_verbatim(oml: httpx.Client, api: str) -> None:
    # Oracle's table-apply example body: parallelFlag is not a table-apply field (ignored).
    name = store(oml, "def my_predict(dat):\n    return [type(dat).__name__, len(dat)]\n")
    raw = ('{"input":"select * from IRIS", "parameters":"{\\"oml_input_type\\":'
           '\\"pandas.DataFrame\\"}", "parallelFlag":true}')
    r = oml.post(path("table-apply", name, api=api), content=raw,
                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert result(r) == ["DataFrame", 150]


def test_linear_model_fitted_in_table_apply_and_scored_by_row_apply(oml: httpx.Client,
                                                                    api: str) -> None:
    ds = unique_name("ds_regr")
    build, score = store(oml, BUILD_LM), store(oml, SCORE_LM)
    fitted = result(call(oml, "table-apply", {"input": "select * from IRIS",
                                              "parameters": params(dsname=ds)}, build, api=api))
    assert fitted["coef"] == pytest.approx(LM_COEF, abs=5e-4)
    coef, intercept = fitted["coef"], fitted["intercept"]
    scored = result(call(oml, "row-apply", {"input": "select * from IRIS", "rows": 10,
                                            "parameters": params(ds_name=ds)}, score, api=api))
    assert isinstance(scored, list) and len(scored) == 150
    assert [r["N"] for r in scored] == [10] * 150  # 15 chunks of 10
    for rec in scored:
        expected = intercept + coef[0] * rec["SEPAL_WIDTH"] + coef[1] * rec["PETAL_LENGTH"] \
            + coef[2] * rec["PETAL_WIDTH"]
        assert rec["PRED"] == pytest.approx(expected, abs=1e-9)
    assert {r["SPECIES"] for r in scored} == {"setosa", "versicolor", "virginica"}
    # In parallel: the same records in the same order.
    again = call(oml, "row-apply", {"input": "select * from IRIS", "rows": 10,
                                    "parallelFlag": True, "service": "HIGH",
                                    "parameters": params(ds_name=ds)}, score, api=api)
    assert result(again) == scored


# -- row-apply -------------------------------------------------------------------------


CHUNK_FRAME = ("import pandas as pd\n"
               "def f(d):\n"
               "    return pd.DataFrame({'ID': d['ID'], 'TWICE': d['X'] * 2,\n"
               "                         'N': len(d), 'FIRST': int(d.index[0])})\n")


def test_row_apply_dataframes_are_concatenated_in_row_order(a: httpx.Client) -> None:
    got = inline(a, "row-apply", CHUNK_FRAME, input="select * from NUMS order by ID", rows=37,
                 parameters=params(oml_input_type="pandas.DataFrame"))
    assert [r["ID"] for r in got] == list(range(NUMS_ROWS))
    assert [r["TWICE"] for r in got] == [i / 2 for i in range(NUMS_ROWS)]
    # 27 chunks of 37, then a last, shorter chunk of 1; each with a fresh index from 0.
    assert [r["N"] for r in got] == [37] * 999 + [1]
    assert {r["FIRST"] for r in got} == {0}


def test_row_apply_other_values_make_one_entry_per_chunk(a: httpx.Client) -> None:
    source = ("def f(d):\n"
              "    return {'n': len(d), 'ids': [int(d['ID'][0]), int(d['ID'][len(d) - 1])],\n"
              "            'index': [int(i) for i in d.index[[0, -1]]]}\n")
    got = inline(a, "row-apply", source, input="select * from NUMS where ID < 25 order by ID",
                 rows=10)
    assert got == [{"n": 10, "ids": [0, 9], "index": [0, 9]},
                   {"n": 10, "ids": [10, 19], "index": [0, 9]},
                   {"n": 5, "ids": [20, 24], "index": [0, 4]}]


def test_row_apply_chunk_larger_than_the_input(a: httpx.Client) -> None:
    got = inline(a, "row-apply", "def f(d):\n    return len(d)\n",
                 input="select * from NUMS where ID < 7", rows=100)
    assert got == [7]


def test_row_apply_passes_parameters(a: httpx.Client) -> None:
    source = "def f(d, k, label='x'):\n    return [label, float(d['X'].sum()) * k]\n"
    got = inline(a, "row-apply", source, input="select * from NUMS where ID < 8 order by ID",
                 rows=4, parameters=params(k=2, label="y", oml_input_type="pandas.DataFrame"))
    assert got == [["y", 3.0], ["y", 11.0]]


def test_apply_on_an_empty_input(a: httpx.Client) -> None:
    empty = "select * from NUMS where ID < 0"
    assert inline(a, "row-apply", "def f(d):\n    return len(d)\n", input=empty, rows=5) == []
    assert inline(a, "group-apply", "def f(d):\n    return len(d)\n", input=empty,
                  groupBy="G") == {}
    assert inline(a, "table-apply", "def f(d):\n    return list(d.columns)\n", input=empty,
                  parameters=params(oml_input_type="pandas.DataFrame")) == NUMS_COLUMNS


# -- group-apply ------------------------------------------------------------------------


def test_group_apply_several_columns_case_insensitive(a: httpx.Client) -> None:
    source = ("def f(d):\n"
              "    return [len(d), list(d.index) == list(range(len(d))),\n"
              "            sorted(set(d['G'])), sorted(set(int(h) for h in d['H']))]\n")
    got = inline(a, "group-apply", source, input="select * from NUMS", groupBy="g, h",
                 parameters=params(oml_input_type="pandas.DataFrame"))
    assert len(got) == 120
    expected_keys = {f"g{g:02d}_{h}" for g in range(40) for h in range(3)}
    assert set(got) == expected_keys
    for key, (n, fresh, gs, hs) in got.items():
        g, h = key.split("_")
        assert (gs, hs, fresh) == ([g], [int(h)], True)
        assert n == sum(1 for i in range(NUMS_ROWS) if f"g{i % 40:02d}" == g and i % 3 == int(h))


def test_group_apply_order_by_orders_rows_within_each_group(a: httpx.Client) -> None:
    source = "def f(d):\n    return [int(i) for i in d['ID']]\n"
    got = inline(a, "group-apply", source, input="select * from NUMS where ID < 100",
                 groupBy="H", orderBy="y, id", parameters=params(oml_input_type="pandas.DataFrame"))
    for h in range(3):
        ids = [i for i in range(100) if i % 3 == h]
        assert got[str(h)] == sorted(ids, key=lambda i: (i * 7 % 11, i))


def test_group_apply_non_dataframe_values_and_column_form(a: httpx.Client) -> None:
    source = ("import pandas as pd\n"
              "def f(d):\n"
              "    if d['H'][0] == 0:\n"
              "        return float(d['X'].max())\n"
              "    return pd.DataFrame({'H': [d['H'][0]] * 2, 'ROW': [0, 1]})\n")
    got = inline(a, "group-apply", source, input="select H, X from NUMS", groupBy="H",
                 parameters=params(oml_input_type="pandas.DataFrame"))
    assert got == {"0": 999 / 4, "1": {"H": {"0": 1, "1": 1}, "ROW": {"0": 0, "1": 1}},
                   "2": {"H": {"0": 2, "1": 2}, "ROW": {"0": 0, "1": 1}}}


def test_group_apply_null_group_values(a: httpx.Client) -> None:
    name = unique_name("NULLS")
    upload_json(a, name, [
        {"K": "east", "Y": 2020, "V": 1.0}, {"K": "east", "Y": None, "V": 2.0},
        {"K": None, "Y": 2020, "V": 3.0}, {"K": None, "Y": 2020, "V": 4.0},
        {"K": "west", "Y": 2021, "V": 5.0}, {"K": None, "Y": None, "V": 6.0}])
    source = "def f(d):\n    return sorted(float(v) for v in d['V'])\n"
    got = inline(a, "group-apply", source, input=f"select * from {name}", groupBy="K,Y",
                 parameters=params(oml_input_type="pandas.DataFrame"))
    assert got == {"east_2020": [1.0], "east_NA": [2.0], "NA_2020": [3.0, 4.0],
                   "west_2021": [5.0], "NA_NA": [6.0]}
    one = inline(a, "group-apply", source, input=f"select * from {name}", groupBy="k",
                 parameters=params(oml_input_type="pandas.DataFrame"))
    assert one == {"east": [1.0, 2.0], "west": [5.0], "NA": [3.0, 4.0, 6.0]}
    # oml_na_omit drops every row with a missing value before grouping.
    omitted = inline(a, "group-apply", source, input=f"select * from {name}", groupBy="K",
                     parameters=params(oml_input_type="pandas.DataFrame", oml_na_omit=True))
    assert omitted == {"east": [1.0], "west": [5.0]}


def test_group_by_a_column_the_query_does_not_return(a: httpx.Client) -> None:
    for field, body in (("groupBy", {"groupBy": "G"}),
                        ("orderBy", {"groupBy": "ID", "orderBy": "ID, NOPE"})):
        r = call(a, "group-apply", {"script": "def f(d):\n    return 1\n",
                                    "input": "select ID, X from NUMS", **body})
        message = assert_error(r, 400, 1001)["errorMessage"]
        assert field in message
        assert "ID" in message and "X" in message  # the query's columns are listed
        assert ("G" if field == "groupBy" else "NOPE") in message


@pytest.mark.parametrize("group_by, order_by", [
    ("G; drop table {t}", None),
    ("G); drop table {t}; --", None),
    ('G"; drop table {t}; --', None),
    ("G) UNION SELECT * FROM {t} --", None),
    ("lower(G)", None),
    ("1", None),
    ("*", None),
    ("G", "X; drop table {t}"),
    ("G", "X desc"),
    ("G", "(select 1)"),
    ("G", 'X" ; drop table {t} --'),
])
def test_injection_in_group_by_or_order_by_is_refused(a: httpx.Client, group_by: str,
                                                      order_by: str | None) -> None:
    table = unique_name("INJ")
    upload(a, table, NUMS_CSV)
    body: dict[str, Any] = {"script": "def f(d):\n    return len(d)\n",
                            "input": f"select * from {table}",
                            "groupBy": group_by.format(t=table)}
    if order_by is not None:
        body["orderBy"] = order_by.format(t=table)
    assert_error(call(a, "group-apply", body), 400, 1001)
    nums_intact(a, table)


def test_group_by_names_are_matched_never_pasted_into_sql(a: httpx.Client) -> None:
    # Columns whose names look like SQL are legal: they are matched, then quoted.
    table = unique_name("ODD")
    upload(a, table, NUMS_CSV)
    query = (f'select G as "k; drop table {table} --", H as "a""b", ID as "select" '
             f"from {table} where ID < 120")
    got = inline(a, "group-apply", "def f(d):\n    return [int(i) for i in d['select']]\n",
                 input=query, groupBy=f'K; DROP TABLE {table} --, A"B', orderBy="SELECT",
                 parameters=params(oml_input_type="pandas.DataFrame"))
    expected: dict[str, list[int]] = {}
    for i in range(120):
        expected.setdefault(f"g{i % 40:02d}_{i % 3}", []).append(i)
    assert got == expected
    nums_intact(a, table)


# -- oml_input_type, oml_na_omit ----------------------------------------------------------


DESCRIBE = ("def f(d):\n"
            "    import numpy as np\n"
            "    names = list(d.dtype.names) if isinstance(d, np.recarray) else (\n"
            "        list(d.columns) if hasattr(d, 'columns') else None)\n"
            "    dtype = str(d.dtype) if isinstance(d, np.ndarray) and d.dtype.names is None \\\n"
            "        else None\n"
            "    return [type(d).__name__, names, dtype, list(d.shape)]\n")


@pytest.mark.parametrize("input_type, query, expected", [
    ("pandas.DataFrame", "select ID, X from NUMS where ID < 4",
     ["DataFrame", ["ID", "X"], None, [4, 2]]),
    ("numpy.recarray", "select ID, G, X from NUMS where ID < 4",
     ["recarray", ["ID", "G", "X"], None, [4]]),
    ("default", "select ID, H, X from NUMS where ID < 4", ["ndarray", None, "float64", [4, 3]]),
    (None, "select ID, X from NUMS where ID < 4", ["ndarray", None, "float64", [4, 2]]),
    ("default", "select ID, G from NUMS where ID < 4", ["DataFrame", ["ID", "G"], None, [4, 2]]),
    (None, "select ID, G, X from NUMS where ID < 4",
     ["DataFrame", ["ID", "G", "X"], None, [4, 3]]),
], ids=["dataframe", "recarray", "default-numeric", "unset-numeric", "default-mixed",
        "unset-mixed"])
def test_oml_input_type(a: httpx.Client, input_type: str | None, query: str,
                        expected: list[Any]) -> None:
    p = params(oml_input_type=input_type) if input_type else None
    body = {"input": query, **({"parameters": p} if p else {})}
    assert inline(a, "table-apply", DESCRIBE, **body) == expected
    assert inline(a, "row-apply", DESCRIBE, rows=100, **body) == [expected]
    by_id = inline(a, "group-apply", DESCRIBE, groupBy="ID", **body)
    assert list(by_id) == ["0", "1", "2", "3"]
    one_row = [expected[0], expected[1], expected[2], [1, *expected[3][1:]]]
    assert all(v == one_row for v in by_id.values()), by_id


def test_recarray_and_matrix_values(a: httpx.Client) -> None:
    source = ("def f(d):\n"
              "    return [float(d['X'][1]), str(d['G'][1]), int(d['ID'][1])]\n")
    got = inline(a, "table-apply", source, input="select ID, G, X from NUMS where ID < 3 "
                 "order by ID", parameters=params(oml_input_type="numpy.recarray"))
    assert got == [0.25, "g01", 1]
    matrix = inline(a, "table-apply", "def f(d):\n    return d.tolist()\n",
                    input="select ID, H from NUMS where ID < 3 order by ID")
    assert matrix == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]


def test_oml_na_omit(a: httpx.Client) -> None:
    name = unique_name("HOLES")
    upload_json(a, name, [{"A": 1, "B": "x"}, {"A": None, "B": "y"}, {"A": 3, "B": None},
                          {"A": 4, "B": "z"}, {"A": 5, "B": "w"}])
    count = "def f(d):\n    return [len(d), [int(i) for i in d.index]]\n"
    q = f"select * from {name}"
    df = {"oml_input_type": "pandas.DataFrame"}
    assert inline(a, "table-apply", count, input=q, parameters=params(**df)) == \
        [5, [0, 1, 2, 3, 4]]
    for off in ({}, {"oml_na_omit": False}):
        assert inline(a, "table-apply", count, input=q,
                      parameters=params(**df, **off)) == [5, [0, 1, 2, 3, 4]]
    assert inline(a, "table-apply", count, input=q,
                  parameters=params(oml_na_omit=True, **df)) == [3, [0, 1, 2]]
    assert inline(a, "row-apply", count, input=q, rows=2,
                  parameters=params(oml_na_omit=True, **df)) == [[2, [0, 1]], [1, [0]]]


# -- table-apply -----------------------------------------------------------------------


def test_table_apply_dataframe_becomes_records(a: httpx.Client, api: str) -> None:
    source = ("def f(d):\n"
              "    out = d[d['ID'] < 3][['ID', 'G']].copy()\n"
              "    out['FRESH'] = d.index[0] == 0 and d.index[-1] == len(d) - 1\n"
              "    return out\n")
    r = call(a, "table-apply", {"script": source, "input": "select * from NUMS order by ID",
                                "parameters": params(oml_input_type="pandas.DataFrame")},
             api=api)
    assert result(r) == [{"ID": i, "G": f"g{i:02d}", "FRESH": True} for i in range(3)]


def test_table_apply_sees_the_query_columns_as_returned(a: httpx.Client) -> None:
    source = "def f(d):\n    return list(d.columns)\n"
    got = inline(a, "table-apply", source, input="select X as lower_x, ID as \"Mixed Id\" "
                 "from NUMS", parameters=params(oml_input_type="pandas.DataFrame"))
    assert got == ["lower_x", "Mixed Id"]


# -- inputs of more rows than one batch of the query's stream (122,880) -------------------

BIG_ROWS = 300_000
BIG = f"select range as X from range({BIG_ROWS})"
HOLEY = f"select case when range % 7 = 0 then null else range end as X from range({BIG_ROWS})"


def test_workers_convert_inputs_on_every_core(a: httpx.Client) -> None:
    # The workers' OMP_NUM_THREADS=1 must not leave Arrow's conversions on one thread.
    source = "def f(d):\n    import pyarrow\n    return pyarrow.cpu_count()\n"
    got = inline(a, "table-apply", source, input="select 1 as X")
    assert got == len(os.sched_getaffinity(0))


# The worker's own mark (in a sandbox, every worker is process 1 of its own) and its memory.
RESIDENT = ("def f(d=None):\n"
            "    import builtins, uuid\n"
            "    with open('/proc/self/status') as s:\n"
            "        kb = next(int(l.split()[1]) for l in s if l.startswith('RssAnon'))\n"
            "    mark = builtins.__dict__.setdefault('epe_test_worker', uuid.uuid4().hex)\n"
            "    return [mark, kb * 1024]\n")


def test_a_worker_gives_back_the_memory_of_a_large_input(a: httpx.Client) -> None:
    rows = 2_000_000
    wide = f"select range::DOUBLE as A, range::DOUBLE as B, range::DOUBLE as C from range({rows})"
    pid, during = inline(a, "table-apply", RESIDENT, input=wide,
                         parameters=params(oml_input_type="pandas.DataFrame"))
    time.sleep(3 * IDLE_BEFORE_GIVING_BACK)  # long enough idle: the worker gives it back
    for _ in range(20):  # idle workers take turns: the same one comes round again
        other, after = inline(a, "do-eval", RESIDENT)
        if other == pid:
            break
    else:
        pytest.fail(f"worker {pid} never ran another call")
    frame = rows * 3 * 8
    assert during - after > frame * 0.75, (during, after)


def test_table_apply_over_an_input_of_several_batches(a: httpx.Client) -> None:
    source = "def f(d):\n    return [len(d), int(d['X'].sum()), int(d.index[-1])]\n"
    df = params(oml_input_type="pandas.DataFrame")
    assert inline(a, "table-apply", source, input=BIG, parameters=df) == \
        [BIG_ROWS, BIG_ROWS * (BIG_ROWS - 1) // 2, BIG_ROWS - 1]


# Keeps every input frame it is given, with a copy of its values, and says whether the
# frames it kept before still hold them.
KEEPS_ITS_INPUTS = (
    "KEPT = []\n"
    "def f(d):\n"
    "    intact = all(frame['S'].tolist() == values for frame, values in KEPT)\n"
    "    KEPT.append((d, d['S'].tolist()))\n"
    "    return [len(KEPT), intact]\n")


def test_a_frame_kept_from_an_earlier_call_keeps_its_values(a: httpx.Client) -> None:
    # Each input is written over the file of the one before (docs/architecture.md, "The
    # worker protocol"), and pandas' string columns point into that file: a frame user code
    # keeps must neither change with the next input nor fault when it is shorter.
    df = params(oml_input_type="pandas.DataFrame")
    most = 0
    for i in range(12):
        rows = 5000 if i % 2 else 200
        query = f"select 'call{i}-' || range::VARCHAR as S from range({rows})"
        kept, intact = inline(a, "table-apply", KEEPS_ITS_INPUTS, input=query, parameters=df)
        assert intact, f"call {i}: a frame kept from an earlier call changed"
        most = max(most, kept)
    assert most >= 3  # 12 calls over at most 4 workers: one kept frames across calls


@pytest.mark.parametrize("extra", [{}, {"parallelFlag": True}], ids=["seq", "parallel"])
def test_row_apply_chunks_across_batch_boundaries(a: httpx.Client, extra: dict[str, Any]) -> None:
    source = ("def f(d):\n"
              "    return [len(d), int(d['X'].iloc[0]), int(d['X'].iloc[-1]), "
              "int(d.index[0]), int(d.index[-1])]\n")
    got = inline(a, "row-apply", source, input=BIG, rows=100_001,
                 parameters=params(oml_input_type="pandas.DataFrame"), **extra)
    starts = range(0, BIG_ROWS, 100_001)
    assert got == [[min(100_001, BIG_ROWS - s), s, min(s + 100_001, BIG_ROWS) - 1, 0,
                    min(100_001, BIG_ROWS - s) - 1] for s in starts]


def test_na_omit_over_an_input_of_several_batches(a: httpx.Client) -> None:
    source = "def f(d):\n    return [len(d), int(d['X'].min()), int(d.index[-1])]\n"
    kept = BIG_ROWS - len(range(0, BIG_ROWS, 7))
    got = inline(a, "table-apply", source, input=HOLEY,
                 parameters=params(oml_input_type="pandas.DataFrame", oml_na_omit=True))
    assert got == [kept, 1, kept - 1]
    chunks = inline(a, "row-apply", source, input=HOLEY, rows=200_000,
                    parameters=params(oml_input_type="pandas.DataFrame", oml_na_omit=True))
    assert [c[0] for c in chunks] == [200_000, kept - 200_000]


def test_an_input_query_failing_midway_is_400(a: httpx.Client) -> None:
    late = ("select case when range < 250000 then range else error('no row ' || range) end "
            f"as X from range({BIG_ROWS})")
    for op, extra in (("table-apply", {}), ("row-apply", {"rows": 1000}),
                      ("group-apply", {"groupBy": "X"})):
        err = assert_error(call(a, op, {"script": "def f(d):\n    return 1\n",
                                        "input": late, **extra}), 400, 1001)
        assert "the input query failed" in err["errorMessage"]
        assert "no row 25" in err["errorMessage"]
    # The run left nothing behind: the same user's next run works.
    assert inline(a, "table-apply", "def f(d):\n    return len(d)\n", input=BIG) == BIG_ROWS


def test_the_input_dataframe_can_be_changed_in_place(a: httpx.Client) -> None:
    source = ("def f(d):\n"
              "    d.loc[d['X'] < 2, 'X'] = -1\n"
              "    d.iloc[2, 0] = 99\n"
              "    d.fillna(0, inplace=True)\n"
              "    d['Y'] = d['X'] * 2\n"
              "    return d.head(4)\n")
    df = params(oml_input_type="pandas.DataFrame")
    expected = [{"X": -1, "Y": -2}, {"X": -1, "Y": -2}, {"X": 99, "Y": 198}, {"X": 3, "Y": 6}]
    assert inline(a, "table-apply", source, input=BIG, parameters=df) == expected
    chunks = inline(a, "row-apply", source, input=BIG, rows=150_000, parameters=df)
    assert chunks[:4] == expected and chunks[4] == {"X": 150_000, "Y": 300_000}


# -- index-apply ----------------------------------------------------------------------


def test_index_apply_is_one_based_in_order(a: httpx.Client, api: str) -> None:
    source = "def f(i, base=0):\n    return [i, i * i + base]\n"
    r = call(a, "index-apply", {"script": source, "times": 12,
                                "parameters": params(base=1)}, api=api)
    assert result(r) == [[i, i * i + 1] for i in range(1, 13)]


# -- parallelism -----------------------------------------------------------------------


PARALLEL_BODIES: list[dict[str, Any]] = [
    {"parallelFlag": True},
    {"parallelFlag": True, "parallel": 1},
    {"parallelFlag": True, "parallel": 2},
    {"parallelFlag": True, "parallel": 3, "service": "MEDIUM"},
    {"parallelFlag": True, "service": "HIGH"},
    {"parallelFlag": True, "parallel": 64, "service": "HIGH"},
    {"parallel": 4, "service": "HIGH"},
    {"parallelFlag": False, "parallel": 2},
    {"parameters": params(oml_parallel_flag=True, oml_service_level="high")},
]

GROUP_FN = ("def f(d):\n"
            "    return {'n': len(d), 'sum': float(d['X'].sum()), 'first': int(d['ID'][0]),\n"
            "            'idx': int(d.index[0])}\n")
INDEX_FN = ("def f(i):\n"
            "    import numpy as np\n"
            "    return [i, float(np.random.default_rng(i).random())]\n")


def test_results_are_identical_whatever_the_degree(a: httpx.Client) -> None:
    runs: dict[str, dict[str, Any]] = {
        "row-apply": {"script": CHUNK_FRAME, "input": "select * from NUMS order by ID",
                      "rows": 37},
        "group-apply": {"script": GROUP_FN, "input": "select * from NUMS", "groupBy": "G,h",
                        "orderBy": "ID"},
        "index-apply": {"script": INDEX_FN, "times": 60},
    }
    for op, body in runs.items():
        sequential = call(a, op, {**body, "parameters": params(oml_input_type="pandas.DataFrame")})
        baseline = result(sequential)
        assert baseline
        for extra in PARALLEL_BODIES:
            p = json.loads(extra.get("parameters", "{}"))
            got = call(a, op, {**body, **extra, "parameters": params(
                oml_input_type="pandas.DataFrame", **p)})
            assert got.status_code == 200, (op, extra, got.text)
            assert got.content == sequential.content, (op, extra)


@pytest.mark.parametrize("extra, degree", [
    ({}, 1),
    ({"parallelFlag": False}, 1),
    ({"parallelFlag": True}, CAPS["LOW"]),
    ({"parallelFlag": True, "service": "LOW", "parallel": 4}, CAPS["LOW"]),
    ({"parallelFlag": True, "service": "MEDIUM"}, CAPS["MEDIUM"]),
    ({"parallelFlag": True, "service": "HIGH"}, CAPS["HIGH"]),
    ({"parallelFlag": True, "service": "HIGH", "parallel": 2}, 2),
    ({"parallelFlag": True, "service": "HIGH", "parallel": 99}, min(CAPS["HIGH"], WORKERS)),
    ({"parameters": params(oml_parallel_flag=True)}, CAPS["LOW"]),
    ({"parameters": params(oml_parallel_flag=True, oml_service_level="MEDIUM")},
     CAPS["MEDIUM"]),
], ids=["none", "flag-false", "flag", "low-capped", "medium", "high",
        "high-2", "high-99", "oml-flag", "oml-medium"])
def test_degree_used_is_capped_and_logged(srv: EpeServer, user_a: tuple[str, httpx.Client],
                                          extra: dict[str, Any], degree: int) -> None:
    user, c = user_a
    for op, body in (("row-apply", {"input": "select * from NUMS", "rows": 50}),
                     ("group-apply", {"input": "select * from NUMS", "groupBy": "G"}),
                     ("index-apply", {"times": 40})):
        kind = op.replace("-", "_")
        pattern = re.compile(rf"{kind}\b.*\b{user}\b.*degree of parallelism (\d+)")

        def logged(pattern: re.Pattern[str] = pattern) -> list[int]:
            return [int(m.group(1)) for line in list(srv.output)
                    if (m := pattern.search(line))]

        before = len(logged())
        r = call(c, op, {"script": "def f(d):\n    return 1\n", **body, **extra})
        assert r.status_code == 200, r.text
        seen = wait_for(lambda before=before: (got := logged()) and len(got) > before and got,
                        timeout=10)
        assert seen[-1] == degree, (op, extra, seen[-1])


# -- errors name the failing chunk, group or index --------------------------------------


FAIL_CHUNK = ("def f(d):\n"
              "    if int(d['ID'][0]) in (3 * 37, 7 * 37):\n"
              "        return 1 / 0\n"
              "    return len(d)\n")
FAIL_GROUP = ("def f(d):\n"
              "    if d['G'][0] in ('g03', 'g31'):\n"
              "        raise ValueError('bad group ' + d['G'][0])\n"
              "    return len(d)\n")
FAIL_INDEX = ("def f(i):\n"
              "    if i in (7, 33):\n"
              "        raise KeyError(i)\n"
              "    return i\n")
DEGREES: list[dict[str, Any]] = [{}, {"parallelFlag": True},
                                 {"parallelFlag": True, "service": "HIGH"},
                                 {"parallelFlag": True, "parallel": 3, "service": "MEDIUM"}]


@pytest.mark.parametrize("extra", DEGREES, ids=["seq", "low", "high", "p3"])
def test_failing_chunk_group_and_index_are_named(a: httpx.Client, extra: dict[str, Any]) -> None:
    df = params(oml_input_type="pandas.DataFrame")
    cases = [
        ("row-apply", {"script": FAIL_CHUNK, "input": "select * from NUMS order by ID",
                       "rows": 37, "parameters": df}, "chunk", 3, "ZeroDivisionError",
         "return 1 / 0"),
        ("group-apply", {"script": FAIL_GROUP, "input": "select * from NUMS", "groupBy": "g",
                         "parameters": df}, "group", "g03", "ValueError: bad group g03",
         "raise ValueError"),
        ("index-apply", {"script": FAIL_INDEX, "times": 40}, "index", 7, "KeyError",
         "raise KeyError(i)"),
    ]
    for op, body, where, which, message, line in cases:
        err = assert_error(call(a, op, {**body, **extra}), 400, 1011)
        assert err.get(where) == which, (op, err)
        assert message in err["errorMessage"] + err.get("traceback", "")
        assert line in err.get("traceback", ""), err
        assert not ({"chunk", "group", "index"} - {where}) & set(err), err


def test_table_apply_failure_has_a_traceback_and_no_unit(a: httpx.Client) -> None:
    source = "def f(d):\n    x = len(d)\n    return d['NO_SUCH_COLUMN']\n"
    err = assert_error(call(a, "table-apply", {"script": source, "input": "select * from NUMS",
                                               "parameters": params(
                                                   oml_input_type="pandas.DataFrame")}),
                       400, 1011)
    assert "NO_SUCH_COLUMN" in err["errorMessage"]
    assert "return d['NO_SUCH_COLUMN']" in err["traceback"]
    assert not {"chunk", "group", "index"} & set(err)


def test_group_failure_names_a_multi_column_key(a: httpx.Client) -> None:
    source = ("def f(d):\n"
              "    if d['G'][0] == 'g05' and d['H'][0] == 2:\n"
              "        raise RuntimeError('no')\n"
              "    return 0\n")
    err = assert_error(call(a, "group-apply", {
        "script": source, "input": "select * from NUMS", "groupBy": "G,H",
        "parameters": params(oml_input_type="pandas.DataFrame")}), 400, 1011)
    assert err["group"] == "g05_2"


# -- bad input -------------------------------------------------------------------------


OK = "def f(d):\n    return 1\n"
VALID: dict[str, dict[str, Any]] = {
    "table-apply": {"script": OK, "input": "select * from NUMS"},
    "row-apply": {"script": OK, "input": "select * from NUMS", "rows": 10},
    "group-apply": {"script": OK, "input": "select * from NUMS", "groupBy": "G"},
    "index-apply": {"script": OK, "times": 3},
}
MISSING = object()
BAD_FIELDS: list[tuple[str, str, Any]] = [
    ("row-apply", "rows", 0), ("row-apply", "rows", -1), ("row-apply", "rows", "10"),
    ("row-apply", "rows", 2.5), ("row-apply", "rows", True), ("row-apply", "rows", None),
    ("row-apply", "rows", MISSING), ("row-apply", "input", MISSING),
    ("row-apply", "input", 5), ("row-apply", "input", ""),
    ("row-apply", "parallel", 0), ("row-apply", "parallel", -2), ("row-apply", "parallel", "2"),
    ("row-apply", "parallel", 1.5), ("row-apply", "parallelFlag", "true"),
    ("row-apply", "parallelFlag", 1), ("row-apply", "service", "ULTRA"),
    ("row-apply", "service", 3),
    ("index-apply", "times", 0), ("index-apply", "times", -3), ("index-apply", "times", "10"),
    ("index-apply", "times", 1.5), ("index-apply", "times", True),
    ("index-apply", "times", MISSING), ("index-apply", "parallel", 0),
    ("index-apply", "parallelFlag", "yes"),
    ("group-apply", "groupBy", MISSING), ("group-apply", "groupBy", ""),
    ("group-apply", "groupBy", 5), ("group-apply", "groupBy", ["G"]),
    ("group-apply", "orderBy", 5), ("group-apply", "orderBy", ["ID"]),
    ("group-apply", "input", MISSING), ("group-apply", "parallel", 0),
    ("table-apply", "input", MISSING), ("table-apply", "input", 7),
    ("table-apply", "input", ""), ("table-apply", "input", None),
    ("table-apply", "parameters", {"oml_input_type": "pandas.DataFrame"}),
]


@pytest.mark.parametrize("op, field, value", BAD_FIELDS,
                         ids=[f"{o}-{f}-{'missing' if v is MISSING else v!r}"
                              for o, f, v in BAD_FIELDS])
def test_bad_fields_are_400(a: httpx.Client, op: str, field: str, value: Any) -> None:
    body = dict(VALID[op])
    if value is MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    err = assert_error(call(a, op, body), 400, 1001)
    assert field in err["errorMessage"], err


@pytest.mark.parametrize("op", list(VALID))
def test_bad_parameters_are_400(a: httpx.Client, op: str) -> None:
    for parameters in ('{"oml_input_type": "list"}', '{"oml_input_type": 3}',
                       '{"oml_na_omit": "yes"}', '{"oml_parallel_flag": 1}',
                       '{"oml_service_level": "ULTRA"}', "[1]", "{not json"):
        r = call(a, op, {**VALID[op], "parameters": parameters})
        assert_error(r, 400, 1001)


@pytest.mark.parametrize("op", list(VALID))
def test_valid_bodies_pass(a: httpx.Client, op: str) -> None:
    # The baseline every bad-field case above mutates by one field.
    assert call(a, op, VALID[op]).status_code == 200


@pytest.mark.parametrize("op", ["table-apply", "row-apply", "group-apply", "index-apply"])
def test_bodies_that_are_not_json_objects_are_400(a: httpx.Client, op: str) -> None:
    for raw in (b"{not json", b"[1, 2]", b"42", b""):
        r = a.post(path(op), content=raw, headers={"Content-Type": "application/json"})
        assert_error(r, 400)


@pytest.mark.parametrize("query", [
    "drop table {t}", "delete from {t}", "insert into {t} select * from {t}",
    "update {t} set X = 0", "create table {t}_copy as select * from {t}",
    "select 1; drop table {t}", "select * from {t}; delete from {t}",
    "alter table {t} rename to gone", "truncate {t}", "attach ':memory:' as other",
    "copy {t} to 'x.csv'", "pragma database_list", "set threads = 1", "checkpoint",
    "   ", "select * from read_csv('/etc/passwd')",
])
def test_input_that_is_not_one_select_is_400(a: httpx.Client, query: str) -> None:
    table = unique_name("RO")
    upload(a, table, NUMS_CSV)
    for op in ("table-apply", "row-apply", "group-apply"):
        body = {**VALID[op], "input": query.format(t=table)}
        assert_error(call(a, op, body), 400)
    nums_intact(a, table)


def test_bad_sql_is_400(a: httpx.Client) -> None:
    for query in ("select from where", "select * from NO_SUCH_TABLE", "select NOPE from NUMS"):
        assert_error(call(a, "table-apply", {**VALID["table-apply"], "input": query}), 400, 1001)


# -- scripts by owner, users' tables ----------------------------------------------------


def test_owner_route_with_a_granted_script(user_a: tuple[str, httpx.Client],
                                           user_b: tuple[str, httpx.Client], api: str) -> None:
    owner, ca = user_a
    _b, cb = user_b
    name = store(ca, "def count_rows(dat):\n    return [len(dat), list(dat.columns)]\n")
    table = unique_name("BT")
    upload(cb, table, "P,Q\n1,x\n2,y\n3,z\n")
    body = {"input": f"select * from {table}",
            "parameters": params(oml_input_type="pandas.DataFrame")}
    assert_error(call(cb, "table-apply", body, name, owner, api=api), 404)
    r = ca.post(f"{api}/scripts/{name}/grants", json={"user": user_b[0]})
    assert r.status_code == 200, r.text
    # Run as B on B's table, with A's function.
    assert result(call(cb, "table-apply", body, name, owner, api=api)) == [3, ["P", "Q"]]
    assert result(call(cb, "row-apply", {**body, "rows": 2}, name, owner, api=api)) == \
        [[2, ["P", "Q"]], [1, ["P", "Q"]]]
    assert result(call(cb, "group-apply", {**body, "groupBy": "q"}, name, owner,
                       api=api)) == {"x": [1, ["P", "Q"]], "y": [1, ["P", "Q"]],
                                     "z": [1, ["P", "Q"]]}
    idx = store(ca, "def g(i):\n    return -i\n")
    assert_error(call(cb, "index-apply", {"times": 2}, idx, owner, api=api), 404)
    ca.post(f"{api}/scripts/{idx}/grants", json={"user": user_b[0]}).raise_for_status()
    assert result(call(cb, "index-apply", {"times": 2}, idx, owner, api=api)) == [-1, -2]
    # Without the owner, B's lookup finds no script of B's own nor a global one.
    assert_error(call(cb, "table-apply", body, name, api=api), 404)
    # The grant lends the function, not A's tables.
    assert_error(call(cb, "table-apply", {**body, "input": "select * from NUMS"}, name, owner,
                      api=api), 400)


def test_global_script_under_pyqsys(a: httpx.Client, user_b: tuple[str, httpx.Client]) -> None:
    name = store(a, "def f(d):\n    return len(d)\n", is_global=True)
    _b, cb = user_b
    table = unique_name("GT")
    upload(cb, table, "P\n1\n2\n")
    try:
        assert result(call(cb, "table-apply", {"input": f"select * from {table}"}, name,
                           "PYQSYS")) == 2
        assert result(call(cb, "row-apply", {"input": f"select * from {table}", "rows": 1},
                           name)) == [1, 1]
    finally:
        a.delete(f"{API}/scripts/{name}", params={"isGlobal": "true"})


def test_users_cannot_see_each_others_tables(user_a: tuple[str, httpx.Client],
                                             user_b: tuple[str, httpx.Client]) -> None:
    (_ua, ca), (_ub, cb) = user_a, user_b
    mine = unique_name("MINE")
    upload(ca, mine, "V\n1\n2\n3\n")
    count = "def f(d):\n    return int(d.sum().sum()) if len(d) else 0\n"
    assert inline(ca, "table-apply", count, input=f"select * from {mine}") == 6
    for op in ("table-apply", "row-apply", "group-apply"):
        extra = {"rows": 1} if op == "row-apply" else {"groupBy": "V"} \
            if op == "group-apply" else {}
        other = call(cb, op, {"script": count, "input": f"select * from {mine}", **extra})
        missing = call(cb, op, {"script": count, "input": "select * from NO_SUCH_TABLE_X",
                                **extra})
        e1, e2 = assert_error(other, 400), assert_error(missing, 400)
        # What a missing table says, no more.
        assert e1["errorCode"] == e2["errorCode"]
        assert "does not exist" in e1["errorMessage"] and "does not exist" in e2["errorMessage"]
    for q in (f"select * from main.{mine}", f"select * from {_ua}.main.{mine}",
              f"select * from {_ua}.{mine}"):
        assert_error(call(cb, "table-apply", {"script": count, "input": q}), 400)
    # The same name in both: each user reads their own.
    shared = unique_name("SHARED")
    upload(ca, shared, "V\n1\n")
    upload(cb, shared, "V\n10\n20\n")
    assert inline(ca, "table-apply", count, input=f"select * from {shared}") == 1
    assert inline(cb, "table-apply", count, input=f"select * from {shared}") == 30
    assert inline(cb, "row-apply", count, input=f"select * from {shared} order by V",
                  rows=1) == [10, 20]
