"""Datastores (docs/api.md#datastores): ``import oml`` inside functions, and the
``/datastores`` REST routes.

Oracle's lab functions run as the lab runs them (``build_lm`` by table-apply,
``score_mod`` by parallel row-apply, ``build_lm_2`` by group-apply appending one
model per species); then OML4Py's semantics one by one: save/load/dir/describe/
delete, grants (users, PUBLIC, scripts), owner rules over REST, parallel appends,
atomic overwrites, the versions saved with each object, and ``oml.sync``.

Every call goes through a real ``epe serve``; nothing asserts on elapsed time."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serverproc import API, API1, EpeServer, iris_csv, put_table, unique_name, wait_for

DS = f"{API}/datastores"
DS_COLUMNS = ["datastore_name", "object_count", "size", "date", "description"]
DESCRIBE_COLUMNS = ["object_name", "class", "size", "length", "row_count", "col_count"]


# -- Oracle's lab functions (OML4Py lab "Run UDFs with REST API for EPE") --------------

BUILD_LM = '''def build_lm(dat, dsname):
    import oml
    from sklearn import linear_model
    regr = linear_model.LinearRegression()
    import pandas as pd
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]
    y = dat[["SEPAL_LENGTH"]]
    regr.fit(X, y)
    oml.ds.save(objs={'regr': regr}, name=dsname, overwrite=True)
    return str(regr.coef_)
'''

SCORE_MOD = '''def score_mod(dat, dsname):
    import oml
    import pandas as pd
    oml.ds.load(name=dsname, objs=['regr'], to_globals=True)
    pred = regr.predict(dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]])
    return pd.concat([dat[["SPECIES", "SEPAL_LENGTH"]],
                      pd.DataFrame(pred, columns=["PRED_SEPAL_LENGTH"])], axis=1)
'''

BUILD_LM_2 = '''def build_lm_2(dat, dsname):
    import oml
    from sklearn import linear_model
    regr = linear_model.LinearRegression()
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]
    y = dat[["SEPAL_LENGTH"]]
    regr.fit(X, y)
    name = "regr_" + dat.loc[0, "SPECIES"]
    oml.ds.save(objs={name: regr}, name=dsname, append=True)
    return name
'''

# Oracle's table-apply request for build_lm, with the datastore name as a parameter.
BUILD_LM_BODY = ('{"input":"select * from IRIS", "parameters":"{\\"oml_input_type\\":'
                 '\\"pandas.DataFrame\\", \\"dsname\\":\\"%s\\"}"}')


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    """A server of its own with 4 workers, so parallel appends and the overwrite race
    really run side by side."""
    s = EpeServer(tmp_path_factory.mktemp("epe-ds"), {"EPE_WORKERS": "4"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def users(srv: EpeServer) -> Iterator[dict[str, tuple[str, httpx.Client]]]:
    """Three users: ALICE (with IRIS), BOB and CAROL."""
    found = {k: srv.new_client() for k in ("alice", "bob", "carol")}
    put_table(found["alice"][1], "IRIS", iris_csv())
    yield found
    for _name, client in found.values():
        client.close()


@pytest.fixture
def alice(users: dict[str, tuple[str, httpx.Client]]) -> httpx.Client:
    return users["alice"][1]


@pytest.fixture
def bob(users: dict[str, tuple[str, httpx.Client]]) -> httpx.Client:
    return users["bob"][1]


@pytest.fixture
def carol(users: dict[str, tuple[str, httpx.Client]]) -> httpx.Client:
    return users["carol"][1]


@pytest.fixture
def names(users: dict[str, tuple[str, httpx.Client]]) -> dict[str, str]:
    return {k: v[0] for k, v in users.items()}



def iris_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, species) for the lab's regression, computed here to check the server's."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    return iris.data[:, 1:], iris.data[:, 0], iris.target_names[iris.target]


def assert_error(r: httpx.Response, status: int, *texts: str) -> dict[str, Any]:
    """``r`` is an error body with ``status`` whose message holds every text."""
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body.get("errorCode"), int), body
    assert isinstance(body.get("errorMessage"), str) and body["errorMessage"], body
    for text in texts:
        assert text in body["errorMessage"], (text, body)
    return body


def run(c: httpx.Client, source: str, **params: Any) -> httpx.Response:
    """do-eval of an inline function with ``params`` as its keyword arguments."""
    return c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})


def value(c: httpx.Client, source: str, **params: Any) -> Any:
    r = run(c, source, **params)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def store_script(c: httpx.Client, name: str, source: str) -> None:
    r = c.post(f"{API}/scripts", json={"name": name, "script": source})
    assert r.status_code == 201, r.text


def rest_objects(c: httpx.Client, name: str, owner: str | None = None) -> dict[str, Any]:
    """GET /datastores/{name}[/{owner}]: object name -> its entry; asserts the shape."""
    r = c.get(f"{DS}/{name}" + (f"/{owner}" if owner else ""))
    assert r.status_code == 200, r.text
    info = r.json()["result"]
    assert info["name"] == name
    assert info["objectCount"] == len(info["objects"]), info
    assert info["size"] == sum(o["size"] for o in info["objects"]), info
    return {o["name"]: o for o in info["objects"]}


def listed(c: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    r = c.get(DS)
    assert r.status_code == 200, r.text
    return {(d["owner"], d["name"]): d for d in r.json()["result"]}


SAVE = '''def f(ds, grantable=None, description=' '):
    import oml
    import numpy as np
    oml.ds.save({'a': 1, 'b': [1, 2, 3], 'arr': np.arange(6).reshape(2, 3)}, ds,
                description=description, grantable=grantable)
    return True
'''

LOAD = '''def f(ds, owner=None, objs=None):
    import oml
    got = oml.ds.load(ds, objs=objs, owner=owner, to_globals=False)
    return {k: repr(v) for k, v in got.items()}
'''


def save(c: httpx.Client, grantable: bool | None = None, description: str = " ") -> str:
    """A fresh datastore of ``c``'s with objects a, b and arr; its name."""
    name = unique_name("ds_")
    assert value(c, SAVE, ds=name, grantable=grantable, description=description) is True
    return name


