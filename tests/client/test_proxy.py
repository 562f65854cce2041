"""OML's DataFrame proxy (docs/client.md#what-a-proxy-does) against pandas, operation by
operation, on both backends of users' tables: each result is compared with pandas'
on the same rows (the proxy's own ``pull()``), for IRIS and for a table with missing
values, strings, booleans and dates. The SQL runs in the database through
``POST /query``; what a proxy cannot do raises an error naming the operation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from epe import oml
from tests.serverproc import EpeServer


@pytest.fixture(scope="module", autouse=True)
def connected(data_server: EpeServer) -> Iterator[None]:
    user, password = data_server.add_user()
    oml.connect(data_server.url, user, password)
    yield
    oml.disconnect()


@pytest.fixture(scope="module")
def IRIS(connected: None) -> oml.DataFrame:
    iris = datasets.load_iris()
    frame = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH",
                                             "PETAL_WIDTH"])
    frame["SPECIES"] = [("setosa", "versicolor", "virginica")[t] for t in iris.target]
    return oml.push(frame)


@pytest.fixture(scope="module")
def MIXED(connected: None) -> oml.DataFrame:
    """Missing numbers and strings, repeated values, booleans and dates."""
    day = dt.datetime(2024, 1, 1)
    frame = pd.DataFrame({
        "ID": [1, 2, 3, 4, 5, 6, 7, 8],
        "NAME": ["ann", None, "bob", "ann", "cy", None, "bob", "ann"],
        "X": [1.5, np.nan, -2.0, 1.5, 4.25, 0.0, np.nan, 3.0],
        "FLAG": [True, False, True, True, False, False, True, False],
        "D": [day, pd.NaT, day + dt.timedelta(days=3), day, pd.NaT,
              day + dt.timedelta(days=1), day + dt.timedelta(days=9), day],
    })
    return oml.push(frame)


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order (SQL gives them in none) with a fresh index."""
    by = list(frame.columns)
    return frame.sort_values(by, na_position="last", kind="stable").reset_index(drop=True)


def same(proxy: Any, expected: pd.DataFrame, ordered: bool = False) -> None:
    got = proxy.pull() if hasattr(proxy, "pull") else proxy
    got, expected = got.reset_index(drop=True), expected.reset_index(drop=True)
    if not ordered:
        got, expected = rows(got), rows(expected)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False,
                                  rtol=1e-9, atol=1e-12)


def test_selection_and_filters(IRIS: oml.DataFrame, MIXED: oml.DataFrame) -> None:
    iris, mixed = IRIS.pull(), MIXED.pull()
    same(IRIS[:, ["SEPAL_LENGTH", "PETAL_LENGTH"]], iris[["SEPAL_LENGTH", "PETAL_LENGTH"]])
    same(IRIS[:, 1:4], iris.iloc[:, 1:4])
    same(IRIS.select_types(include=[oml.String]), iris[["SPECIES"]])
    same(MIXED.select_types(exclude=[oml.Float, oml.Datetime]), mixed[["NAME", "FLAG"]])
    condition = (IRIS["PETAL_LENGTH"] < 1.5) | (IRIS["SEPAL_LENGTH"] == 5.0)
    same(IRIS[condition, :], iris[(iris.PETAL_LENGTH < 1.5) | (iris.SEPAL_LENGTH == 5.0)])
    assert len(IRIS[condition, :]) == 30
    both = IRIS[(IRIS["PETAL_LENGTH"] < 1.5) & (IRIS["SEPAL_LENGTH"] > 5.0), ["SPECIES"]]
    same(both, iris.loc[(iris.PETAL_LENGTH < 1.5) & (iris.SEPAL_LENGTH > 5.0), ["SPECIES"]])
    same(MIXED[MIXED["NAME"].isnull(), :], mixed[mixed.NAME.isna()])
    same(MIXED[~(MIXED["FLAG"]) & MIXED["X"].notnull(), :], mixed[~mixed.FLAG & mixed.X.notna()])
    same(MIXED[MIXED["D"] > dt.datetime(2024, 1, 2), :], mixed[dt.datetime(2024, 1, 2) < mixed.D])
    same(MIXED[MIXED["NAME"].isin(["ann", "cy"]), :], mixed[mixed.NAME.isin(["ann", "cy"])])
    same(MIXED.drop(["X", "D"]), mixed.drop(columns=["X", "D"]))
    assert IRIS.shape == (150, 5) and MIXED.shape == (8, 5)
    assert isinstance(IRIS["SPECIES"], oml.String) and isinstance(MIXED["D"], oml.Datetime)
    sql = IRIS[condition, ["SPECIES"]].sql  # the filter runs in the database
    assert "WHERE" in sql.upper() and "PETAL_LENGTH" in sql


