"""Oracle's OML4Py notebooks, ported to epe by changing two lines (docs/client.md).

The cells are those of Oracle's lab "Run UDFs with REST API for EPE" (Python
parts: Tasks 2 to 7) and of the OML4Py user's guide pages it builds on (the
table_apply, row_apply, group_apply, index_apply, graphics, script repository
and datastore examples). Only the import line and the connect line differ from
the notebook; the asserts check what the notebook prints, against a real
``epe serve``.

One fact checked against the real IRIS: the published coefficient 2.2299405 is
that of ``build_lm_1`` fitting PETAL_LENGTH on PETAL_WIDTH, as the guide's
table_apply example does. The lab's five-feature model (``pd.get_dummies`` of
SPECIES, here ``build_lm_species``) has no coefficient of that value; its
coefficients are checked against scikit-learn run here.
"""

from __future__ import annotations

from collections.abc import Iterator
from statistics import mean

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.linear_model import LinearRegression

from epe import oml  # the notebook: import oml
from tests.oracle_examples import RANDOM_RED_DOTS, notebook_function
from tests.serverproc import EpeServer

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def connected(server: EpeServer) -> Iterator[None]:
    user, password = server.add_user()
    oml.connect(url=server.url, user=user, password=password)  # the notebook: already connected
    yield
    oml.disconnect()


# -- the notebook's functions -------------------------------------------------------------


def build_lm_1(dat):
    from sklearn import linear_model
    regr = linear_model.LinearRegression()
    import pandas as pd
    dat = pd.get_dummies(dat, drop_first=True)
    X = dat[["PETAL_WIDTH"]]
    y = dat[["PETAL_LENGTH"]]
    regr.fit(X, y)
    return regr


def build_lm_species(dat):
    from sklearn import linear_model
    regr = linear_model.LinearRegression()
    import pandas as pd
    dat = pd.get_dummies(dat, drop_first=True)
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH", "SPECIES_versicolor",
             "SPECIES_virginica"]]
    y = dat[["SEPAL_LENGTH"]]
    regr.fit(X, y)
    return regr


def score_lm_1(dat, model):
    import pandas as pd
    pred = model.predict(dat[["PETAL_WIDTH"]])
    return pd.concat([dat[["SPECIES", "PETAL_LENGTH"]],
                      pd.DataFrame(pred, columns=["PRED_PETAL_LENGTH"])], axis=1)


def build_lm(dat, dsname):
    from sklearn import linear_model

    import oml
    regr = linear_model.LinearRegression()
    import pandas as pd  # noqa: F401 -- as in the lab
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]
    y = dat[["SEPAL_LENGTH"]]
    regr.fit(X, y)
    oml.ds.save(objs={'regr': regr}, name=dsname, overwrite=True)
    return str(regr.coef_)


def score_mod(dat, dsname):
    import pandas as pd

    import oml
    obj_dict = oml.ds.load(name=dsname, to_globals=False)
    regr = obj_dict["regr"]
    pred = regr.predict(dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]])
    return pd.concat([dat[["SPECIES", "SEPAL_LENGTH"]],
                      pd.DataFrame(pred, columns=["PRED_SEPAL_LENGTH"])], axis=1)


def build_lm_2(dat, dsname):
    from sklearn import linear_model

    import oml
    regr = linear_model.LinearRegression()
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]
    y = dat[["SEPAL_LENGTH"]]
    regr.fit(X, y)
    name = "regr_" + dat.loc[0, "SPECIES"]
    oml.ds.save(objs={name: regr}, name=dsname, append=True)
    return name


def group_count(dat):
    import pandas as pd
    return pd.DataFrame([(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], dat.shape[0])],
                        columns=["SPECIES", "SEPAL_LENGTH", "COUNT"])


def compute_random_mean(index):
    from statistics import mean

    import numpy as np
    import scipy  # noqa: F401 -- as in the guide
    np.random.seed(index)
    res = np.random.random((100, 1)) * 10
    return mean(res[1])


# Oracle's RandomRedDots, the demo's copy, defined as the notebook's cell defines it.
RandomRedDots = notebook_function(RANDOM_RED_DOTS)


# Published output of index_apply(times=12, func=compute_random_mean): the first ten.
PUBLISHED_MEANS = [7.2032449344, 0.2592623183, 7.0814782262, 5.4723224918, 8.7073230618,
                   3.3197980531, 7.7991879224, 9.6854066282, 5.0187459215, 0.2075194936]


def random_means(times: int) -> list[float]:
    """compute_random_mean's values, computed here the same way."""
    values = []
    for index in range(1, times + 1):
        np.random.seed(index)
        values.append(float(mean(np.random.random((100, 1))[1] * 10)))
    return values


