"""Models as scoring endpoints (docs/models.md), through a real ``epe serve``.

An ONNX classifier and regressor made by skl2onnx from scikit-learn models fitted on
IRIS, uploaded in Oracle's zip and scored over HTTP, answer what scikit-learn
answers; so does a PYTHON model saved in a datastore by a function, with and
without a scoring script. An endpoint's OpenAPI document validates and names its
columns; other users are refused what is not shared or granted to them (or a group
of theirs, while they are in it); bad records and uploads are
400s naming what is wrong; a batch scoring job writes the table scikit-learn would,
and a reader never sees half of it, on DuckDB and on PostgreSQL.

Nothing here asserts on elapsed time: ``wait_for`` polls for a state."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openapi_spec_validator import validate
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.serverproc import (
    API,
    EpeServer,
    assert_error,
    iris_csv,
    put_table,
    unique_name,
    wait_for,
)

OML = "/omlmod/v1"
FEATURES = ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Iris:
    X: np.ndarray  # float32, as the ONNX models take it
    species: np.ndarray

    def records(self, columns: list[str] = FEATURES) -> list[dict[str, float]]:
        index = [FEATURES.index(c) for c in columns]
        return [{c: float(row[i]) for c, i in zip(columns, index, strict=True)}
                for row in self.X]


@pytest.fixture(scope="module")
def iris() -> Iris:
    data = load_iris()
    return Iris(data.data.astype(np.float32), data.target_names[data.target])


def onnx_zip(model: Any, sample: np.ndarray, metadata: dict[str, Any],
             labels: list[str] | None = None, options: Any = None) -> bytes:
    """Oracle's zip of a scikit-learn model converted by skl2onnx."""
    from skl2onnx import to_onnx

    onnx = to_onnx(model, sample, options=options)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("model.onnx", onnx.SerializeToString())
        z.writestr("metadata.json", json.dumps(metadata))
        if labels is not None:
            z.writestr("label.txt", "\n".join(labels))
    return out.getvalue()


def upload(c: httpx.Client, data: bytes, name: str, **fields: str) -> httpx.Response:
    return c.post(f"{OML}/models", files={"modelData": ("model.zip", data, "application/zip")},
                  data={"modelName": name, "modelType": "ONNX", "version": "1.0", **fields})


def stored(c: httpx.Client, data: bytes, name: str, **fields: str) -> str:
    r = upload(c, data, name, **fields)
    assert r.status_code == 201, r.text
    return str(r.json()["modelId"])


def deployed(c: httpx.Client, model_id: str, uri: str) -> str:
    r = c.post(f"{OML}/deployment", json={"modelId": model_id, "uri": uri})
    assert r.status_code == 201, r.text
    return uri


def score(c: httpx.Client, uri: str, records: list[dict[str, Any]],
          **extra: Any) -> list[dict[str, Any]]:
    r = c.post(f"{OML}/deployment/{uri}/score", json={"inputRecords": records, **extra})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["scoringResults"]
    assert len(results) == len(records)
    return results


def probabilities(results: list[dict[str, Any]], classes: list[str]) -> np.ndarray:
    return np.array([[{x["label"]: x["probability"] for x in r["classifications"]}[k]
                      for k in classes] for r in results])


@pytest.fixture(scope="module")
def owner(server: EpeServer) -> Iterator[tuple[str, httpx.Client]]:
    name, client = server.new_client()
    with client:
        yield name, client


@pytest.fixture(scope="module")
def classifier(iris: Iris) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(iris.X,
                                                                                 iris.species)


@pytest.fixture(scope="module")
def iris_endpoint(owner: tuple[str, httpx.Client], iris: Iris, classifier: Any) -> str:
    """The ONNX classifier, deployed."""
    data = onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                             "inputColumns": FEATURES})
    return deployed(owner[1], stored(owner[1], data, "iris_clf"), "iris-clf")


# -- ONNX -------------------------------------------------------------------------------


def test_an_onnx_classifier_scores_as_scikit_learn(owner: tuple[str, httpx.Client], iris: Iris,
                                                   classifier: Any, iris_endpoint: str) -> None:
    c = owner[1]
    results = score(c, iris_endpoint, iris.records())
    classes = list(classifier.classes_)
    expected = classifier.predict_proba(iris.X)
    assert np.abs(probabilities(results, classes) - expected).max() < TOLERANCE
    # Most probable first: the first label is scikit-learn's prediction.
    assert [r["classifications"][0]["label"] for r in results] == \
        list(classifier.predict(iris.X))
    top = score(c, iris_endpoint, iris.records()[:3], topN=1)
    assert all(len(r["classifications"]) == 1 for r in top)