def test_columns_arithmetic_functions_and_strings(MIXED: oml.DataFrame) -> None:
    mixed = MIXED.pull()
    x = MIXED["X"]

    def col(series: Any) -> pd.Series:
        return pd.Series(series.pull(), dtype="float64")

    for got, want in [(x * 2 + 1, mixed.X * 2 + 1), (x ** 2, mixed.X ** 2), (-x, -mixed.X),
                      (x / 4, mixed.X / 4), (MIXED["ID"] - x, mixed.ID - mixed.X),
                      (x.abs().sqrt().round(3), mixed.X.abs().pow(0.5).round(3)),
                      ((x + 5).log(), np.log(mixed.X + 5)), (x.exp(), np.exp(mixed.X)),
                      (x.ceil(), np.ceil(mixed.X)), (x.floor(), np.floor(mixed.X))]:
        pd.testing.assert_series_equal(col(got), want.astype("float64"), check_names=False,
                                       rtol=1e-9)
    name = MIXED["NAME"]
    assert name.len().pull() == [None if v is None else len(v) for v in
                                 mixed.NAME.astype(object).where(mixed.NAME.notna(), None)]
    assert name.find("b").pull() == [None if pd.isna(v) else v.find("b") for v in mixed.NAME]
    assert name.count_pattern("n").pull() == \
        [None if pd.isna(v) else v.count("n") for v in mixed.NAME]
    assert name.upper().pull() == [None if pd.isna(v) else v.upper() for v in mixed.NAME]
    assert (name == "ann").pull() == [None if pd.isna(v) else v == "ann" for v in mixed.NAME]
    added = MIXED.concat({"X2": x * 2, "IS_ANN": name == "ann"})
    assert added.columns == ["ID", "NAME", "X", "FLAG", "D", "X2", "IS_ANN"]
    same(added[["ID", "X2"]], pd.DataFrame({"ID": mixed.ID, "X2": mixed.X * 2}))
    assert MIXED.concat(x > 1).columns[-1] == "COL6"  # a comparison has no name: OML's COLn
    assert MIXED[["ID"]].concat([MIXED["ID"], x], auto_name=True).columns == ["ID", "ID2", "X"]


def test_aggregates(IRIS: oml.DataFrame, MIXED: oml.DataFrame) -> None:
    iris, mixed = IRIS.pull(), MIXED.pull()
    s = IRIS["SEPAL_LENGTH"]
    for how in ("min", "max", "mean", "median", "sum", "std", "var", "skew", "kurtosis"):
        assert getattr(s, how)() == pytest.approx(getattr(iris.SEPAL_LENGTH, how)(), rel=1e-9)
    assert s.mean().round(4) == round(iris.SEPAL_LENGTH.mean(), 4)  # numpy scalars, as OML's
    assert s.count() == 150 and IRIS["SPECIES"].nunique() == 3
    assert IRIS["SPECIES"].min() == "setosa" and MIXED["D"].max() == mixed.D.max()
    numeric = mixed[["ID", "X"]]
    for how in ("mean", "median", "min", "max", "std", "var", "skew", "kurtosis"):
        pd.testing.assert_series_equal(getattr(MIXED, how)(), getattr(numeric, how)(),
                                       check_dtype=False, rtol=1e-9)
    pd.testing.assert_series_equal(MIXED.sum(), mixed[["ID", "X", "FLAG"]].sum(),
                                   check_dtype=False)
    pd.testing.assert_series_equal(MIXED.count(), mixed.count(), check_dtype=False)
    pd.testing.assert_series_equal(MIXED.nunique(), mixed.nunique(), check_dtype=False)
    assert np.isnan(MIXED.mean(skipna=False)["X"])


