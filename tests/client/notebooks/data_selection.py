# ruff: noqa
# OML4Py's "Data Selection and Manipulation" sample notebook, reconstructed (the cell
# headers are explained in tour.py).

# %% connect
import oml
oml.connect()

# %% [2]
import warnings
warnings.filterwarnings("ignore")
import pandas as pd
import oml
pd.set_option("display.max_rows", 500)
pd.set_option("display.max_columns", 500)
pd.set_option("display.width", 1000)

# %% [3]
from sklearn.datasets import load_iris
import pandas as pd
iris = load_iris()
x = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
z_iris = pd.concat([x, y], axis=1)
IRIS_TMP = oml.push(z_iris)

# %% [5]
IRIS_projected1 = IRIS_TMP[:, ["SEPAL_LENGTH", "PETAL_LENGTH"]]
IRIS_projected1.head(3)

# %% [6]
IRIS_projected2 = IRIS_TMP[:, 1:4]
IRIS_projected2.head(3)

# %% [7]
IRIS_projected3 = IRIS_TMP.select_types(include=[oml.String])
IRIS_projected3.head(3)

# %% [9]
IRIS_filtered1 = IRIS_TMP[IRIS_TMP["PETAL_LENGTH"] < 1.5, ["SEPAL_LENGTH", "PETAL_LENGTH"]]
print("Length:", len(IRIS_filtered1))
IRIS_filtered1.head(3)

# %% [10]
IRIS_filtered2 = IRIS_TMP[(IRIS_TMP["PETAL_LENGTH"] < 1.5) | (IRIS_TMP["SEPAL_LENGTH"] == 5.0), :]
print("Length:", len(IRIS_filtered2))
IRIS_filtered2.head(3)

# %% [11]
IRIS_filtered3 = IRIS_TMP[(IRIS_TMP["PETAL_LENGTH"] < 1.5) & (IRIS_TMP["SEPAL_LENGTH"] > 5.0), :]
print("Length:", len(IRIS_filtered3))
IRIS_filtered3.head(4)

# %% [13]
my_df = pd.DataFrame({"id": [1, 2, 3, 4, 5], "val": ["a", "b", "c", "d", "e"],
                      "ch": ["p", "q", "r", "a", "b"], "num": [4, 3, 6.7, 7.2, 5]})
MY_DF = oml.push(my_df)
print(my_df.dtypes)
num1 = MY_DF["id"]
num2 = MY_DF["num"]
num1.append(num2)

# %% [14]
x = MY_DF[["id", "val"]]
y = MY_DF[["num", "ch"]]
print("Types x:\n", x.dtypes)
print("Types y:\n", y.dtypes)
x.append(y)

# %% [16]
from collections import OrderedDict
x = MY_DF[["id", "val"]]
y = MY_DF[["num", "ch"]]
x.concat(y)

# %% [17]
w = (MY_DF["num"] * 2).exp().round(decimals=2)
y.concat({"round(exp(2*num))": w})

# %% [18]
z_id = MY_DF[:, "id"]
x.concat([z_id, w, y], auto_name=True)

# %% [19]
x.concat(OrderedDict([("ID", z_id), ("round(exp(2*num))", w), ("New_", y)]))

# %% [21]
x = MY_DF[["id", "val"]]
y = MY_DF[["num", "ch"]]
cross = x.merge(y)
cross

# %% [22]
x.head(4).merge(other=MY_DF[["id", "num"]], on="id", suffixes=[".l", ".r"])

# %% [23]
x.merge(other=y, left_on="id", right_on="num", how="right")

# %% [25]
my_df2 = pd.DataFrame({"numeric": [1, 1.4, -4, -4, 5.432, None, None],
                       "string1": [None, None, "a", "a", "a", "b", None],
                       "string2": ["x", None, "z", "z", "z", "x", None]})
MY_DF2 = oml.push(my_df2, dbtypes={"numeric": "BINARY_DOUBLE", "string1": "CHAR(1)", "string2": "CHAR(1)"})
MY_DF2