def test_an_onnx_regressor_scores_as_scikit_learn(owner: tuple[str, httpx.Client],
                                                  iris: Iris) -> None:
    c = owner[1]
    inputs = FEATURES[:3]
    regressor = LinearRegression().fit(iris.X[:, :3], iris.X[:, 3])
    data = onnx_zip(regressor, iris.X[:1, :3], {"function": "regression"})
    # Columns given with the upload (not in metadata.json), with their types.
    model = stored(c, data, "iris_reg", inputColumns=json.dumps({k: "number" for k in inputs}))
    uri = deployed(c, model, "iris-reg")
    results = score(c, uri, iris.records(inputs))
    values = np.array([r["regression"] for r in results])
    assert np.abs(values - regressor.predict(iris.X[:, :3])).max() < TOLERANCE


def test_a_model_without_zipmap_takes_its_labels_from_label_txt(
        owner: tuple[str, httpx.Client], iris: Iris, classifier: Any) -> None:
    c = owner[1]
    classes = list(classifier.classes_)
    data = onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                             "inputColumns": FEATURES,
                                             "classificationProbOutput": "probabilities"},
                    labels=classes, options={"zipmap": False})
    uri = deployed(c, stored(c, data, "iris_nozipmap"), "iris-nozipmap")
    results = score(c, uri, iris.records()[:20])
    expected = classifier.predict_proba(iris.X[:20])
    assert np.abs(probabilities(results, classes) - expected).max() < TOLERANCE


# -- PYTHON models from a datastore --------------------------------------------------------

FIT = '''def fit(dat):
    import oml
    from sklearn.linear_model import LogisticRegression
    X = dat[["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]]
    clf = LogisticRegression(max_iter=500).fit(X, dat["SPECIES"])
    oml.ds.save({"clf": clf}, "iris_models", overwrite=True)
    return {"classes": list(clf.classes_), "proba": clf.predict_proba(X).tolist(),
            "rows": X.to_dict("records")}
'''
# A scoring script: called with the model and the records as a DataFrame.
SHARPEN = '''def sharpen(model, data):
    import pandas as pd
    p = model.predict_proba(data) ** 2
    return pd.DataFrame(p / p.sum(axis=1, keepdims=True), columns=model.classes_)
'''


def test_a_python_model_from_a_datastore_scores_as_scikit_learn(
        owner: tuple[str, httpx.Client]) -> None:
    c = owner[1]
    put_table(c, "IRIS", iris_csv())
    r = c.post(f"{API}/table-apply", json={"script": FIT, "input": "SELECT * FROM IRIS"})
    assert r.status_code == 200, r.text
    fitted = r.json()["result"]
    classes, expected = fitted["classes"], np.array(fitted["proba"])
    r = c.post(f"{API}/scripts", json={"name": "sharpen", "script": SHARPEN})
    assert r.status_code == 201, r.text
    for name, script in (("iris_py", None), ("iris_py_sharp", "sharpen")):
        fields = {"modelName": name, "modelType": "PYTHON", "version": "1",
                  "datastore": "iris_models", "object": "clf",
                  **({"script": script} if script else {})}
        r = c.post(f"{OML}/models", data=fields)
        assert r.status_code == 201, r.text
        assert r.json()["function"] == "classification"
        assert [x["name"] for x in r.json()["inputColumns"]] == FEATURES
        uri = deployed(c, r.json()["modelId"], name.replace("_", "-"))
        got = probabilities(score(c, uri, fitted["rows"]), classes)
        want = expected if script is None else expected ** 2 / \
            (expected ** 2).sum(axis=1, keepdims=True)
        assert np.abs(got - want).max() < TOLERANCE


# -- the endpoint's document, listings, owners -----------------------------------------------