def test_describe(IRIS: oml.DataFrame, MIXED: oml.DataFrame) -> None:
    iris, mixed = IRIS.pull(), MIXED.pull()
    pd.testing.assert_frame_equal(IRIS.describe(), iris.describe(), rtol=1e-9)
    pd.testing.assert_frame_equal(IRIS.describe(percentiles=[0.1, 0.9]),
                                  iris.describe(percentiles=[0.1, 0.9]), rtol=1e-9)
    without_dates = MIXED.drop("D")
    got = without_dates.describe(include="all")
    want = mixed.drop(columns="D").describe(include="all")
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    for column in got.columns:
        for stat in got.index:
            a, b = got.loc[stat, column], want.loc[stat, column]
            assert (pd.isna(a) and pd.isna(b)) or a == pytest.approx(b, rel=1e-9) \
                if isinstance(b, float) else a == b, (stat, column, a, b)
    got = without_dates.describe(exclude=[oml.Float])
    assert list(got.columns) == ["NAME", "FLAG"]
    assert got.loc["top", "NAME"] == "ann" and got.loc["freq", "NAME"] == 3
    assert got.loc["top", "FLAG"] == mixed.FLAG.describe()["top"]  # a tie: the first seen
    with pytest.raises(NotImplementedError, match="describe of a Datetime column"):
        MIXED.describe(include="all")


def test_correlations_and_running_sums(IRIS: oml.DataFrame, MIXED: oml.DataFrame) -> None:
    iris, mixed = IRIS.pull(), MIXED.pull()
    pd.testing.assert_frame_equal(IRIS.corr(), iris.corr(numeric_only=True), rtol=1e-9)
    pd.testing.assert_frame_equal(MIXED.corr(), mixed[["ID", "X"]].corr(), rtol=1e-9)
    assert np.isnan(MIXED.corr(skipna=False).loc["ID", "X"])
    ordered = mixed.sort_values("ID", ascending=False, kind="stable")
    want = ordered[["ID", "X", "FLAG"]].astype({"FLAG": "int64"}).cumsum()
    same(MIXED.cumsum(by="ID", ascending=False), want, ordered=True)


