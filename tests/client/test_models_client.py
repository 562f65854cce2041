"""``oml.models`` and ``epe model`` (docs/models.md) against a real ``epe serve``: a
fitted model deployed from a notebook in one call and scored as scikit-learn scores,
a batch scoring job run through the client, and the CLI's upload, deploy, score,
list and jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from epe import oml
from epe.cli import cli
from tests.acceptance.test_models import FEATURES, onnx_zip
from tests.serverproc import EpeServer, wait_for


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["SPECIES"] = data.target_names[data.target]
    return frame


@pytest.fixture(scope="module")
def env(server: EpeServer) -> dict[str, str]:
    user, password = server.add_user()
    return {"EPE_URL": server.url, "EPE_USER": user, "EPE_PASSWORD": password}


@pytest.fixture
def connected(env: dict[str, str]) -> Iterator[None]:
    oml.connect(env["EPE_URL"], env["EPE_USER"], env["EPE_PASSWORD"])
    yield
    oml.disconnect()


def test_a_fitted_model_is_deployed_in_one_call_and_scored(connected: None,
                                                          iris: pd.DataFrame) -> None:
    clf = LogisticRegression(max_iter=500).fit(iris[FEATURES], iris["SPECIES"])
    endpoint = oml.models.deploy(clf, "nb-iris")
    results = endpoint.score(iris[FEATURES].head(5))
    got = np.array([[{c["label"]: c["probability"] for c in r["classifications"]}[k]
                     for k in clf.classes_] for r in results])
    assert np.abs(got - clf.predict_proba(iris[FEATURES].head(5))).max() < 1e-5
    assert list(endpoint.api()["components"]["schemas"]["ScoreRequest"]["properties"]
                ["inputRecords"]["items"]["properties"]) == FEATURES
    assert "nb_iris" in list(oml.models.dir()["modelName"])
    oml.create(iris, table="NB_IRIS")
    job = oml.models.schedule("nb_job", endpoint.model_id, "NB_IRIS", "NB_SCORED",
                              start="2100-01-01T00:00:00Z", keep=["SPECIES"])
    job.run_now()
    def ended() -> dict[str, object] | None:
        runs = job.runs()
        return runs.iloc[0].to_dict() if len(runs) and runs.iloc[0]["status"] != "RUNNING" \
            else None

    run = wait_for(ended)
    assert (run["status"], run["rows"]) == ("FINISH", 150), run
    scored = oml.sync(table="NB_SCORED").pull()
    assert (scored["PREDICTION"] == clf.predict(iris[FEATURES])).all()
    job.drop()
    endpoint.undeploy()
    oml.models.drop(endpoint.model_id)
    assert "nb_iris" not in list(oml.models.dir()["modelName"])


def test_the_cli_uploads_deploys_scores_and_lists(env: dict[str, str], iris: pd.DataFrame,
                                                  tmp_path: Path) -> None:
    x = iris[FEATURES].to_numpy(dtype=np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, iris["SPECIES"])
    archive = tmp_path / "iris.zip"
    archive.write_bytes(onnx_zip(clf, x[:1], {"function": "classification",
                                              "inputColumns": FEATURES}))
    runner = CliRunner()

    def epe(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    model_id = epe("model", "upload", str(archive), "--name", "cli_iris").strip()
    assert "deployed" in epe("model", "deploy", model_id, "cli-iris")
    record = json.dumps(dict(zip(FEATURES, map(float, x[0]), strict=True)))
    (result,) = json.loads(epe("model", "score", "cli-iris", record, "--top-n", "1"))
    assert result["classifications"][0]["label"] == clf.predict(x[:1])[0]
    assert "cli_iris" in epe("model", "list") and "cli-iris" in epe("model", "endpoints")
    job = epe("model", "job", "create", "cli_job", "--model", model_id, "--input", "NB_IRIS",
              "--output", "CLI_OUT", "--start", "2100-01-01T00:00:00Z").strip()
    assert "cli_job" in epe("model", "job", "list")
    assert json.loads(epe("model", "job", "disable", job)) == {"jobStatus": "DISABLED"}
    assert "deleted" in epe("model", "job", "drop", job)


def test_grants_from_the_client_and_the_cli(server: EpeServer, env: dict[str, str],
                                            connected: None, iris: pd.DataFrame) -> None:
    x = iris[FEATURES].to_numpy(dtype=np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, iris["SPECIES"])
    model_id = oml.models.store(onnx_zip(clf, x[:1], {"function": "classification",
                                                       "inputColumns": FEATURES}), "granted")
    other, password = server.add_user()
    with server.client(other, password) as o:
        assert o.get(f"/omlmod/v1/models/{model_id}").status_code == 404
        oml.models.grant(model_id, other.lower())
        oml.models.grant(model_id, group="analysts")
        assert oml.models.grants(model_id) == {"users": [other], "groups": ["ANALYSTS"]}
        assert o.get(f"/omlmod/v1/models/{model_id}").status_code == 200
        with pytest.raises(ValueError, match="a user"):
            oml.models.grant(model_id)
        runner = CliRunner()

        def epe(*args: str) -> str:
            result = runner.invoke(cli, ["model", *args], env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        assert f"user   {other}" in epe("grants", model_id)
        assert f"revoked from {other}" in epe("revoke", model_id, "--user", other)
        assert "revoked from group ANALYSTS" in epe("revoke", model_id, "--group", "analysts")
        assert "granted to PUBLIC" in epe("grant", model_id, "--user", "public")
        assert oml.models.grants(model_id) == {"users": ["PUBLIC"], "groups": []}
        oml.models.revoke(model_id, "PUBLIC")
        assert o.get(f"/omlmod/v1/models/{model_id}").status_code == 404
    assert runner.invoke(cli, ["model", "grant", model_id], env=env).exit_code == 2
    oml.models.drop(model_id)