def test_the_endpoint_document_validates_and_names_the_columns(
        owner: tuple[str, httpx.Client], iris_endpoint: str) -> None:
    r = owner[1].get(f"{OML}/deployment/{iris_endpoint}/api")
    assert r.status_code == 200, r.text
    document = r.json()
    validate(document)
    schemas = document["components"]["schemas"]
    record = schemas["ScoreRequest"]["properties"]["inputRecords"]["items"]
    assert list(record["properties"]) == FEATURES
    assert record["required"] == FEATURES
    assert {p["type"] for p in record["properties"].values()} == {"number"}
    assert f"{OML}/deployment/{iris_endpoint}/score" in document["paths"]


def test_listings_and_filters(owner: tuple[str, httpx.Client], iris_endpoint: str) -> None:
    c = owner[1]
    items = c.get(f"{OML}/models", params={"modelName": "iris_clf"}).json()["items"]
    assert [(m["modelName"], m["version"], m["createdBy"]) for m in items] == \
        [("iris_clf", "1.0", owner[0])]
    assert c.get(f"{OML}/models", params={"version": "9.9"}).json()["items"] == []
    endpoint = c.get(f"{OML}/deployment/{iris_endpoint}").json()
    assert endpoint["modelId"] == items[0]["modelId"]
    assert iris_endpoint in [e["uri"] for e in c.get(f"{OML}/deployment").json()["items"]]


def test_another_user_is_refused_an_unshared_model_and_may_score_a_shared_one(
        server: EpeServer, owner: tuple[str, httpx.Client], iris: Iris, classifier: Any,
        iris_endpoint: str) -> None:
    c = owner[1]
    private = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    data = onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                             "inputColumns": FEATURES})
    shared = stored(c, data, "iris_shared", shared="true")
    deployed(c, shared, "iris-shared")
    _other, o = server.new_client()
    with o:
        for refused in (o.get(f"{OML}/models/{private}"),
                        o.get(f"{OML}/deployment/{iris_endpoint}"),
                        o.get(f"{OML}/deployment/{iris_endpoint}/api"),
                        o.post(f"{OML}/deployment/{iris_endpoint}/score",
                               json={"inputRecords": iris.records()[:1]}),
                        o.post(f"{OML}/deployment", json={"modelId": private, "uri": "mine"})):
            assert_error(refused, 404)
        listed = [m["modelId"] for m in o.get(f"{OML}/models").json()["items"]]
        assert shared in listed and private not in listed
        assert score(o, "iris-shared", iris.records()[:2])  # shared: anyone may score it
        # ... but only its owner undeploys or deletes it.
        assert_error(o.delete(f"{OML}/deployment/iris-shared"), 404)
        assert_error(o.delete(f"{OML}/models/{shared}"), 404)
        # A batch scoring job of another user's shared model scores their own table.
        put_parquet(o, "THEIRS", iris_table(iris, 10))
        job = scoring_job(o, job_body("theirs", shared, "THEIRS", "THEIRS_OUT",
                                      start=time.time() + 86400, repeat="FREQ=DAILY"))
        assert_error(o.post(f"{OML}/jobs", json=job_body(
            "not_theirs", private, "THEIRS", "X", start=time.time(), repeat="FREQ=DAILY")), 404)
        o.post(f"{OML}/jobs/{job}/action", json={"action": "RUN"})
        (run,) = finished_runs(o, job, 1)
        assert (run["status"], run["rows"]) == ("FINISH", 10), run


# -- grants ------------------------------------------------------------------------------------


def refused_or_scored(c: httpx.Client, uri: str, iris: Iris) -> int:
    """The status of one score call: 200, or the 404 of a model one may not score."""
    r = c.post(f"{OML}/deployment/{uri}/score", json={"inputRecords": iris.records()[:1]})
    if r.status_code != 200:
        assert_error(r, 404)
    return r.status_code


