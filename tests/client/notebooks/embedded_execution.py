# ruff: noqa
# OML4Py's "Embedded Python Execution" sample notebook, reconstructed (the cell headers
# are explained in tour.py).

# %% connect
import oml
oml.connect()

# %% [2]
import warnings
warnings.filterwarnings("ignore")
import oml

# %% [3]
from sklearn.datasets import load_iris
from sklearn import linear_model
import pandas as pd
iris = load_iris()
x = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
iris_df = pd.concat([x, y], axis=1)
try:
    oml.drop(table="IRIS")
except:
    pass
IRIS = oml.create(iris_df, table="IRIS")
IRIS.head(4)

# %% [5]
from sklearn import linear_model
lm = linear_model.LinearRegression()
mod = lm.fit(iris_df[["PETAL_WIDTH"]], iris_df[["PETAL_LENGTH"]])
print("Model:", mod)

# %% [6]
pred = mod.predict(iris_df[["PETAL_WIDTH"]])
pred[0:10]

# %% [8]
from sklearn.metrics import mean_squared_error, r2_score
print("Coefficients:\n", mod.coef_)
print("Mean squared error: %.2f" % mean_squared_error(iris_df[["PETAL_LENGTH"]], pred))
print("Variance score: %.2f" % r2_score(iris_df[["PETAL_LENGTH"]], pred))

# %% [9]
import matplotlib.pyplot as plt
plt.scatter(iris_df.loc[:, "PETAL_WIDTH"], iris_df.loc[:, "PETAL_LENGTH"])
plt.plot(iris_df[["PETAL_WIDTH"]], pred, color="blue", linewidth=3)
plt.grid(True)
plt.title("Prediction of Petal Length")
plt.show()

# %% [11]
def build_lm_1(dat):
    import oml
    from sklearn import linear_model
    import matplotlib.pyplot as plt
    mod = linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])
    pred = mod.predict(dat[["PETAL_WIDTH"]])
    plt.scatter(dat.loc[:, "PETAL_WIDTH"], dat.loc[:, "PETAL_LENGTH"])
    plt.plot(dat[["PETAL_WIDTH"]], pred, color="blue", linewidth=3)
    plt.title("Prediction of Petal Length")
    plt.show()
    return mod

# %% [12]
build_lm_1(iris_df)

# %% [14]
def build_lm_1(dat):
    import oml
    from sklearn import linear_model
    import matplotlib.pyplot as plt
    mod = linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])
    pred = mod.predict(dat[["PETAL_WIDTH"]])
    plt.scatter(dat.loc[:, "PETAL_WIDTH"], dat.loc[:, "PETAL_LENGTH"])
    plt.plot(dat[["PETAL_WIDTH"]], pred, color="blue", linewidth=3)
    plt.title("Prediction of Petal Length")
    plt.show()
    return mod

# %% [15]
mod = oml.table_apply(data=IRIS, func=build_lm_1)
print("Type:", type(mod))
print("Coefficient", mod.coef_)

# %% [17]
build_lm_1 = """def build_lm_1(dat):
    import oml
    from sklearn import linear_model
    import matplotlib.pyplot as plt
    mod = linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])
    plt.scatter(dat.loc[:, "PETAL_WIDTH"], dat.loc[:, "PETAL_LENGTH"])
    plt.show()
    return mod"""

# %% [18]
oml.script.create("build_lm_1", build_lm_1, overwrite=True)
oml.script.dir()

# %% [20]
mod = oml.table_apply(data=IRIS, func="build_lm_1")
print("Type:", type(mod))
print("Coefficient", mod.coef_)

# %% [22]
def score_lm_1(dat, model):
    import pandas as pd
    pred = model.predict(dat[["PETAL_WIDTH"]])
    return pd.concat([dat[["SPECIES", "PETAL_LENGTH"]],
                      pd.DataFrame(pred, columns=["PRED_PETAL_LENGTH"])], axis=1)

# %% [23]
res = oml.row_apply(IRIS, rows=10, func=score_lm_1, model=mod,
                    func_value=pd.DataFrame([("a", 1, 1)], columns=["SPECIES", "PETAL_LENGTH", "PRED_PETAL_LENGTH"]))
res.head()

# %% [24]
res = oml.group_apply(IRIS, index=IRIS[["SPECIES"]], func=score_lm_1, model=mod,
                      func_value=pd.DataFrame([("a", 1, 1)], columns=["SPECIES", "PETAL_LENGTH", "PRED_PETAL_LENGTH"]))
res.head()

# %% [26]
def build_lm_g(dat):
    import oml
    from sklearn import linear_model
    return linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])

mod = oml.group_apply(IRIS[:, ["PETAL_LENGTH", "PETAL_WIDTH", "SPECIES"]],
                      index=oml.DataFrame(IRIS["SPECIES"]), func=build_lm_g, parallel=2,
                      oml_connect=True)
print("Type:", type(mod))
mod