# %% [26]
MY_DF2.dropna(how="any")

# %% [27]
MY_DF2.dropna(how="all")

# %% [28]
MY_DF2.dropna(how="any", subset=["numeric"])

# %% [29]
MY_DF2.drop_duplicates()

# %% [30]
MY_DF2.drop_duplicates(subset=["string1", "string2"])

# %% [31]
MY_DF2.drop("string2")

# %% [33]
import pandas as pd
from sklearn.datasets import load_digits
digits = load_digits()
pd_digits = pd.DataFrame(digits.data, columns=[f"IMG{i}" for i in range(digits["data"].shape[1])])
pd_digits = pd.concat([pd_digits, pd.Series(digits.target, name="target")], axis=1)
DIGITS = oml.push(pd_digits)
print("Shape:", DIGITS.shape)

# %% [34]
splits = DIGITS.split(ratio=(0.2, 0.8), use_hash=False)
print("Split lengths:", [len(s) for s in splits])

# %% [35]
splits = DIGITS.split(ratio=(0.25, 0.25, 0.25, 0.25), use_hash=False)
print("Split lengths:", [len(s) for s in splits])

# %% [36]
splits = DIGITS.split(strata_cols=["target"])
print("Split lengths:", [s.shape for s in splits])

# %% [37]
print("Verify values:", [s["target"].drop_duplicates().sort_values().pull() for s in splits])

# %% [38]
splits = DIGITS.split(hash_cols=["target"])
print("Split lengths:", [s.shape for s in splits])

# %% [39]
print("Verify values:", [s["target"].drop_duplicates().sort_values().pull() for s in splits])

# %% [40]
folds = DIGITS.KFold(n_splits=4)
print("Split lengths:", [(len(f[0]), len(f[1])) for f in folds])

# %% [42]
my_df2 = pd.DataFrame({"A": range(4), "B": [2 * i for i in range(4)]})
MY_DF2 = oml.push(my_df2)
MY_DF2

# %% [43]
MY_DF2.corr()

# %% [45] removed-api
my_df3 = my_df2
my_df3.loc[2, "A"] = 1.5  # pandas 3 no longer upcasts an int column on assignment
my_df3.loc[1, "B"] = None
MY_DF3 = oml.push(my_df3, oranumber=False)

# %% stand-in for [45]
my_df3 = my_df2.astype(float)
my_df3.loc[2, "A"] = 1.5
my_df3.loc[1, "B"] = None
MY_DF3 = oml.push(my_df3, oranumber=False)
MY_DF3

# %% [46]
MY_DF3.corr()

# %% [47]
MY_DF3.corr(skipna=False)

# %% [49]
my_df4 = pd.DataFrame({
    "GENDER": ["M", "M", "F", "M", "F", "M", "F", "F", None, "F", "M", "F"],
    "HAND": ["L", "R", "R", "L", "R", None, "L", "R", "R", "R", "R", "R"],
    "SPEED": [40.5, 30.4, 60.8, 51.2, 54, 29.3, 34.1, 39.6, 46.4, 12, 25.3, 37.5],
    "ACCURACY": [.92, .94, .87, .9, .85, .97, .96, .93, .89, .84, .91, .95]})
MY_DF4 = oml.push(my_df4)

# %% [50]
MY_DF4.crosstab("GENDER", "HAND").sort_values("count", ascending=False)

# %% [51]
MY_DF4.crosstab("GENDER", "HAND", pivot=True, margins=True, normalize=0)

# %% [52]
MY_DF4.pivot_table("GENDER", "HAND", "SPEED")

# %% [53]
MY_DF4.pivot_table("GENDER", "HAND", aggfunc=oml.DataFrame.median)

# %% [54]
MY_DF4.pivot_table("GENDER", "HAND", "SPEED", aggfunc=[oml.DataFrame.max, oml.DataFrame.min], margins=True)