def test_order_and_rows(IRIS: oml.DataFrame, MIXED: oml.DataFrame) -> None:
    iris, mixed = IRIS.pull(), MIXED.pull()
    by = ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]
    ranked = IRIS.sort_values(by=by, ascending=False)
    want = iris.sort_values(by=by, ascending=False, kind="stable")
    same(ranked.head(8), want.head(8), ordered=True)
    same(ranked.tail(3), want.tail(3), ordered=True)
    same(IRIS.head(4), iris.head(4), ordered=True)
    same(IRIS.tail(), iris.tail(), ordered=True)
    for position in ("first", "last"):
        same(MIXED.sort_values(["X", "ID"], na_position=position),
             mixed.sort_values(["X", "ID"], na_position=position), ordered=True)
    same(MIXED["NAME"].drop_duplicates().sort_values()._frame(),
         mixed[["NAME"]].drop_duplicates().sort_values("NAME"), ordered=True)
    same(MIXED.dropna(), mixed.dropna())
    same(MIXED.dropna(how="all", subset=["X", "D"]), mixed.dropna(how="all", subset=["X", "D"]))
    same(MIXED.dropna(subset=["NAME"]), mixed.dropna(subset=["NAME"]))
    same(MIXED.dropna(thresh=5), mixed.dropna(thresh=5))
    same(MIXED[["NAME", "FLAG"]].drop_duplicates(), mixed[["NAME", "FLAG"]].drop_duplicates())
    same(MIXED.drop_duplicates(subset=["NAME"]), mixed.drop_duplicates(subset=["NAME"]))
    renamed = MIXED[["ID", "X"]].rename({"X": "VALUE"})
    assert renamed.columns == ["ID", "VALUE"]
    same(renamed, mixed[["ID", "X"]].rename(columns={"X": "VALUE"}))
    stacked = MIXED[["ID", "NAME"]].append(MIXED[["X", "NAME"]])
    want = pd.concat([mixed[["ID", "NAME"]],
                      mixed[["X", "NAME"]].set_axis(["ID", "NAME"], axis=1)])
    same(stacked, want)
    appended = pd.Series(MIXED["ID"].append(MIXED["X"]).pull(), dtype="float64")
    want_appended = pd.concat([mixed.ID, mixed.X]).astype("float64")
    pd.testing.assert_series_equal(appended.sort_values(ignore_index=True),
                                   want_appended.sort_values(ignore_index=True))


def test_merge(MIXED: oml.DataFrame) -> None:
    mixed = MIXED.pull()
    left, right = MIXED[["ID", "NAME"]], MIXED[["ID", "X"]].head(5)  # X holds 1.5: no int
    lpd, rpd = mixed[["ID", "NAME"]], mixed[["ID", "X"]].head(5)
    for how in ("inner", "left", "right", "outer"):
        got = left.merge(right, on="ID", how=how, suffixes=[".l", ".r"])
        assert got.columns == ["ID", "NAME.l", "X.r"]  # OML suffixes every other column
        want = lpd.merge(rpd, on="ID", how=how).set_axis(["ID", "NAME.l", "X.r"], axis=1)
        same(got, want)
    names = MIXED[["NAME"]].drop_duplicates().dropna()
    crossed = MIXED[["ID"]].merge(names)
    assert crossed.columns == ["ID_l", "NAME_r"]
    want = mixed[["ID"]].merge(names.pull(), how="cross").set_axis(["ID_l", "NAME_r"], axis=1)
    same(crossed, want)
    keyed = left.merge(right, left_on="ID", right_on="X", how="right")
    assert keyed.columns == ["ID_l", "NAME_l", "ID_r", "X_r"]
    want = lpd.merge(rpd, left_on="ID", right_on="X", how="right")
    same(keyed, want.set_axis(["ID_l", "NAME_l", "ID_r", "X_r"], axis=1))


def test_crosstab_and_pivot_table(MIXED: oml.DataFrame) -> None:
    mixed = MIXED.pull()
    counts = MIXED.crosstab("NAME", "FLAG")
    assert isinstance(counts, oml.DataFrame) and "GROUP BY" in counts.sql.upper()
    want = mixed.groupby(["NAME", "FLAG"], dropna=False).size().reset_index(name="count")
    same(counts, want)
    filled = mixed.assign(NAME=mixed.NAME.fillna("None"))
    for normalize in (False, 0, 1, True):
        got = MIXED.crosstab("NAME", "FLAG", pivot=True, margins=True, normalize=normalize)
        want = pd.crosstab(filled.NAME, filled.FLAG, margins=True, normalize=normalize)
        want = want.rename(index={"None": None}).rename(columns=lambda c: f"count_({c})")
        want = want.reset_index().rename(columns={"index": "NAME"})
        got = got.set_index("NAME").loc[list(want["NAME"])].reset_index()
        pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False,
                                      check_names=False)
    got = MIXED.pivot_table("NAME", "FLAG", "X", aggfunc=[oml.DataFrame.max, "mean"])
    assert list(got.columns) == ["NAME", "max(X)_(False)", "max(X)_(True)",
                                 "mean(X)_(False)", "mean(X)_(True)"]
    want = filled.pivot_table(index="NAME", columns="FLAG", values="X",
                              aggfunc=["max", "mean"])
    for (func, flag), values in want.items():
        shown = got.set_index(got.NAME.fillna("None"))[f"{func}(X)_({flag})"]
        pd.testing.assert_series_equal(shown.loc[values.index], values, check_names=False)


