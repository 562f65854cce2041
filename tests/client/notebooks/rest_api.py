# ruff: noqa
# OML4Py's "REST API" sample notebook (its 2021 version, whose URLs name the tenant and
# the database), reconstructed (the cell headers are explained in tour.py). Its result
# paragraphs, which only show JSON, are not cells here. Its model function reads
# LinearRegression's ``_residues``, which scikit-learn has since dropped: the REST call
# that runs it ([35]) answers that AttributeError.

# %% connect
import oml
oml.connect()

# %% [3] shell
curl -s -i -X POST --header 'Content-Type: application/json' --header 'Accept: application/json' \
  -d '{"grant_type":"password", "username":"'${username}'", "password":"'${password}'"}' \
  "${oml_server}/omlusers/tenants/${tenant_name}/databases/${database_name}/api/oauth2/v1/token"

# %% [5] shell
export token="${token}"  # the accessToken of the answer above, pasted

# %% [8]
import oml
import pandas as pd
from sklearn import datasets
iris = datasets.load_iris()
x = pd.DataFrame(iris.data, columns=["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"])
y = pd.DataFrame([{0: "setosa", 1: "versicolor", 2: "virginica"}[t] for t in iris.target], columns=["SPECIES"])
try:
    oml.drop(table="IRIS")
except:
    pass
oml_iris = oml.create(pd.concat([x, y], axis=1), table="IRIS")
index = oml.DataFrame(oml_iris["SPECIES"])
z.show(oml_iris)

# %% [10]
group_count = """def group_count(dat):
  import oml
  import pandas as pd
  return pd.DataFrame([(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], dat.shape[0])],
                      columns=["SPECIES", "SEPAL_LENGTH", "COUNT"])"""
try:
    oml.script.drop("group_count")
except:
    pass
oml.script.create("group_count", func=group_count, overwrite=True)

# %% [11]
res = oml.group_apply(oml_iris, index, func=group_count, oml_input_type="pandas.DataFrame",
                      func_value=pd.DataFrame([("a", 1, 1)], columns=["SPECIES", "SEPAL_LENGTH", "COUNT"]),
                      orderby=oml_iris["SEPAL_LENGTH"])
z.show(res)

# %% [13]
oml.script.dir(sctype="all")[["name", "owner"]]

# %% [15] shell
curl -s -X GET --header "Authorization: Bearer ${token}" --header 'Accept: application/json' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/scripts" \
  | jq -r '.result[] | .name + " " + .owner'

# %% [17] shell
curl -s -i -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' \
  -d '{"input":"select * from IRIS", "parameters":"{\"oml_input_type\":\"pandas.DataFrame\"}", "groupBy":"SPECIES", "orderBy":"SEPAL_LENGTH", "parallelFlag":true}' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/group-apply/group_count"

# %% [21] shell
curl -s -i -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' \
  -d '{"asyncFlag":true, "input":"select * from IRIS", "parameter":"{\"oml_input_type\":\"pandas.DataFrame\"}", "groupBy":"SPECIES", "orderBy":"SEPAL_LENGTH", "parallelFlag":true}' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/group-apply/group_count"

# %% [23] shell
curl -s -i -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' \
  -d '{"asyncFlag":true,"timeout":300, "input":"select * from IRIS", "parameter":"{\"oml_input_type\":\"pandas.DataFrame\"}", "groupBy":"SPECIES", "orderBy":"SEPAL_LENGTH", "parallelFlag":true}' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/group-apply/group_count"

# %% [25] shell
sleep 2  # the job of the answer above, its id pasted into ${job}
curl -s -i -X GET --header "Authorization: Bearer ${token}" --header 'Accept: application/json' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/jobs/${job}"

# %% [27] shell
curl -s -i -X GET --header "Authorization: Bearer ${token}" --header 'Accept: application/json' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/jobs/${job}/result"

# %% [31]
build_lm_rest = """def build_rest(dat):
            from sklearn import linear_model
            import oml
            import pandas as pd
            dat = pd.get_dummies(dat, drop_first=True)
            X = dat[["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH", "SPECIES_versicolor", "SPECIES_virginica"]]
            regr = linear_model.LinearRegression().fit(X, dat[["SEPAL_LENGTH"]])
            data = {"init_params": regr.get_params(), "model_params": {}}
            for p in ("coef_", "intercept_", "_residues", "singular_"):
                data["model_params"][p] = getattr(regr, p).tolist()
            return data"""

# %% [33]
try:
    oml.script.drop("build_lm_rest")
except:
    pass
oml.script.create("build_lm_rest", func=build_lm_rest, overwrite=True)

# %% [35] shell removed-api
curl -s -i -X POST --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
  --header 'Accept: application/json' \
  -d '{"input":"select * from IRIS", "parameters":"{\"oml_input_type\":\"pandas.DataFrame\"}"}' \
  "${oml_server}/oml/tenants/${tenant_name}/databases/${database_name}/api/py-scripts/v1/table-apply/build_lm_rest"