def can_load(c: httpx.Client, name: str, owner: str | None) -> bool:
    """Whether ``c``'s function may load the datastore; a refusal must be OML's 400."""
    r = run(c, LOAD, ds=name, owner=owner)
    if r.status_code == 200:
        assert set(r.json()["result"]) == {"a", "b", "arr"}, r.text
        return True
    assert_error(r, 400, "ValueError", name)
    return False


# -- Oracle's lab, verbatim ---------------------------------------------------------------


def test_oracle_lab_build_score_and_per_species_models(alice: httpx.Client,
                                                       names: dict[str, str]) -> None:
    dsname, dsname2 = unique_name("ds_regr_"), unique_name("ds_pymodels_")
    store_script(alice, "build_lm", BUILD_LM)
    store_script(alice, "score_mod", SCORE_MOD)
    store_script(alice, "build_lm_2", BUILD_LM_2)

    # 1. build_lm by table-apply, Oracle's curl body on v1: the model goes to a datastore.
    r = alice.post(f"{API1}/table-apply/build_lm", content=BUILD_LM_BODY % dsname,
                   headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert r.status_code == 200, r.text
    coef = [float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", r.json()["result"])]
    assert coef == pytest.approx([0.6508, 0.7091, -0.5565], abs=1e-4)

    # 2. score_mod by row-apply, 50 rows a chunk, in parallel: each chunk loads regr.
    params = json.dumps({"oml_input_type": "pandas.DataFrame", "dsname": dsname})
    r = alice.post(f"{API}/row-apply/score_mod", json={
        "input": "select * from IRIS", "parameters": params, "rows": 50,
        "parallelFlag": True, "service": "MEDIUM"})
    assert r.status_code == 200, r.text
    rows = r.json()["result"]
    x, y, species = iris_arrays()
    expected = np.c_[x, np.ones(len(x))] @ np.linalg.lstsq(np.c_[x, np.ones(len(x))], y,
                                                           rcond=None)[0]
    assert len(rows) == 150
    assert [row["SPECIES"] for row in rows] == list(species)
    assert [row["SEPAL_LENGTH"] for row in rows] == pytest.approx(list(y))
    assert [row["PRED_SEPAL_LENGTH"] for row in rows] == pytest.approx(list(expected))

    # 3. build_lm_2 by group-apply: one model per species appended to one datastore.
    params = json.dumps({"oml_input_type": "pandas.DataFrame", "dsname": dsname2})
    r = alice.post(f"{API}/group-apply/build_lm_2", json={
        "input": "select * from IRIS", "parameters": params, "groupBy": "SPECIES",
        "parallelFlag": True, "service": "MEDIUM"})
    assert r.status_code == 200, r.text
    models = {f"regr_{s}" for s in ("setosa", "versicolor", "virginica")}
    assert r.json()["result"] == {m[5:]: m for m in models}

    # 4. Over REST: both datastores listed, with their objects and classes.
    found = listed(alice)
    owner = names["alice"]
    assert found[(owner, dsname)]["objectCount"] == 1
    assert found[(owner, dsname2)]["objectCount"] == 3
    assert found[(owner, dsname2)]["grantable"] is False
    objects = rest_objects(alice, dsname2)
    assert set(objects) == models
    assert {o["class"] for o in objects.values()} == {"LinearRegression"}
    assert all(o["size"] > 0 for o in objects.values())
    assert {k: o["class"] for k, o in rest_objects(alice, dsname).items()} == \
        {"regr": "LinearRegression"}

    # The per-species models are the ones scikit-learn fits here.
    check = '''def f(ds):
    import oml
    return {k: [float(c) for c in m.coef_.ravel()]
            for k, m in oml.ds.load(ds, to_globals=False).items()}
'''
    from sklearn.linear_model import LinearRegression

    got = value(alice, check, ds=dsname2)
    for s in ("setosa", "versicolor", "virginica"):
        mine = LinearRegression().fit(x[species == s], y[species == s])
        assert got[f"regr_{s}"] == pytest.approx(list(mine.coef_))


# -- save --------------------------------------------------------------------------------


APPEND_ONE = '''def f(i, ds):
    import oml
    oml.ds.save({"obj_%02d" % i: i * i}, ds, append=True)
    return i
'''


def test_forty_parallel_appends_lose_nothing(alice: httpx.Client) -> None:
    name = unique_name("ds_par_")
    r = alice.post(f"{API}/index-apply", json={
        "script": APPEND_ONE, "times": 40, "parallelFlag": True, "parallel": 8,
        "service": "HIGH", "parameters": json.dumps({"ds": name})})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == list(range(1, 41))
    objects = rest_objects(alice, name)
    assert set(objects) == {f"obj_{i:02d}" for i in range(1, 41)}
    assert {o["class"] for o in objects.values()} == {"int"}
    loaded = value(alice, "def f(ds):\n    import oml\n"
                          "    return oml.ds.load(ds, to_globals=False)\n", ds=name)
    assert loaded == {f"obj_{i:02d}": i * i for i in range(1, 41)}


def test_overwrite_and_append_together_is_400(alice: httpx.Client) -> None:
    name = save(alice)
    source = ("def f(ds):\n    import oml\n"
              "    oml.ds.save({'z': 1}, ds, overwrite=True, append=True)\n")
    assert_error(run(alice, source, ds=name), 400, "ValueError", "overwrite", "append")
    assert set(rest_objects(alice, name)) == {"a", "b", "arr"}


def test_saving_an_existing_name_needs_overwrite_or_append(alice: httpx.Client) -> None:
    name = save(alice, description="first")
    source = '''def f(ds, **how):
    import oml
    oml.ds.save({'z': 26}, ds, description='second', **how)
    return sorted(oml.ds.load(ds, to_globals=False))
'''
    body = assert_error(run(alice, source, ds=name), 400, "ValueError", name)
    assert "already" in body["errorMessage"], body
    assert set(rest_objects(alice, name)) == {"a", "b", "arr"}
    # append keeps what was there (and its description); overwrite replaces both.
    assert value(alice, source, ds=name, append=True) == ["a", "arr", "b", "z"]
    assert alice.get(f"{DS}/{name}").json()["result"]["description"] == "first"
    assert value(alice, source, ds=name, overwrite=True) == ["z"]
    assert alice.get(f"{DS}/{name}").json()["result"]["description"] == "second"


def test_save_refuses_what_is_not_a_dict_of_objects(alice: httpx.Client) -> None:
    source = "def f(ds):\n    import oml\n    oml.ds.save([1, 2], ds)\n"
    assert_error(run(alice, source, ds=unique_name("ds_")), 400, "objs")


# -- load ---------------------------------------------------------------------------------


def test_load_to_globals_sets_the_functions_globals(alice: httpx.Client) -> None:
    name = save(alice)
    # ``a`` and ``arr`` are never assigned in the function: Python looks them up in its
    # globals, where load must have put them.
    source = '''def f(ds):
    import oml
    names = oml.ds.load(name=ds, objs=['a', 'arr'], to_globals=True)
    return {'names': sorted(names), 'a': a, 'arr': arr.tolist(),
            'b_loaded': 'b' in globals()}
'''
    assert value(alice, source, ds=name) == {"names": ["a", "arr"], "a": 1,
                                             "arr": [[0, 1, 2], [3, 4, 5]], "b_loaded": False}
    # Default to_globals=True; to_globals=False returns a dict and touches no global.
    source = '''def f(ds):
    import oml
    everything = oml.ds.load(ds)
    got = oml.ds.load(ds, objs=['b'], to_globals=False)
    return [sorted(everything), type(got).__name__, got, b]
'''
    assert value(alice, source, ds=name) == [["a", "arr", "b"], "dict", {"b": [1, 2, 3]},
                                             [1, 2, 3]]


def test_loading_what_does_not_exist_is_400(alice: httpx.Client) -> None:
    name = save(alice)
    assert_error(run(alice, LOAD, ds=unique_name("ds_none_")), 400, "ValueError")
    assert_error(run(alice, LOAD, ds=name, objs=["nope"]), 400, "ValueError", "nope")


def test_class_defined_in_the_script_round_trips(alice: httpx.Client) -> None:
    name = unique_name("ds_cls_")
    saver = '''class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2

def f(ds):
    import oml
    oml.ds.save({'p': Point(3, 4)}, ds)
    return True
'''
    # Loaded by another script that has no class Point at all.
    loader = '''def f(ds):
    import oml
    p = oml.ds.load(ds, to_globals=False)['p']
    return [type(p).__name__, p.x, p.y, p.norm2()]
'''
    assert value(alice, saver, ds=name) is True
    assert value(alice, loader, ds=name) == ["Point", 3, 4, 25]
    assert rest_objects(alice, name)["p"]["class"] == "Point"


# Saves objects while pretending the libraries (and Python) are other versions: the
# worker's own modules, patched for the duration of the save and restored after.
SAVE_UNDER_OTHER_VERSIONS = '''import platform

def f(ds):
    import oml
    import pandas
    real_pandas, real_python = pandas.__version__, platform.python_version
    pandas.__version__ = '0.0.1'
    platform.python_version = lambda: '2.7.18'
    try:
        oml.ds.save({'plain': [1, 2, 3]}, ds)
    finally:
        pandas.__version__, platform.python_version = real_pandas, real_python
    return True
'''


def test_loading_under_other_versions_warns(alice: httpx.Client) -> None:
    name = unique_name("ds_ver_")
    assert value(alice, SAVE_UNDER_OTHER_VERSIONS, ds=name) is True
    loader = '''def f(ds):
    import oml, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        got = oml.ds.load(ds, to_globals=False)
    return [got, [str(w.message) for w in caught]]
'''
    got, said = value(alice, loader, ds=name)
    assert got == {"plain": [1, 2, 3]}
    assert len(said) == 1, said
    assert "'plain'" in said[0] and "versions" in said[0], said
    assert "pandas 0.0.1" in said[0] and "python 2.7.18" in said[0], said


# Writes a module into the worker's working folder, pickles an instance of its class
# (by reference: the module is importable), then removes the module from the folder,
# sys.modules and sys.path, so that no later call, in this worker or another, finds it.
SAVE_WITH_MODULE = '''import importlib
import os
import platform
import sys

def f(ds, module, fake_versions=False):
    import oml
    import pandas
    here = os.getcwd()
    path = os.path.join(here, module + ".py")
    with open(path, "w") as out:
        out.write("__version__ = '1.0'\\n"
                  "class Thing:\\n"
                  "    def __init__(self, v):\\n"
                  "        self.v = v\\n")
    on_path = here in sys.path
    if not on_path:
        sys.path.insert(0, here)
    importlib.invalidate_caches()
    real_pandas, real_python = pandas.__version__, platform.python_version
    try:
        mod = importlib.import_module(module)
        if fake_versions:
            pandas.__version__ = '0.0.1'
            platform.python_version = lambda: '2.7.18'
        oml.ds.save({'thing': mod.Thing(7), 'plain': [1, 2]}, ds)
    finally:
        pandas.__version__, platform.python_version = real_pandas, real_python
        os.remove(path)
        sys.modules.pop(module, None)
        if not on_path:
            sys.path.remove(here)
        importlib.invalidate_caches()
    return on_path
'''


@pytest.mark.parametrize("fake_versions", [True, False], ids=["other-versions", "same"])
def test_an_object_that_cannot_be_unpickled_is_named(alice: httpx.Client,
                                                     fake_versions: bool) -> None:
    name, module = unique_name("ds_mod_"), unique_name("epe_test_mod_").lower()
    value(alice, SAVE_WITH_MODULE, ds=name, module=module, fake_versions=fake_versions)
    assert rest_objects(alice, name)["thing"]["class"] == "Thing"
    body = assert_error(run(alice, LOAD, ds=name, objs=["thing"]), 400, "'thing'", module)
    if fake_versions:
        # The message says the object was made under other versions, and which.
        assert "versions" in body["errorMessage"], body
        assert "pandas 0.0.1" in body["errorMessage"], body
        assert "python 2.7.18" in body["errorMessage"], body
    else:
        assert "pandas" not in body["errorMessage"], body
    # The other object of the same datastore still loads.
    assert value(alice, LOAD, ds=name, objs=["plain"]) == {"plain": "[1, 2]"}


# -- dir, describe, delete ----------------------------------------------------------------


DIR = '''def f(name=None, regex_match=False, dstype='user'):
    import oml
    d = oml.ds.dir(name=name, regex_match=regex_match, dstype=dstype)
    return {'type': type(d).__name__, 'columns': list(d.columns),
            'rows': d.astype(object).where(d.notna(), None).to_dict('records')}
'''


def ds_dir(c: httpx.Client, **kw: Any) -> tuple[list[str], list[dict[str, Any]]]:
    got = value(c, DIR, **kw)
    assert got["type"] == "DataFrame", got
    return got["columns"], got["rows"]


def test_dir_each_dstype_has_omls_columns(alice: httpx.Client, bob: httpx.Client,
                                          carol: httpx.Client,
                                          names: dict[str, str]) -> None:
    prefix = unique_name("dsdir_")
    private = save_named(alice, f"{prefix}_private", grantable=False)
    shared = save_named(alice, f"{prefix}_shared", grantable=True)
    unshared = save_named(alice, f"{prefix}_grantable", grantable=True)
    assert alice.post(f"{DS}/{shared}/grants", json={"user": names["bob"]}).status_code == 200
    assert alice.post(f"{DS}/{shared}/grants", json={"user": None}).status_code == 200
    mine = {private, shared, unshared}
    regex = f"^{prefix}_"

    columns, rows = ds_dir(alice, name=regex, regex_match=True)
    assert columns == DS_COLUMNS
    assert {r["datastore_name"] for r in rows} == mine
    row = next(r for r in rows if r["datastore_name"] == private)
    assert row["object_count"] == 3 and row["size"] > 0 and row["description"] == " "
    assert re.match(r"\d{4}-\d\d-\d\d", str(row["date"])), row

    columns, rows = ds_dir(alice, name=regex, regex_match=True, dstype="private")
    assert columns == DS_COLUMNS
    assert {r["datastore_name"] for r in rows} == {private, unshared}

    columns, rows = ds_dir(alice, name=regex, regex_match=True, dstype="grantable")
    assert columns == DS_COLUMNS
    assert {r["datastore_name"] for r in rows} == {shared, unshared}

    columns, rows = ds_dir(alice, name=regex, regex_match=True, dstype="grant")
    assert columns == ["datastore_name", "grantee"]  # OML's, in its order
    assert {(r["datastore_name"], r["grantee"]) for r in rows} == \
        {(shared, names["bob"]), (shared, "PUBLIC")}

    columns, rows = ds_dir(alice, name=regex, regex_match=True, dstype="all")
    assert columns == ["owner", *DS_COLUMNS]
    assert {(r["owner"], r["datastore_name"]) for r in rows} == \
        {(names["alice"], n) for n in mine}

    own = save_named(bob, f"{prefix}_bobs")
    for who, expected_granted in ((bob, {shared}), (carol, {shared})):
        columns, rows = ds_dir(who, name=regex, regex_match=True, dstype="granted")
        assert columns == ["owner", *DS_COLUMNS]
        assert {(r["owner"], r["datastore_name"]) for r in rows} == \
            {(names["alice"], n) for n in expected_granted}
    columns, rows = ds_dir(bob, name=regex, regex_match=True, dstype="all")
    assert {r["datastore_name"] for r in rows} == {shared, own}
    _columns, rows = ds_dir(bob, name=regex, regex_match=True)
    assert {r["datastore_name"] for r in rows} == {own}

    # Without regex_match the name is matched exactly; no match is an empty frame.
    assert [r["datastore_name"] for r in ds_dir(alice, name=private)[1]] == [private]
    assert ds_dir(alice, name=regex)[1] == []
    assert_error(run(alice, DIR, dstype="everything"), 400, "dstype")


def save_named(c: httpx.Client, name: str, grantable: bool | None = None) -> str:
    assert value(c, SAVE, ds=name, grantable=grantable) is True
    return name


DESCRIBE = '''def f(ds, owner=None):
    import oml
    d = oml.ds.describe(ds, owner=owner)
    return {'columns': list(d.columns),
            'rows': d.astype(object).where(d.notna(), None).to_dict('records')}
'''


def test_describe_shows_class_size_and_shape(alice: httpx.Client) -> None:
    name = unique_name("ds_desc_")
    saver = '''def f(ds):
    import oml
    import numpy as np
    import pandas as pd
    oml.ds.save({'frame': pd.DataFrame({'A': range(150), 'B': 1.5, 'C': 'x'}),
                 'matrix': np.zeros((4, 3)), 'words': ['a', 'b']}, ds)
    return True
'''
    assert value(alice, saver, ds=name) is True
    got = value(alice, DESCRIBE, ds=name)
    assert got["columns"] == DESCRIBE_COLUMNS
    rows = {r["object_name"]: r for r in got["rows"]}
    assert set(rows) == {"frame", "matrix", "words"}
    assert (rows["frame"]["class"], rows["frame"]["length"], rows["frame"]["row_count"],
            rows["frame"]["col_count"]) == ("DataFrame", 150, 150, 3)
    # OML counts 1, 1, 1 for what is not a list, dict or DataFrame, an array too.
    assert (rows["matrix"]["class"], rows["matrix"]["length"], rows["matrix"]["row_count"],
            rows["matrix"]["col_count"]) == ("ndarray", 1, 1, 1)
    assert (rows["words"]["class"], rows["words"]["length"], rows["words"]["row_count"],
            rows["words"]["col_count"]) == ("list", 2, 1, 2)
    assert all(isinstance(r["size"], int) and r["size"] > 0 for r in rows.values())
    # REST shows the same objects, sizes and shapes.
    objects = rest_objects(alice, name)
    for k, r in rows.items():
        assert (objects[k]["class"], objects[k]["size"], objects[k]["length"],
                objects[k]["rowCount"], objects[k]["colCount"]) == \
            (r["class"], r["size"], r["length"], r["row_count"], r["col_count"])
    assert_error(run(alice, DESCRIBE, ds=unique_name("ds_none_")), 400, "ValueError")


def test_delete_objects_then_the_datastore(alice: httpx.Client,
                                          names: dict[str, str]) -> None:
    name = save(alice)
    source = '''def f(ds, objs=None, regex_match=False):
    import oml
    oml.ds.delete(ds, objs=objs, regex_match=regex_match)
    return oml.ds.dir(name=ds)['object_count'].tolist()
'''
    assert value(alice, source, ds=name, objs=["a", "b"]) == [1]
    assert set(rest_objects(alice, name)) == {"arr"}
    assert value(alice, source, ds=name) == []
    assert_error(alice.get(f"{DS}/{name}"), 404)
    assert_error(run(alice, source, ds=name), 400, "ValueError", name)
    # With regex_match, every datastore whose name matches goes.
    prefix = unique_name("ds_rx_")
    for i in range(3):
        save_named(alice, f"{prefix}_{i}")
    keep = save(alice)
    assert value(alice, source, ds=f"^{prefix}_", regex_match=True) == []
    assert not any(n.startswith(prefix) for _o, n in listed(alice))
    assert (names["alice"], keep) in listed(alice)


# -- grants ---------------------------------------------------------------------------------


def test_another_user_cannot_load_until_granted(alice: httpx.Client, bob: httpx.Client,
                                                carol: httpx.Client,
                                                names: dict[str, str]) -> None:
    name, owner = save(alice, grantable=True), names["alice"]
    assert not can_load(bob, name, owner)
    assert not can_load(bob, name, None)  # bob has no datastore of that name
    assert_error(bob.get(f"{DS}/{name}/{owner}"), 404)

    r = alice.post(f"{DS}/{name}/grants", json={"user": names["bob"].lower()})
    assert r.status_code == 200, r.text
    assert can_load(bob, name, owner)
    assert can_load(bob, name, owner.lower())
    assert not can_load(carol, name, owner)
    assert set(rest_objects(bob, name, owner)) == {"a", "b", "arr"}
    assert (owner, name) in listed(bob)
    assert (owner, name) not in listed(carol)
    assert_error(carol.get(f"{DS}/{name}/{owner}"), 404)
    # describe as the grantee, inside a function.
    got = value(bob, DESCRIBE, ds=name, owner=owner)
    assert {r["object_name"] for r in got["rows"]} == {"a", "b", "arr"}

    r = alice.delete(f"{DS}/{name}/grants/{names['bob']}")
    assert r.status_code == 200, r.text
    assert not can_load(bob, name, owner)
    assert_error(bob.get(f"{DS}/{name}/{owner}"), 404)
    assert (owner, name) not in listed(bob)
    assert_error(alice.delete(f"{DS}/{name}/grants/{names['bob']}"), 404)


GRANT = '''def f(name, typ='datastore', user=None, revoke=False):
    import oml
    (oml.revoke if revoke else oml.grant)(name, typ, user)
    return True
'''


def test_grant_to_public_and_revoke_inside_functions(alice: httpx.Client, bob: httpx.Client,
                                                     carol: httpx.Client,
                                                     names: dict[str, str]) -> None:
    name, owner = save(alice, grantable=True), names["alice"]
    assert value(alice, GRANT, name=name) is True  # user=None: everyone
    assert can_load(bob, name, owner) and can_load(carol, name, owner)
    assert (owner, name) in listed(carol)
    assert value(alice, GRANT, name=name, revoke=True) is True
    assert not can_load(bob, name, owner) and not can_load(carol, name, owner)

    # To one user, by name, then back.
    assert value(alice, GRANT, name=name, user=names["carol"]) is True
    assert can_load(carol, name, owner) and not can_load(bob, name, owner)
    assert value(alice, GRANT, name=name, user=names["carol"], revoke=True) is True
    assert not can_load(carol, name, owner)
    # Revoking what was not granted, granting to nobody that exists: OML's ValueError.
    assert_error(run(alice, GRANT, name=name, user=names["carol"], revoke=True), 400,
                 "ValueError")
    assert_error(run(alice, GRANT, name=name, user=unique_name("NOSUCH")), 400, "ValueError")
    # A user cannot grant what is not theirs.
    assert_error(run(bob, GRANT, name=name), 400, "ValueError")
    assert_error(bob.post(f"{DS}/{name}/grants", json={"user": None}), 404)


def test_grant_needs_grantable_at_save(alice: httpx.Client, bob: httpx.Client,
                                       names: dict[str, str]) -> None:
    name = save(alice)  # grantable=None
    assert_error(run(alice, GRANT, name=name, user=names["bob"]), 400, "ValueError",
                 "grantable")
    assert_error(alice.post(f"{DS}/{name}/grants", json={"user": names["bob"]}), 403,
                 "grantable")
    assert not can_load(bob, name, names["alice"])
    # An overwrite with grantable=True makes it grantable.
    source = ("def f(ds):\n    import oml\n"
              "    oml.ds.save({'a': 1, 'b': [1, 2, 3], 'arr': 0}, ds, grantable=True, "
              "overwrite=True)\n")
    assert run(alice, source, ds=name).status_code == 200
    assert value(alice, GRANT, name=name, user=names["bob"]) is True
    assert can_load(bob, name, names["alice"])


def test_script_grants_inside_functions(alice: httpx.Client, bob: httpx.Client,
                                        names: dict[str, str]) -> None:
    script = unique_name("priv_")
    store_script(alice, script, "def f():\n    return 'secret sauce'\n")
    path = f"{API}/do-eval/{script}/{names['alice']}"
    assert_error(bob.post(path), 404)
    assert value(alice, GRANT, name=script, typ="pyqscript", user=names["bob"]) is True
    r = bob.post(path)
    assert r.status_code == 200, r.text
    assert r.json() == {"result": "secret sauce"}
    assert value(alice, GRANT, name=script, typ="pyqscript", user=names["bob"],
                 revoke=True) is True
    assert_error(bob.post(path), 404)
    assert_error(run(alice, GRANT, name=script, typ="table"), 400, "ValueError")
    assert_error(run(bob, GRANT, name=script, typ="pyqscript"), 400, "ValueError")


# -- REST --------------------------------------------------------------------------------------


def test_rest_list_describe_delete(alice: httpx.Client, names: dict[str, str]) -> None:
    name = save(alice, grantable=True, description="three things")
    entry = listed(alice)[(names["alice"], name)]
    assert entry["objectCount"] == 3 and entry["size"] > 0
    assert entry["description"] == "three things" and entry["grantable"] is True
    assert re.match(r"\d{4}-\d\d-\d\dT", entry["date"]), entry
    objects = rest_objects(alice, name)
    assert {k: o["class"] for k, o in objects.items()} == \
        {"a": "int", "b": "list", "arr": "ndarray"}
    # OML counts 1 row and 1 column for what is not a DataFrame (or a list or dict).
    assert (objects["arr"]["rowCount"], objects["arr"]["colCount"]) == (1, 1)
    assert set(rest_objects(alice, name, names["alice"])) == set(objects)

    r = alice.delete(f"{DS}/{name}")
    assert r.status_code == 200, r.text
    assert (names["alice"], name) not in listed(alice)
    assert_error(alice.get(f"{DS}/{name}"), 404)
    assert_error(alice.delete(f"{DS}/{name}"), 404)
    assert not can_load(alice, name, None)
    # v1 answers the same routes.
    assert alice.get(f"{API1}/datastores").status_code == 200


def test_rest_isolation_between_users(alice: httpx.Client, bob: httpx.Client,
                                      names: dict[str, str]) -> None:
    name = save(alice, grantable=True)
    for path in (f"{DS}/{name}", f"{DS}/{name}/{names['alice']}"):
        assert_error(bob.get(path), 404)
    assert_error(bob.delete(f"{DS}/{name}"), 404)
    assert_error(bob.post(f"{DS}/{name}/grants", json={"user": names["bob"]}), 404)
    assert_error(bob.delete(f"{DS}/{name}/grants/{names['bob']}"), 404)
    assert (names["alice"], name) not in listed(bob)
    # Still there, untouched, for its owner.
    assert set(rest_objects(alice, name)) == {"a", "b", "arr"}
    # The same name may exist for both users: each sees their own.
    other = '''def f(ds):
    import oml
    oml.ds.save({'bobs': 1}, ds)
    return sorted(oml.ds.load(ds, to_globals=False))
'''
    assert value(bob, other, ds=name) == ["bobs"]
    assert set(rest_objects(bob, name)) == {"bobs"}
    assert set(rest_objects(alice, name)) == {"a", "b", "arr"}
    assert bob.delete(f"{DS}/{name}").status_code == 200
    assert set(rest_objects(alice, name)) == {"a", "b", "arr"}
    # Without a token: 401.
    with httpx.Client(base_url=str(alice.base_url)) as anonymous:
        assert_error(anonymous.get(DS), 401)


def test_rest_errors(alice: httpx.Client) -> None:
    name = save(alice, grantable=True)
    assert_error(alice.post(f"{DS}/{name}/grants", content=b"not json",
                            headers={"Content-Type": "application/json"}), 400)
    assert_error(alice.post(f"{DS}/{name}/grants", json={}), 400)
    assert_error(alice.post(f"{DS}/{name}/grants", json={"user": unique_name("NOSUCH")}), 404)


# -- overwrite is atomic ----------------------------------------------------------------------


OVERWRITER = '''def f(ds, stop, rounds=1500):
    import oml
    sets = [['a0', 'a1', 'a2'], ['b0', 'b1', 'b2', 'b3', 'b4']]
    n = 0
    for n in range(1, rounds + 1):
        which = n % 2
        oml.ds.save({k: (which, k) for k in sets[which]}, ds, overwrite=True)
        if n % 5 == 0 and len(oml.ds.dir(name=stop)):
            break
    return n
'''

READER = '''def f(ds, stop, rounds=150):
    import oml
    expected = {0: {'a0', 'a1', 'a2'}, 1: {'b0', 'b1', 'b2', 'b3', 'b4'}}
    seen, bad = {0: 0, 1: 0}, []
    for _ in range(rounds):
        got = oml.ds.load(ds, to_globals=False)
        tags = {v[0] for v in got.values()}
        if len(tags) == 1 and set(got) == expected[tags.pop()]:
            seen[got[sorted(got)[0]][0]] += 1
        else:
            bad.append(sorted(got))
    oml.ds.save({'done': True}, stop)
    return {'A': seen[0], 'B': seen[1], 'bad': bad[:5], 'nbad': len(bad)}
'''


A_SET, B_SET = {"a0", "a1", "a2"}, {"b0", "b1", "b2", "b3", "b4"}


def start_overwriter(c: httpx.Client, name: str, stop: str) -> str:
    """Save version A of ``name``, then start the overwriting job; its URL."""
    first = "def f(ds):\n    import oml\n    oml.ds.save({k: (0, k) for k in %r}, ds)\n"
    assert run(c, first % sorted(A_SET), ds=name).status_code == 200
    return submit(c, OVERWRITER, ds=name, stop=stop)


def submit(c: httpx.Client, source: str, **params: Any) -> str:
    r = c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params),
                                      "asyncFlag": True})
    assert r.status_code == 201, r.text
    return r.headers["Location"]