def test_a_model_granted_to_a_user_is_theirs_to_score_until_revoked(
        server: EpeServer, owner: tuple[str, httpx.Client], iris: Iris,
        iris_endpoint: str) -> None:
    c = owner[1]
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    grants = f"{OML}/models/{model}/grants"
    bob, b = server.new_client()
    carol, o = server.new_client()
    with b, o:
        assert refused_or_scored(b, iris_endpoint, iris) == 404
        # Only the owner grants: not a user who cannot see it, nor one it is granted to.
        assert_error(b.post(grants, json={"user": bob}), 404)
        r = c.post(grants, json={"user": bob.lower()})
        assert r.json() == {"result": {"modelId": model, "user": bob}}, r.text
        assert_error(b.post(grants, json={"user": carol}), 404)
        assert_error(b.delete(f"{grants}/user/{bob}"), 404)
        assert c.get(grants).json()["result"] == {"modelId": model, "users": [bob],
                                                  "groups": []}
        assert refused_or_scored(b, iris_endpoint, iris) == 200
        assert b.get(f"{OML}/models/{model}").status_code == 200
        assert model in [m["modelId"] for m in b.get(f"{OML}/models").json()["items"]]
        assert iris_endpoint in [e["uri"] for e in b.get(f"{OML}/deployment").json()["items"]]
        assert b.get(f"{OML}/deployment/{iris_endpoint}/api").status_code == 200
        # ... to score, not to own: neither undeploying nor deleting it.
        assert_error(b.delete(f"{OML}/deployment/{iris_endpoint}"), 404)
        assert_error(b.delete(f"{OML}/models/{model}"), 404)
        for refused in (o.get(f"{OML}/models/{model}"),
                        o.get(f"{OML}/deployment/{iris_endpoint}/api")):
            assert_error(refused, 404)
        assert refused_or_scored(o, iris_endpoint, iris) == 404
        # A batch scoring job of the grantee's scores their own table with it, while the
        # grant lasts: each run asks again.
        put_parquet(b, "BOBS", iris_table(iris, 5))
        job = scoring_job(b, job_body("bobs", model, "BOBS", "BOBS_OUT",
                                      start=time.time() + 86400, repeat="FREQ=DAILY"))
        assert_error(o.post(f"{OML}/jobs", json=job_body(
            "carols", model, "BOBS", "X", start=time.time(), repeat="FREQ=DAILY")), 404)
        b.post(f"{OML}/jobs/{job}/action", json={"action": "RUN"})
        (run,) = finished_runs(b, job, 1)
        assert (run["status"], run["rows"]) == ("FINISH", 5), run
        # Granted to everyone (PUBLIC), then not.
        assert c.post(grants, json={"user": None}).json()["result"]["user"] == "PUBLIC"
        assert refused_or_scored(o, iris_endpoint, iris) == 200
        assert c.delete(f"{grants}/user/PUBLIC").status_code == 200
        assert refused_or_scored(o, iris_endpoint, iris) == 404
        r = c.delete(f"{grants}/user/{bob}")
        assert r.json() == {"result": {"modelId": model, "user": bob, "revoked": True}}
        assert refused_or_scored(b, iris_endpoint, iris) == 404
        assert_error(b.get(f"{OML}/models/{model}"), 404)
        b.post(f"{OML}/jobs/{job}/action", json={"action": "RUN"})
        runs = finished_runs(b, job, 2)
        assert runs[0]["status"] == "FAILED" and "granted" in runs[0]["errorMessage"], runs
        assert "not granted" in assert_error(c.delete(f"{grants}/user/{bob}"), 404)[
            "errorMessage"]
        assert b.delete(f"{OML}/jobs/{job}").status_code == 200


def test_a_model_granted_to_a_group_is_scored_by_its_members_while_they_are(
        server: EpeServer, owner: tuple[str, httpx.Client], iris: Iris,
        iris_endpoint: str) -> None:
    owner_name, c = owner
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    grants = f"{OML}/models/{model}/grants"
    group = unique_name("SCORERS")  # the server is shared: a group of this test's own
    members = f"/omlusers/api/v1/groups/{group}/members"
    admin, a = server.new_client(admin=True)
    dave, d = server.new_client()
    with a, d:
        r = c.post(grants, json={"group": group.lower()})
        assert r.json() == {"result": {"modelId": model, "group": group}}, r.text
        assert c.get(grants).json()["result"]["groups"] == [group]
        assert refused_or_scored(d, iris_endpoint, iris) == 404
        assert a.put(f"{members}/{dave}").status_code == 200
        assert refused_or_scored(d, iris_endpoint, iris) == 200
        # Membership is looked up at each call: it ends, and so does scoring, at once.
        assert a.delete(f"{members}/{dave}").status_code == 200
        assert refused_or_scored(d, iris_endpoint, iris) == 404
        assert a.put(f"{members}/{dave}").status_code == 200
        r = c.delete(f"{grants}/group/{group}")
        assert r.json() == {"result": {"modelId": model, "group": group, "revoked": True}}
        assert refused_or_scored(d, iris_endpoint, iris) == 404
        # An admin grants and revokes any user's model as its owner would.
        assert a.post(grants, json={"user": dave}).status_code == 200
        assert refused_or_scored(d, iris_endpoint, iris) == 200
        assert c.get(grants).json()["result"]["users"] == [dave]
        assert a.delete(f"{grants}/user/{dave}").status_code == 200
        assert refused_or_scored(d, iris_endpoint, iris) == 404
        assert a.delete(f"{members}/{dave}").status_code == 200

        # The audit trail has the admin's grant and revoke, of the owner's model.
        def trail() -> list[tuple[str, str, str]] | None:
            r = a.get("/omlusers/api/v1/audit", params={"kind": "model", "user": admin})
            made = [(e["action"], e["owner"], e["details"].get("grantee"))
                    for e in r.json()["result"]["items"] if e["name"] == model]
            return made if len(made) == 2 else None

        assert wait_for(trail) == [("grant", owner_name, dave), ("revoke", owner_name, dave)]