def test_split_and_kfold(IRIS: oml.DataFrame) -> None:
    iris = IRIS.pull()
    parts = IRIS.split(ratio=(0.25, 0.25, 0.5), use_hash=False)
    again = [p.pull() for p in parts]
    assert sum(len(p) for p in again) == 150
    same(pd.concat(again), iris)  # disjoint, and together every row
    assert [len(p) for p in parts] == [len(p) for p in again]  # the same rows every time
    strata = IRIS.split(ratio=(0.6, 0.4), strata_cols=["SPECIES"])
    assert [p["SPECIES"].pull().count("setosa") for p in strata] == [30, 20]  # exactly
    by_species = IRIS.split(hash_cols=["SPECIES"])
    assert all(p["SPECIES"].nunique() in (0, 1, 2, 3) for p in by_species)
    species = [set(p["SPECIES"].unique()) for p in by_species]
    assert not species[0] & species[1]  # a value's rows all in one part
    folds = IRIS.KFold(n_splits=3)
    assert all(len(train) + len(test) == 150 for train, test in folds)
    same(pd.concat([test.pull() for _, test in folds]), iris)


def test_what_a_proxy_does_not_do_is_named(IRIS: oml.DataFrame) -> None:
    with pytest.raises(NotImplementedError, match=r"DataFrame\.apply is not supported"):
        IRIS.apply(len)
    with pytest.raises(NotImplementedError, match=r"Float\.rolling is not supported"):
        IRIS["SEPAL_LENGTH"].rolling(3)
    with pytest.raises(NotImplementedError, match="DataFrame =="):
        _ = IRIS == 1
    with pytest.raises(TypeError, match="ambiguous"):
        bool(IRIS["SEPAL_LENGTH"] == 5.0)
    with pytest.raises(NotImplementedError, match=r"corr\(method='spearman'\)"):
        IRIS.corr(method="spearman")
    with pytest.raises(NotImplementedError, match="aggfunc"):
        IRIS.pivot_table("SPECIES", aggfunc=np.ptp)
    with pytest.raises(NotImplementedError, match=r"oml\.glm runs Oracle Database"):
        oml.glm("regression")
    with pytest.raises(ValueError, match="same rows"):
        IRIS.concat(IRIS.head(3)["SPECIES"])
    with pytest.raises(KeyError, match="NOPE"):
        IRIS["NOPE"]


def test_graphics_from_numbers_computed_in_the_database(IRIS: oml.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iris = IRIS.pull()
    counts, edges, _ = oml.graphics.hist(IRIS["SEPAL_LENGTH"], bins=10)
    want_counts, want_edges = np.histogram(iris.SEPAL_LENGTH, bins=10)
    assert counts.tolist() == want_counts.tolist()
    assert edges == pytest.approx(want_edges)
    plt.close("all")
    drawn = oml.graphics.boxplot(IRIS[:, :4], notch=True, showmeans=True,
                                 labels=IRIS.columns[:4])
    plt.close("all")
    local = plt.boxplot(iris.iloc[:, :4].to_numpy(), notch=True, showmeans=True)
    for part in ("whiskers", "caps", "medians", "means"):
        for ours, theirs in zip(drawn[part], local[part], strict=True):
            np.testing.assert_allclose(ours.get_xydata(), theirs.get_xydata())
    for ours, theirs in zip(drawn["fliers"], local["fliers"], strict=True):
        assert sorted(ours.get_ydata()) == sorted(theirs.get_ydata())
    plt.close("all")