def job_result(c: httpx.Client, url: str) -> Any:
    wait_for(lambda: c.get(url).status_code == 302, timeout=120)
    r = c.get(url + "/result")
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_overwrite_is_atomic_for_function_readers(alice: httpx.Client) -> None:
    name, stop = unique_name("ds_atomic_"), unique_name("ds_stop_")
    writer = start_overwriter(alice, name, stop)
    reader = submit(alice, READER, ds=name, stop=stop)
    seen, rounds = job_result(alice, reader), job_result(alice, writer)
    assert seen["nbad"] == 0, seen
    # Both versions were seen: the reader really ran while the writer overwrote.
    assert seen["A"] > 0 and seen["B"] > 0, (seen, rounds)
    assert seen["A"] + seen["B"] == 150
    assert rounds < 1500, "the writer never saw the reader finish"


def test_overwrite_is_atomic_for_rest_readers(alice: httpx.Client) -> None:
    """GET /datastores/{name} during overwrites: one whole version, its count agreeing."""
    name, stop = unique_name("ds_atomic_"), unique_name("ds_stop_")
    writer = start_overwriter(alice, name, stop)
    seen: dict[str, int] = {"A": 0, "B": 0}
    bad: list[Any] = []
    for _ in range(300):
        r = alice.get(f"{DS}/{name}")
        assert r.status_code == 200, r.text
        info = r.json()["result"]
        got = {o["name"] for o in info["objects"]}
        whole = got in (A_SET, B_SET) and info["objectCount"] == len(got) and \
            info["size"] == sum(o["size"] for o in info["objects"])
        if whole:
            seen["A" if got == A_SET else "B"] += 1
        else:
            bad.append((info["objectCount"], info["size"],
                        sorted((o["name"], o["size"]) for o in info["objects"])))
    assert run(alice, "def f(ds):\n    import oml\n    oml.ds.save({'done': 1}, ds)\n",
               ds=stop).status_code == 200
    rounds = job_result(alice, writer)
    assert rounds < 1500, "the writer ended before the readers did"
    assert seen["A"] > 0 and seen["B"] > 0, (seen, bad[:3])
    assert bad == [], f"{len(bad)} of 300 answers mixed two versions, e.g. {bad[:3]}"