# -- what is refused ----------------------------------------------------------------------------


def test_bad_records_are_400s_naming_the_column(owner: tuple[str, httpx.Client], iris: Iris,
                                                iris_endpoint: str) -> None:
    c = owner[1]
    good = iris.records()[0]
    path = f"{OML}/deployment/{iris_endpoint}/score"
    cases = [
        ({k: v for k, v in good.items() if k != "PETAL_WIDTH"}, "PETAL_WIDTH", "lacks"),
        ({**good, "COLOR": 1.0}, "COLOR", "does not take"),
        ({**good, "SEPAL_WIDTH": "wide"}, "SEPAL_WIDTH", "needs a number"),
        ({**good, "SEPAL_WIDTH": None}, "SEPAL_WIDTH", "needs a number"),
        ({**good, "SEPAL_WIDTH": True}, "SEPAL_WIDTH", "needs a number"),
    ]
    for record, column, said in cases:
        body = assert_error(c.post(path, json={"inputRecords": [good, record]}), 400)
        assert body["column"] == column and body["record"] == 1, body
        assert column in body["errorMessage"] and said in body["errorMessage"], body
    assert_error(c.post(path, json={"inputRecords": []}), 400)
    assert_error(c.post(path, json={"records": [good]}), 400)
    assert_error(c.post(path, json={"inputRecords": [good], "topN": 0}), 400)
    assert_error(c.post(path, content=b"{not json", headers={"Content-Type":
                                                              "application/json"}), 400)
    assert_error(c.post(f"{OML}/deployment/no-such/score", json={"inputRecords": [good]}), 404)


def test_bad_uploads_are_refused_and_nothing_is_kept(owner: tuple[str, httpx.Client],
                                                      iris: Iris, classifier: Any,
                                                      iris_endpoint: str) -> None:
    c = owner[1]
    no_function = onnx_zip(classifier, iris.X[:1], {"inputColumns": FEATURES})
    no_columns = onnx_zip(classifier, iris.X[:1], {"function": "classification"})
    for data, said in ((b"not a zip", "zip"), (no_function, "function"),
                       (no_columns, "inputColumns")):
        body = assert_error(upload(c, data, "bad"), 400)
        assert said in body["errorMessage"], body
    assert_error(c.post(f"{OML}/models", data={"modelName": "x", "modelType": "PMML",
                                               "version": "1"}), 400)
    assert_error(c.post(f"{OML}/models", data={"modelName": "x", "modelType": "PYTHON",
                                               "version": "1", "datastore": "none",
                                               "object": "clf"}), 404)
    assert c.get(f"{OML}/models", params={"modelName": "bad"}).json()["items"] == []
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    good = onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                             "inputColumns": FEATURES})
    assert_error(upload(c, good, "iris_clf"), 409)  # that name and version exist
    assert_error(c.post(f"{OML}/deployment", json={"modelId": model, "uri": "again"}), 409)
    assert_error(c.delete(f"{OML}/models/{model}"), 409)  # deployed: undeploy it first


# -- batch scoring jobs -------------------------------------------------------------------------