# -- Task 2: a proxy object for the IRIS table --------------------------------------------


@pytest.fixture(scope="module")
def iris_df() -> pd.DataFrame:
    iris = datasets.load_iris()
    x = pd.DataFrame(iris.data, columns=['SEPAL_LENGTH', 'SEPAL_WIDTH',
                                         'PETAL_LENGTH', 'PETAL_WIDTH'])
    y = pd.DataFrame(list(map(lambda x: {0: 'setosa', 1: 'versicolor', 2: 'virginica'}[x],
                              iris.target)), columns=['SPECIES'])
    return pd.concat([x, y], axis=1)


@pytest.fixture(scope="module")
def IRIS(iris_df: pd.DataFrame) -> oml.DataFrame:
    try:  # noqa: SIM105 -- the notebook's cell
        oml.drop(table="IRIS")
    except Exception:
        pass
    IRIS = oml.create(iris_df, table="IRIS")
    return IRIS


def test_task2_iris_proxy(IRIS: oml.DataFrame, iris_df: pd.DataFrame) -> None:
    assert oml.isconnected()
    print(IRIS.columns)
    assert IRIS.columns == ['SEPAL_LENGTH', 'SEPAL_WIDTH', 'PETAL_LENGTH', 'PETAL_WIDTH',
                            'SPECIES']
    assert IRIS.shape == (150, 5)
    z = IRIS.head()
    assert z.pull().equals(iris_df.head())
    assert "IRIS" in oml.dir()
    IRIS2 = oml.sync(table="IRIS")
    assert IRIS2.pull().equals(iris_df)


# -- Task 3: build a scikit-learn model with embedded Python execution --------------------


@pytest.fixture(scope="module")
def mod(IRIS: oml.DataFrame) -> LinearRegression:
    mod = oml.table_apply(data=IRIS, func=build_lm_1)
    return mod


def test_task3_table_apply_returns_the_model(mod: LinearRegression) -> None:
    print(mod)
    assert isinstance(mod, LinearRegression)
    assert mod.coef_ == pytest.approx(np.array([[2.2299405]]))
    assert mod.intercept_ == pytest.approx(np.array([1.08355803]))


def test_task3_the_labs_model_with_species(IRIS: oml.DataFrame, iris_df: pd.DataFrame) -> None:
    regr = oml.table_apply(data=IRIS, func=build_lm_species,
                           oml_input_type="pandas.DataFrame")
    local = build_lm_species(iris_df)
    assert isinstance(regr, LinearRegression)
    assert regr.coef_ == pytest.approx(local.coef_, abs=1e-12)
    assert regr.intercept_ == pytest.approx(local.intercept_, abs=1e-12)


def test_task3_1_the_udf_in_the_script_repository(IRIS: oml.DataFrame) -> None:
    oml.script.create("build_lm_1", func=build_lm_1, overwrite=True)
    scripts = oml.script.dir(sctype="user")
    print(scripts)
    assert list(scripts["name"]) == ["build_lm_1"]
    assert "def build_lm_1(dat):" in scripts["script"][0]
    build_lm_1_again = oml.script.load(name="build_lm_1")
    mod2 = oml.table_apply(data=IRIS, func="build_lm_1")
    assert mod2.coef_ == pytest.approx(np.array([[2.2299405]]))
    mod3 = oml.table_apply(data=IRIS, func=build_lm_1_again)
    assert mod3.coef_ == pytest.approx(np.array([[2.2299405]]))
    oml.script.drop("build_lm_1")
    assert oml.script.dir(sctype="user").empty


# -- Task 4: table_apply saving the model in a datastore ----------------------------------


@pytest.fixture(scope="module")
def ds_pymodel(IRIS: oml.DataFrame) -> str:
    res = oml.table_apply(data=IRIS, func=build_lm, dsname="ds_pymodel",
                          oml_input_type="pandas.DataFrame")
    print(res)
    return str(res)


def test_task4_the_model_is_in_the_datastore(ds_pymodel: str, iris_df: pd.DataFrame) -> None:
    expected = LinearRegression().fit(iris_df[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]],
                                      iris_df[["SEPAL_LENGTH"]])
    assert ds_pymodel == str(expected.coef_)
    stores = oml.ds.dir(dstype="user")
    print(stores)
    assert list(stores["datastore_name"]) == ["ds_pymodel"]
    assert stores["object_count"][0] == 1
    objects = oml.ds.describe(name="ds_pymodel")
    print(objects)
    assert list(objects["object_name"]) == ["regr"]
    assert list(objects["class"]) == ["LinearRegression"]
    oml.ds.load(name="ds_pymodel", objs=["regr"], to_globals=True)
    regr = globals()["regr"]
    assert regr.coef_ == pytest.approx(expected.coef_)