# -- oml.sync -----------------------------------------------------------------------------------


SYNC = '''def f(table=None, query=None):
    import oml
    proxy = oml.sync(table=table, query=query)
    df = proxy.pull()
    return {'type': type(df).__name__, 'shape': list(df.shape), 'columns': list(df.columns),
            'first': df.iloc[0].tolist() if len(df) else None}
'''


def test_sync_reads_tables_and_queries_as_the_caller(alice: httpx.Client,
                                                     bob: httpx.Client) -> None:
    got = value(alice, SYNC, table="IRIS")
    assert got["type"] == "DataFrame" and got["shape"] == [150, 5]
    assert got["columns"] == ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH",
                              "SPECIES"]
    got = value(alice, SYNC, query="select SPECIES, count(*) as N from IRIS "
                                   "group by SPECIES order by SPECIES")
    assert got["shape"] == [3, 2] and got["first"] == ["setosa", 50]
    # Bob has no IRIS; nobody writes through a query.
    assert_error(run(bob, SYNC, table="IRIS"), 400, "ValueError")
    assert_error(run(bob, SYNC, query="select * from IRIS"), 400, "ValueError")
    r = run(alice, SYNC, query="delete from IRIS")
    assert_error(r, 400, "ValueError")
    assert value(alice, SYNC, table="IRIS")["shape"] == [150, 5]
    assert_error(run(alice, "def f():\n    import oml\n    oml.sync(table='IRIS', "
                            "query='select 1')\n"), 400, "ValueError")