def scoring_job(c: httpx.Client, body: dict[str, Any]) -> str:
    r = c.post(f"{OML}/jobs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["jobId"])


def job_body(name: str, model: str, input_table: str, output_table: str, *, start: float,
             repeat: str, max_runs: int | None = None, end: float | None = None,
             keep: list[str] | None = None) -> dict[str, Any]:
    schedule: dict[str, Any] = {"jobStartDate": iso(start), "repeatInterval": repeat}
    if max_runs is not None:
        schedule["maxRuns"] = max_runs
    if end is not None:
        schedule["jobEndDate"] = iso(end)
    return {"jobName": name, "jobType": "MODEL_SCORING", "jobSchedule": schedule,
            "jobProperties": {"modelId": model, "inputData": input_table,
                              "outputData": output_table,
                              "supplementalColumnNames": keep or []}}


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def finished_runs(c: httpx.Client, job: str, count: int, timeout: float = 60) -> list[Any]:
    def ended() -> list[Any] | None:
        runs = c.get(f"{OML}/jobs/{job}").json()["runs"]
        done = [r for r in runs if r["status"] != "RUNNING"]
        return runs if len(done) >= count else None

    runs: list[Any] = wait_for(ended, timeout, 0.2)
    return runs


def iris_table(iris: Iris, n: int) -> bytes:
    """``n`` rows of IRIS's measurements (repeated) with an ID, as Parquet."""
    rows = np.resize(np.arange(len(iris.X)), n)
    columns = {name: iris.X[rows, i].astype(np.float64) for i, name in enumerate(FEATURES)}
    out = io.BytesIO()
    pq.write_table(pa.table({"ID": np.arange(n), **columns}), out)
    return out.getvalue()


def put_parquet(c: httpx.Client, name: str, data: bytes) -> None:
    r = c.put(f"{API}/tables/{name}", content=data, params={"overwrite": "true"},
              headers={"Content-Type": "application/vnd.apache.parquet"})
    assert r.status_code == 201, r.text


def query(c: httpx.Client, sql: str) -> httpx.Response:
    return c.post(f"{API}/query", json={"input": sql})


def test_a_scoring_job_run_now_writes_what_scikit_learn_predicts(
        owner: tuple[str, httpx.Client], iris: Iris, classifier: Any,
        iris_endpoint: str) -> None:
    c = owner[1]
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    put_parquet(c, "IRIS_IN", iris_table(iris, 150))
    # Starting next year: nothing runs but what is asked for now.
    job = scoring_job(c, job_body("iris_now", model, "IRIS_IN", "IRIS_OUT",
                                  start=time.time() + 366 * 86400, repeat="FREQ=DAILY",
                                  keep=["ID"]))
    r = c.post(f"{OML}/jobs/{job}/action", json={"action": "RUN"})
    assert r.status_code == 200, r.text
    (run,) = finished_runs(c, job, 1)
    assert (run["status"], run["rows"], run["scheduledDate"]) == ("FINISH", 150, None), run
    out = query(c, "SELECT * FROM IRIS_OUT ORDER BY ID").json()["result"]
    assert [row["ID"] for row in out] == list(range(150))
    assert [row["PREDICTION"] for row in out] == list(classifier.predict(iris.X))
    best = classifier.predict_proba(iris.X).max(axis=1)
    assert np.abs(np.array([row["PROBABILITY"] for row in out]) - best).max() < TOLERANCE
    # The run was an async job of the owner's, and its log says what it did.
    jobs = c.get(f"{API}/jobs").json()["result"]
    assert run["jobId"] in [j["job_id"] for j in jobs if j["operation"] == "model-scoring"]
    assert "150 rows scored" in c.get(f"{API}/jobs/{run['jobId']}/log").text


def test_a_schedule_runs_its_slots_then_completes_and_can_be_disabled(
        owner: tuple[str, httpx.Client], iris_endpoint: str) -> None:
    c = owner[1]
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    job = scoring_job(c, job_body("iris_every_2s", model, "IRIS_IN", "IRIS_OUT_2",
                                  start=time.time() + 1, repeat="FREQ=SECONDLY;INTERVAL=2",
                                  max_runs=2))
    runs = finished_runs(c, job, 2)
    assert [r["status"] for r in runs] == ["FINISH", "FINISH"]
    assert len({r["scheduledDate"] for r in runs}) == 2
    info = c.get(f"{OML}/jobs/{job}").json()
    assert (info["jobStatus"], info["runCount"], info["nextRunDate"]) == ("COMPLETED", 2, None)
    other = scoring_job(c, job_body("iris_off", model, "IRIS_IN", "IRIS_OUT_3",
                                    start=time.time() + 3600, repeat="FREQ=HOURLY"))
    r = c.post(f"{OML}/jobs/{other}/action", json={"action": "DISABLE"})
    assert r.json() == {"jobStatus": "DISABLED"}
    r = c.post(f"{OML}/jobs/{other}/action", json={"action": "ENABLE"})
    assert r.json() == {"jobStatus": "ENABLED"}
    assert c.delete(f"{OML}/jobs/{other}").status_code == 200
    assert_error(c.get(f"{OML}/jobs/{other}"), 404)
    assert other not in [j["jobId"] for j in c.get(f"{OML}/jobs").json()["items"]]


def test_bad_scoring_jobs_are_refused(owner: tuple[str, httpx.Client],
                                      iris_endpoint: str) -> None:
    c = owner[1]
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    now = time.time()
    for body, said in (
            (job_body("j", model, "IRIS_IN", "O", start=now, repeat="FREQ=SOMETIMES"),
             "repeatInterval"),
            (job_body("j", model, "IRIS_IN", "O", start=now, repeat="FREQ=DAILY;COUNT=2"),
             "maxRuns"),
            (job_body("j", model, "IRIS_IN", "O", start=now, end=now - 10,
                      repeat="FREQ=DAILY"), "jobEndDate"),
            (job_body("j", model, "IRIS_IN", "O", start=now, repeat="FREQ=DAILY",
                      keep=["PREDICTION"]), "PREDICTION"),
            (job_body("j", model, "IRIS IN", "O", start=now, repeat="FREQ=DAILY"), "table")):
        assert said in assert_error(c.post(f"{OML}/jobs", json=body), 400)["errorMessage"]
    missing = job_body("j", "00000000-0000-0000-0000-000000000000", "IRIS_IN", "O",
                       start=now, repeat="FREQ=DAILY")
    assert_error(c.post(f"{OML}/jobs", json=missing), 404)


def test_a_run_on_a_table_without_the_model_columns_fails_naming_the_column(
        owner: tuple[str, httpx.Client], iris_endpoint: str) -> None:
    c = owner[1]
    model = c.get(f"{OML}/deployment/{iris_endpoint}").json()["modelId"]
    put_table(c, "NO_PETALS", "SEPAL_LENGTH,SEPAL_WIDTH\n1,2\n")
    job = scoring_job(c, job_body("no_petals", model, "NO_PETALS", "O",
                                  start=time.time() + 86400, repeat="FREQ=DAILY"))
    c.post(f"{OML}/jobs/{job}/action", json={"action": "RUN"})
    (run,) = finished_runs(c, job, 1)
    assert run["status"] == "FAILED" and "PETAL_LENGTH" in run["errorMessage"], run


def test_the_output_table_appears_whole(data_server: EpeServer, iris: Iris,
                                        classifier: Any) -> None:
    """A reader polling the output table while runs replace it sees no table until the
    first run ends, then all of its rows every time: never a part, never a gap
    (DuckDB and PostgreSQL)."""
    user, c = data_server.new_client()
    rows = 100_000
    with c:
        data = onnx_zip(classifier, iris.X[:1], {"function": "classification",
                                                 "inputColumns": FEATURES})
        model = stored(c, data, "iris_whole")
        put_parquet(c, "BIG_IN", iris_table(iris, rows))
        seen: list[Any] = []
        stop = threading.Event()

        def read() -> None:
            with data_server.client(user, "pw-Secret1") as r:
                while not stop.is_set():
                    answer = query(r, "SELECT count(*) AS N FROM BIG_OUT")
                    seen.append(answer.json()["result"][0]["N"] if answer.status_code == 200
                                else answer.status_code)

        thread = threading.Thread(target=read)
        thread.start()
        try:
            job = scoring_job(c, job_body("whole", model, "BIG_IN", "BIG_OUT",
                                          start=time.time(), repeat="FREQ=SECONDLY;INTERVAL=1",
                                          max_runs=2, keep=["ID"]))
            runs = finished_runs(c, job, 2, timeout=120)
            wait_for(lambda: len(seen) > 2 and seen[-1] == rows)
        finally:
            stop.set()
            thread.join()
        assert [r["status"] for r in runs] == ["FINISH"] * 2, runs
        first = seen.index(rows)
        assert set(seen[:first]) <= {400} and set(seen[first:]) == {rows}, \
            sorted(set(map(str, seen)))