# -- Task 6: scoring with system-supported data parallelism -------------------------------


def test_task6_row_apply_scores_with_the_model(IRIS: oml.DataFrame, mod: LinearRegression,
                                               iris_df: pd.DataFrame) -> None:
    res = oml.row_apply(IRIS, func=score_lm_1, rows=10, model=mod)
    print(res)
    assert isinstance(res, pd.DataFrame)
    assert res.shape == (150, 3)
    assert list(res.columns) == ["SPECIES", "PETAL_LENGTH", "PRED_PETAL_LENGTH"]
    assert list(res["SPECIES"]) == list(iris_df["SPECIES"])
    assert res["PRED_PETAL_LENGTH"].to_numpy() == pytest.approx(
        mod.predict(iris_df[["PETAL_WIDTH"]]).ravel())


def test_task6_row_apply_in_parallel_from_the_datastore(IRIS: oml.DataFrame,
                                                        ds_pymodel: str) -> None:
    res = oml.row_apply(IRIS, func=score_mod, rows=50, parallel=2, dsname="ds_pymodel",
                        oml_input_type="pandas.DataFrame")
    assert res.shape == (150, 3)
    assert list(res.columns) == ["SPECIES", "SEPAL_LENGTH", "PRED_SEPAL_LENGTH"]


def test_group_apply_one_call_per_species(IRIS: oml.DataFrame) -> None:
    res = oml.group_apply(IRIS, index=oml.DataFrame(IRIS['SPECIES']), func=group_count,
                          oml_input_type="pandas.DataFrame")
    print(res)
    assert isinstance(res, dict)
    assert sorted(res) == ["setosa", "versicolor", "virginica"]
    for species, frame in res.items():
        assert list(frame.columns) == ["SPECIES", "SEPAL_LENGTH", "COUNT"]
        assert frame["SPECIES"][0] == species
        assert frame["COUNT"][0] == 50


def test_group_apply_one_model_per_species_appended(IRIS: oml.DataFrame) -> None:
    res = oml.group_apply(IRIS[:, ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH",
                                   "PETAL_WIDTH", "SPECIES"]],
                          index=oml.DataFrame(IRIS['SPECIES']), func=build_lm_2,
                          dsname="ds_pymodels", oml_input_type="pandas.DataFrame")
    assert res == {"setosa": "regr_setosa", "versicolor": "regr_versicolor",
                   "virginica": "regr_virginica"}
    objects = oml.ds.describe(name="ds_pymodels")
    assert sorted(objects["object_name"]) == ["regr_setosa", "regr_versicolor",
                                              "regr_virginica"]
    models = oml.ds.load(name="ds_pymodels", to_globals=False)
    assert isinstance(models, dict)
    assert all(isinstance(m, LinearRegression) for m in models.values())


def test_index_apply_compute_random_mean() -> None:
    res = oml.index_apply(times=12, func=compute_random_mean)
    print(res)
    assert isinstance(res, list) and len(res) == 12
    assert res[:10] == pytest.approx(PUBLISHED_MEANS, abs=1e-10)
    assert res == pytest.approx(random_means(12), abs=1e-12)


def test_do_eval_random_red_dots_with_graphics() -> None:
    res = oml.do_eval(func=RandomRedDots, graphics=True)
    assert len(res.img) == 2
    assert all(image.startswith(PNG) for image in res.img)
    assert isinstance(res.dat, pd.DataFrame)
    assert list(res.dat["id"]) == list(range(1, 10))
    html = res._repr_html_()
    assert html.count("<img src=\"data:image/png;base64,") == 2


def test_do_eval_a_stored_script_with_arguments() -> None:
    oml.script.create("RandomRedDots", func=RandomRedDots, overwrite=True)
    res = oml.do_eval(func="RandomRedDots", num_dots_1=20, num_dots_2=5, graphics=True)
    assert len(res.img) == 2
    assert res.dat.shape == (9, 2)
    oml.script.drop("RandomRedDots")


# -- Task 7: asynchronous jobs ------------------------------------------------------------


def test_task7_an_async_job_waited_on_with_a_progress_bar(
        capsys: pytest.CaptureFixture[str]) -> None:
    job = oml.index_apply(times=12, func=compute_random_mean, oml_async_flag=True)
    assert isinstance(job, oml.Job)
    status = job.wait(progress=True)
    assert status == "FINISH"
    shown = capsys.readouterr().err
    assert f"job {job.id[:8]} FINISH" in shown
    assert "12/12" in shown
    res = job.result()
    assert res[:10] == pytest.approx(PUBLISHED_MEANS, abs=1e-10)
    assert job.status() == "FINISH"