# %% [56]
shopping_cart = pd.DataFrame({
    "Item_name": ["paper_towel", "ground_pork", "tofu", "eggs", "pork_loin", "whole_milk", "egg_custard"],
    "Item_type": ["grocery", "meat", "grocery", "dairy", "meat", "dairy", "bakery"],
    "Quantity": [1, 2.6, 4, 1, 1.9, 1, 1],
    "Unit_price": [1.19, 2.79, 0.99, 2.49, 3.19, 2.5, 3.99]})
CART = oml.push(shopping_cart)
CART

# %% [57]
price = CART["Quantity"] * (CART["Unit_price"])
print("Type:", type(price))
CART = CART.concat({"Price": price.round(2)})
CART

# %% [58]
egg_pattern = CART["Item_name"].count_pattern("egg")
print("Type:", type(egg_pattern))
CART.concat({"Egg_pattern": egg_pattern})

# %% [59]
pork_startInd = CART["Item_name"].find("pork")
print("Type:", type(pork_startInd))
CART.concat({"Pork_startInd": pork_startInd})

# %% [60]
is_grocery = CART["Item_type"] == "grocery"
print("Type:", type(is_grocery))
CART.concat({"Is_grocery": is_grocery})

# %% [61]
name_length = CART["Item_name"].len()
print("Type:", type(name_length))
CART.concat({"Name_length": name_length})

# %% [62]
print("Ceiling:", CART["Price"].ceil())
print("Floor:", CART["Price"].floor())
print("Exponential:", CART["Price"].exp().round(3))
print("logarithm:", CART["Price"].log().round(3))
print("Square Root:", CART["Price"].sqrt().round(3))

# %% [64]
from sklearn.datasets import load_iris
import pandas as pd
iris = load_iris()
x = pd.DataFrame(iris.data, columns=["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
x["Sepal_Width"].replace({3.5: None}, inplace=True)  # under pandas 3, changes a copy only
x["Petal_Length"].replace({1.5: None}, inplace=True)
x["Petal_Width"].replace({2.3: None}, inplace=True)
iris_df = pd.concat([x, y], axis=1)
IRIS2 = oml.push(iris_df)

# %% [65]
IRIS2.sort_values(by=["Sepal_Length", "Sepal_Width"], ascending=False).head(8)

# %% [66]
IRIS2.tail()

# %% [67]
IRIS2.tail().sort_values(by=["Petal_Length", "Petal_Width"], na_position="last")

# %% [69]
my_df4 = pd.DataFrame({"numeric_col": [1, 1.4, -4, 3.145, 5, None],
                       "string_col": [None, None, "a", "a", "a", "b"],
                       "bytes_col": [b"a", b"b", b"c", b"c", b"d", b"e"]})
MY_DF4 = oml.push(my_df4, dbtypes={"numeric_col": "BINARY_DOUBLE", "string_col": "CHAR(1)", "bytes_col": "RAW(1)"})
MY_DF4

# %% [70]
oml_bool = MY_DF4["numeric_col"] > 3
MY_DF4 = MY_DF4.concat(oml_bool)
MY_DF4.rename({"COL4": "boolean_col"})

# %% [72]
MY_DF4.describe(include="all")

# %% [73]
MY_DF4.describe(exclude=[oml.Float])

# %% [74]
MY_DF4.sum()

# %% [76]
MY_DF4.cumsum(by="bytes_col", ascending=False)

# %% [77]
print(MY_DF4.skew())
print(MY_DF4.median())
print(MY_DF4.kurtosis())

# %% [79]
import matplotlib.pyplot as plt
from sklearn.datasets import load_wine
wine = load_wine()
WINE = oml.push(pd.DataFrame(wine.data, columns=wine.feature_names))
oml.graphics.boxplot(WINE[:, 8:12], showmeans=True, meanline=True, patch_artist=True, labels=WINE.columns[8:12])
plt.title("Distribution of Wine Attributes")
plt.show()

# %% [80]
oml.graphics.hist(WINE["proline"], bins=10, color="red", linestyle="solid", edgecolor="black")
plt.title("Proline content in Wine")
plt.xlabel("proline content")
plt.show()
