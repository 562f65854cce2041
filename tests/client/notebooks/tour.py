# ruff: noqa
# OML4Py's "Tour" sample notebook, reconstructed: one cell per code paragraph, in its
# order, each doing what the paragraph does with the same oml calls and arguments.
# A cell's header says what it is: a plain number runs as written; "in-database" uses
# one of Oracle's in-database algorithms (not in epe); "removed-api" uses a library
# API since removed; "shell" is a curl paragraph; "connect" is the one line a user
# changes; "stand-in" is ours, replacing a paragraph that cannot run, so that the ones
# after it can.

# %% connect
import oml
oml.connect()  # OML Notebooks: already connected

# %% [2]
import warnings
warnings.filterwarnings("ignore")
import pandas as pd
import oml
from oml import automl
pd.set_option("display.max_rows", 500)
pd.set_option("display.max_columns", 500)
pd.set_option("display.width", 1000)

# %% [4]
from sklearn import datasets
import pandas as pd
bc = datasets.load_breast_cancer()
X = pd.DataFrame(bc.data.astype(float), columns=bc.feature_names)
y = pd.DataFrame(bc.target, columns=["TARGET"])
try:
    oml.drop(table="BREASTCANCER")
except:
    pass
BREASTCANCER = oml.create(pd.concat([X, y], axis=1), table="BREASTCANCER")
print("Shape:", BREASTCANCER.shape)

# %% [5]
BREASTCANCER = oml.sync(table="BREASTCANCER")
print("Type:", type(BREASTCANCER), "Shape:", BREASTCANCER.shape)
BREASTCANCER_X, BREASTCANCER_y = BREASTCANCER.drop("TARGET"), BREASTCANCER["TARGET"]
BREASTCANCER_train, BREASTCANCER_test = BREASTCANCER.split(ratio=(0.6, 0.4))
BREASTCANCER_train_X, BREASTCANCER_train_y = BREASTCANCER_train.drop("TARGET"), BREASTCANCER_train["TARGET"]
BREASTCANCER_test_X, BREASTCANCER_test_y = BREASTCANCER_test.drop("TARGET"), BREASTCANCER_test["TARGET"]
print("Train:", type(BREASTCANCER_train), BREASTCANCER_train.shape)

# %% [6]
z.show(BREASTCANCER)

# %% [7]
res = BREASTCANCER.describe()
res.index.name = "statistic"
res.reset_index(inplace=True)
z.show(res.round(4))

# %% [9] in-database
as_bc = automl.AlgorithmSelection(mining_function="classification", score_metric="accuracy", parallel=4)
alg_ranking = as_bc.select(BREASTCANCER_X, BREASTCANCER_y, k=4)
best_alg = alg_ranking[0][0]

# %% [11] in-database
fs_bc = automl.FeatureSelection(mining_function="classification", score_metric="accuracy", parallel=4)
selected_features = fs_bc.reduce("nn", BREASTCANCER_X, BREASTCANCER_y)
BREASTCANCER_train_X_reduced = BREASTCANCER_train_X[:, selected_features]

# %% [13] in-database
at_bc = automl.ModelTuning(mining_function="classification", parallel=4)
results = at_bc.tune("nn", BREASTCANCER_train_X_reduced, BREASTCANCER_train_y)
tuned_model = results["best_model"]

# %% [15] in-database
all_models = results["all_evals"]
print(all_models[0], all_models[1])

