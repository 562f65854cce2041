# ruff: noqa
# OML4Py's "Datastore and Script Repository" sample notebook, reconstructed (the cell
# headers are explained in tour.py; "oml-internal" calls a private function of OML's).
# The notebook grants to users OMLUSER2 and PYQUSER2 of its database: the test makes them.

# %% connect
import oml
oml.connect()

# %% [2] oml-internal
import pandas as pd
import oml
pd.set_option("display.max_rows", 500)
pd.set_option("display.max_columns", 500)
pd.set_option("display.width", 1000)
oml.core.methods.__checkRole("PYQADMIN")

# %% [4]
from sklearn import datasets
from sklearn import linear_model
import pandas as pd
iris = datasets.load_iris()
x = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
try:
    oml.drop(table="IRIS")
except:
    pass
IRIS = oml.create(pd.concat([x, y], axis=1), table="IRIS")
iris = pd.concat([x, y], axis=1)
print(IRIS.columns)

# %% [5]
diabetes = datasets.load_diabetes()
x = pd.DataFrame(diabetes.data, columns=diabetes.feature_names)
y = pd.DataFrame(diabetes.target, columns=["disease_progression"])
DIABETES_TMP = oml.push(pd.concat([x, y], axis=1))
print(DIABETES_TMP.columns)

# %% [6] removed-api
boston = datasets.load_boston()  # scikit-learn 1.2 removed it
x = pd.DataFrame(boston.data, columns=boston.feature_names.tolist())
y = pd.DataFrame(boston.target, columns=["Value"])
BOSTON_TMP = oml.push(pd.concat([x, y], axis=1))

# %% stand-in for [6]
import numpy as np
from sklearn.utils import Bunch
names = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]
rng = np.random.default_rng(0)
data = rng.random((506, len(names)))
boston = Bunch(data=data, target=data @ rng.random(len(names)), feature_names=np.array(names))
x = pd.DataFrame(boston.data, columns=boston.feature_names.tolist())
y = pd.DataFrame(boston.target, columns=["Value"])
BOSTON_TMP = oml.push(pd.concat([x, y], axis=1))
print(BOSTON_TMP.columns)

# %% [8]
oml.ds.save(objs={"iris": iris, "oml_boston": BOSTON_TMP}, name="ds_pydata", description="python datasets", overwrite=True)

# %% [10]
oml.ds.save(objs={"oml_diabetes": DIABETES_TMP}, name="ds_pydata", append=True)

# %% [12]
oml.ds.save(objs={"iris": iris}, name="ds_iris_data", description="iris dataset", overwrite=True)
oml.ds.dir()

# %% [14] in-database
regr1 = linear_model.LinearRegression()
regr1.fit(boston.data, boston.target)
regr2 = oml.glm("regression")
regr2 = regr2.fit(BOSTON_TMP.drop("Value"), BOSTON_TMP["Value"])

# %% stand-in for [14]
regr1 = linear_model.LinearRegression().fit(boston.data, boston.target)
regr2 = linear_model.Ridge().fit(boston.data, boston.target)

# %% [16]
oml.ds.save(objs={"regr1": regr1, "regr2": regr2}, name="ds_pymodel", grantable=True, overwrite=True)
oml.ds.dir()

# %% [17]
oml.grant(name="ds_pymodel", typ="datastore", user=None)
oml.ds.dir(dstype="grant")

# %% [19]
sorted(oml.ds.load(name="ds_pydata"))

# %% [21]
oml.ds.load(name="ds_pymodel", objs=["regr2"])

# %% [23]
oml.ds.load(name="ds_pymodel", objs=["regr1"], to_globals=False)

# %% [25]
oml.ds.dir(dstype="all")[["owner", "datastore_name", "object_count"]]

# %% [27]
oml.ds.dir(dstype="grant")

# %% [29]
oml.ds.dir(dstype="granted")

# %% [31]
oml.ds.dir(name="pydata", regex_match=True)[["datastore_name", "object_count"]]

# %% [33]
oml.ds.describe(name="ds_pydata")

# %% [35]
oml.revoke(name="ds_pymodel", typ="datastore", user=None)
oml.ds.dir(dstype="grant")

# %% [37]
oml.grant(name="ds_pymodel", typ="datastore", user="OMLUSER2")
oml.ds.dir(dstype="grant")

# %% [39]
oml.ds.delete(name="ds_pydata", objs=["iris", "oml_boston"])
oml.ds.delete(name="ds_pydata")
oml.ds.delete(name="_pymodel", regex_match=True)
oml.ds.dir()

# %% [41]
iris = datasets.load_iris()
x = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
IRIS2 = oml.push(pd.concat([x, y], axis=1))

# %% [42]
def build_lm1(dat):
    from sklearn import linear_model
    import pandas as pd
    dat = pd.get_dummies(dat, drop_first=True)
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH", "SPECIES_versicolor", "SPECIES_virginica"]]
    return linear_model.LinearRegression().fit(X, dat[["SEPAL_LENGTH"]])

# %% [43]
build_lm2 = """def build_lm2(dat):
    from sklearn import linear_model
    import pandas as pd
    dat = pd.get_dummies(dat, drop_first=True)
    X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH", "SPECIES_versicolor", "SPECIES_virginica"]]
    return linear_model.LinearRegression().fit(X, dat[["SEPAL_LENGTH"]])"""

# %% [44]
print(build_lm2)

# %% [46]
try:
    oml.script.drop("MyLM_function2")
except:
    pass
oml.script.create("MyLM_function2", func=build_lm2, overwrite=True)

# %% [48]
oml.script.dir(sctype="user")

# %% [50]
oml.grant(name="MyLM_function2", typ="pyqscript", user="OMLUSER2")

# %% [52]
oml.script.dir(sctype="grant")

# %% [53]
import inspect
MyLM_function2 = oml.script.load("MyLM_function2")
MyLM_function2.get_source()
print(str(MyLM_function2))
print(MyLM_function2.get_source().read())

# %% [55]
oml.revoke(name="MyLM_function2", typ="pyqscript", user="PYQUSER2")

# %% [57]
res = oml.table_apply(IRIS, func="MyLM_function2", oml_input_type="pandas.DataFrame")
res

# %% [58]
res.coef_

# %% [60]
build_lm3 = """def build_lm3(dat):
  from sklearn import linear_model
  return linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])"""

# %% [61]
oml.script.create("MyGlobalLM_function", func=build_lm3, is_global=True, overwrite=True)

# %% [62]
res = oml.table_apply(IRIS, func="MyGlobalLM_function", oml_input_type="pandas.DataFrame")
res

# %% [64]
oml.script.dir()

# %% [66]
oml.script.dir(sctype="all")

# %% [68]
oml.script.dir(sctype="global")

# %% [70]
MYLM = oml.script.load(name="MyLM_function2")
GlobalMYLM = oml.script.load(name="MyGlobalLM_function")
print("Coefficients:", MYLM(IRIS.pull()).coef_)
print("Model:", GlobalMYLM(IRIS.pull()))

# %% [72]
oml.script.dir(sctype="all")

# %% [74]
oml.script.drop("MyLM_function2")
oml.script.drop("MyGlobalLM_function", is_global=True)
oml.script.dir(sctype="all")