# %% [28]
def build_lm_2(dat, dsname):
    import oml
    from sklearn import linear_model
    lm = linear_model.LinearRegression().fit(dat[["PETAL_WIDTH"]], dat[["PETAL_LENGTH"]])
    name = "mod_" + dat.loc[dat.index[0], "SPECIES"]
    oml.ds.save(objs={name: lm}, name=dsname, append=True)
    return name

# %% [30]
try:
    oml.ds.delete("ds-1")
except:
    print("Datastore not found")
res = oml.group_apply(IRIS[:, ["PETAL_LENGTH", "PETAL_WIDTH", "SPECIES"]],
                      index=oml.DataFrame(IRIS["SPECIES"]), func=build_lm_2, dsname="ds-1",
                      oml_connect=True)
print("Outcome:", res)

# %% [33]
fit = """def fit(data):
    from sklearn.svm import LinearSVC
    x = data.drop("SPECIES", axis=1).values
    return LinearSVC().fit(x, data["SPECIES"])"""
oml.script.create("sk_svc_fit", fit, overwrite=True)
oml.script.dir()

# %% [34]
mod = oml.table_apply(data=IRIS, func="sk_svc_fit", oml_input_type="pandas.DataFrame")
print("Type:", type(mod))
print("Coefficients:\n", mod.coef_)

# %% [36]
pred = mod.predict(iris_df.drop("SPECIES", axis=1).values)
pred2 = pred.reshape((-1, 1))
pred2[0:10]

# %% [38]
from sklearn.metrics import confusion_matrix
conf_mat = confusion_matrix(iris_df[["SPECIES"]], pred2)
conf_mat

# %% [40]
def group_count(dat):
  import pandas as pd
  return pd.DataFrame([(dat["SPECIES"][0], dat.shape[0])], columns=["SPECIES", "CNT"])

index = oml.DataFrame(IRIS["SPECIES"])
res = oml.group_apply(IRIS, index, func=group_count, oml_input_type="pandas.DataFrame",
                      func_value=pd.DataFrame([("a", 1)], columns=["SPECIES", "CNT"]))
res

# %% [42]
def compute_random_mean(index):
    import numpy as np
    import scipy
    from statistics import mean
    np.random.seed(index)
    res = np.random.random((100, 1)) * 10
    return mean(res[1])

print("Test:", compute_random_mean(3))
res = oml.index_apply(times=12, func=compute_random_mean)
res

# %% [44]
RandomRedDots = """def RandomRedDots(num_dots_1=100, num_dots_2=10):
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]})
    plt.scatter(range(0, num_dots_1), np.random.rand(100), c="r")
    plt.title("Random Red Dots")
    plt.show()
    plt.scatter(range(0, num_dots_2), np.random.rand(10), c="r")
    plt.title("Random Red Dots")
    plt.show()
    return df"""
oml.script.create("RandomRedDots", func=RandomRedDots, is_global=True, overwrite=True)
print(RandomRedDots)

# %% [46]
res = oml.do_eval(func="RandomRedDots")
print("Type:", type(res))
res

# %% [48] shell
curl -s -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' -d '{"graphicsFlag":true}' \
  "${omlserver}/oml/api/py-scripts/v1/do-eval/RandomRedDots"

# %% [50]
RandomRedDots2 = """def RandomRedDots2(num_dots_1=100, num_dots_2=10):
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]})
    fig = plt.figure(1)
    fig.add_subplot(111).scatter(range(0, num_dots_1), np.random.rand(num_dots_1), c="r")
    fig.suptitle("Random Red Dots")
    fig2 = plt.figure(2)
    fig2.add_subplot(111).scatter(range(0, num_dots_2), np.random.rand(num_dots_2), c="r")
    fig2.suptitle("Random Red Dots")
    return df"""
oml.script.create("RandomRedDots2", func=RandomRedDots2, is_global=True, overwrite=True)
print(RandomRedDots2)

# %% [51]
res = oml.do_eval(func="RandomRedDots2", num_dots_1=600, num_dots_2=200)
type(res)
res

# %% [53] shell
curl -s -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' -d '{"graphicsFlag":true}' \
  "${omlserver}/oml/api/py-scripts/v1/do-eval/RandomRedDots2"

# %% [55]
RandomRedDots3 = """def RandomRedDots3(num_dots_1=100, num_dots_2=10):
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]})
    plt.subplot(2, 1, 1)
    plt.scatter(range(0, num_dots_1), np.random.rand(num_dots_1), c="r")
    plt.subplot(2, 1, 2)
    plt.scatter(range(0, num_dots_2), np.random.rand(num_dots_2), c="r")
    return df"""
oml.script.create("RandomRedDots3", func=RandomRedDots3, is_global=True, overwrite=True)
oml.do_eval(func="RandomRedDots3")

# %% [57] shell
curl -s -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' -d '{"graphicsFlag":true}' \
  "${omlserver}/oml/api/py-scripts/v1/do-eval/RandomRedDots3"

# %% [59]
import pandas as pd
res = oml.do_eval(func=RandomRedDots, func_value=pd.DataFrame({"id": [0], "val": [0]}))
type(res)
res.pull()

# %% [61]
random_red_dots = oml.script.load("RandomRedDots2")
print(random_red_dots.get_source())
random_red_dots()