# %% [17]
iris = datasets.load_iris()
X = pd.DataFrame(iris.data.astype(float), columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
try:
    oml.drop(table="IRIS")
except:
    pass
IRIS = oml.create(pd.concat([X, y], axis=1), table="IRIS")
print("Shape:", IRIS.shape)

# %% [18]
IRIS_X = IRIS.drop("SPECIES")
IRIS_y = IRIS["SPECIES"]
z.show(IRIS)

# %% [20] in-database
ai_obj = oml.ai()
ai_obj = ai_obj.fit(IRIS_X, IRIS_y)

# %% [21] in-database
z.show(ai_obj.importance)

# %% [23]
IRIS_DAT = IRIS.split()
IRIS_train_X = IRIS_DAT[0].drop("SPECIES")
IRIS_train_y = IRIS_DAT[0]["SPECIES"]
IRIS_test = IRIS_DAT[1]
for name, value in [("IRIS_DAT[0]", IRIS_DAT[0]), ("IRIS_DAT[1]", IRIS_DAT[1]),
                    ("IRIS_train_X", IRIS_train_X), ("IRIS_train_y", IRIS_train_y)]:
    print(name, type(value))

# %% [25] in-database
rf_mod = oml.rf(tree_term_max_depth="4")
rf_mod = rf_mod.fit(IRIS_train_X, IRIS_train_y)

# %% [27] in-database
pred = rf_mod.predict(IRIS_test.drop("SPECIES"), supplemental_cols=IRIS_test[:, ["SPECIES"]])
z.show(pred.head(4))

# %% [29] in-database
res_ct = pred.crosstab("SPECIES", "PREDICTION", pivot=True)
res_ct.sort_values(by="SPECIES")

# %% [31]
local_iris = IRIS.pull()
print(type(IRIS), type(local_iris))
z.show(local_iris.head())

# %% [33]
print("Min:", IRIS["SEPAL_LENGTH"].min())
print("Max:", IRIS["SEPAL_LENGTH"].max())
print("Mean:", IRIS["SEPAL_LENGTH"].mean().round(4))
print("Median:", IRIS["SEPAL_LENGTH"].median())
print("Skew:", IRIS["SEPAL_LENGTH"].skew().round(4))

# %% [35]
IRIS_filtered = IRIS[(IRIS["PETAL_LENGTH"] < 1.5) | (IRIS["SEPAL_LENGTH"] == 5.0), :]
print("Length:", len(IRIS_filtered))
IRIS_filtered.head(3)

# %% [37]
iris_descr = pd.DataFrame({"SPECIES": ["setosa", "versicolor", "virginica"],
                           "description": ["the bristle-pointed iris", "the blue flag",
                                           "a flowering plant of eastern North America"]})
IRIS_DESCR = oml.push(iris_descr)
z.show(IRIS_DESCR)

# %% [38]
IRIS_2 = IRIS.merge(IRIS_DESCR, on="SPECIES")
z.show(IRIS_2.head(4))

# %% [40]
corr_res = IRIS.corr()
corr_res

# %% [42] removed-api
import matplotlib.pyplot as plt
plt.style.use("seaborn")  # matplotlib 3.8 removed this style name
plt.figure(figsize=[10, 5])
oml.graphics.boxplot(IRIS[:, :4], notch=True, showmeans=True, labels=IRIS.columns[:4])
plt.title("Distribution of IRIS Attributes")

# %% [43]
import matplotlib.pyplot as plt
oml.graphics.hist(IRIS["SEPAL_LENGTH"], bins=10, color="red", linestyle="solid", edgecolor="black")
plt.title("Sepal Length variation in IRIS data set")
plt.xlabel("Sepal Length")
plt.show()

# %% [45]
is_large_petal = (IRIS["PETAL_LENGTH"] > 5.0) & (IRIS["PETAL_WIDTH"] > 2.0)
print("Type:", type(is_large_petal))
IRIS2 = IRIS.concat({"IS_LARGE_PETAL": is_large_petal, "SEPAL_LEN_SQ": IRIS["SEPAL_LENGTH"] ** 2})
z.show(IRIS2[["IS_LARGE_PETAL", "SEPAL_LEN_SQ"]].head())

# %% [47]
IRIS2.describe()

# %% [49]
def RandomRedDots(num_dots_1=100, num_dots_2=10):
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]})
    fig = plt.figure(1)
    fig.add_subplot(111).scatter(range(int(num_dots_1)), np.random.rand(int(num_dots_1)), c="r")
    fig.suptitle("Random Red Dots")
    fig2 = plt.figure(2)
    fig2.add_subplot(111).scatter(range(int(num_dots_2)), np.random.rand(int(num_dots_2)), c="r")
    fig2.suptitle("Random Red Dots")
    return df

# %% [50]
RandomRedDots(30, 100)

# %% [51]
rdd_string = """def RandomRedDots(num_dots_1=100, num_dots_2=10):
    import numpy as np
    import pandas as pd
    import matplotlib.pyplot as plt
    df = pd.DataFrame({"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]})
    fig = plt.figure(1)
    fig.add_subplot(111).scatter(range(int(num_dots_1)), np.random.rand(int(num_dots_1)), c="r")
    fig.suptitle("Random Red Dots")
    fig2 = plt.figure(2)
    fig2.add_subplot(111).scatter(range(int(num_dots_2)), np.random.rand(int(num_dots_2)), c="r")
    fig2.suptitle("Random Red Dots")
    return df"""
oml.script.create("RandomRedDots", func=rdd_string, is_global=False, overwrite=True)
print(oml.script.dir())

# %% [53]
res = oml.do_eval(func="RandomRedDots")
print("Type:", type(res))
res

# %% [56] shell
curl -s -i -X POST --header 'Content-Type: application/json' --header 'Accept: application/json' \
  -d '{"grant_type":"password", "username":"'${username}'", "password":"'${password}'"}' \
  "${omlserver}/omlusers/api/oauth2/v1/token"

# %% [58] shell
export token="${token}"  # the accessToken of the answer above, pasted

# %% [60] shell
curl -s -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' -d '{"graphicsFlag":true}' \
  "${omlserver}/oml/api/py-scripts/v1/do-eval/RandomRedDots"
