"""``oml.models``: models as scoring endpoints from the client (docs/models.md).

A fitted model goes from a notebook to an endpoint in one call::

    endpoint = oml.models.deploy(clf, "iris")
    endpoint.score(IRIS.head(3))

``deploy`` saves the object in a datastore of the user's (``oml.ds.save``), stores
it as a PYTHON model and deploys it; given an ONNX zip (bytes or a path) it uploads
that instead. The rest wraps ``/omlmod/v1``: models, endpoints, score calls, and
batch scoring jobs on a schedule, and grants of a model to users and groups.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from epe.client import _datastores
from epe.client._connection import Connection, current, segment

__all__ = ["Endpoint", "ScoringJob", "deploy", "dir", "drop", "endpoints", "grant", "grants",
           "jobs", "revoke", "schedule", "score", "store", "undeploy"]

ROOT = "/omlmod/v1"


def _call(method: str, path: str, connection: Connection | None = None, **kw: Any) -> Any:
    r = (connection or current()).request(method, ROOT + path, api=False, **kw)
    return orjson.loads(r.content) if r.content else None


def _records(records: Any) -> list[dict[str, Any]]:
    if isinstance(records, pd.DataFrame):
        return list(records.to_dict("records"))
    if isinstance(records, dict):
        return [records]
    return list(records)


@dataclass(frozen=True)
class Endpoint:
    """A deployed model: ``score`` records with it, ``api()`` its OpenAPI document."""

    uri: str
    model_id: str

    def score(self, records: Any, top_n: int | None = None) -> list[dict[str, Any]]:
        """Score records (dicts, or a DataFrame's rows): one result per record."""
        return score(self.uri, records, top_n)

    def api(self) -> dict[str, Any]:
        """The endpoint's own OpenAPI document."""
        document: dict[str, Any] = _call("GET", f"/deployment/{self.uri}/api")
        return document

    def undeploy(self) -> None:
        """Delete the endpoint (the model stays)."""
        undeploy(self.uri)


def store(model: Any, name: str, version: str = "1.0", *, datastore: str | None = None,
          shared: bool = False, description: str = "", namespace: str = "",
          columns: Any = None, function: str | None = None,
          script: str | None = None) -> str:
    """Store ``model`` and return its id: a fitted Python object (saved in
    ``datastore``, by default ``model_<name>``, then stored as a PYTHON model with the
    optional scoring ``script``), or an ONNX zip as bytes or a path."""
    fields = {"modelName": name, "version": version, "description": description,
              "namespace": namespace, **({"shared": "true"} if shared else {}),
              **({"inputColumns": orjson.dumps(columns).decode()} if columns else {}),
              **({"function": function} if function else {})}
    if isinstance(model, bytes | Path) or (isinstance(model, str) and model.endswith(".zip")):
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        answer = _call("POST", "/models", data={**fields, "modelType": "ONNX"},
                       files={"modelData": ("model.zip", data, "application/zip")})
        return str(answer["modelId"])
    datastore = datastore or f"model_{name}"
    _datastores.save({"model": model}, datastore, overwrite=True)
    answer = _call("POST", "/models", data={**fields, "modelType": "PYTHON",
                                           "datastore": datastore, "object": "model",
                                           **({"script": script} if script else {})})
    return str(answer["modelId"])


def deploy(model: Any, uri: str, name: str | None = None, version: str = "1.0",
           **options: Any) -> Endpoint:
    """Store ``model`` (see ``store``; ``name`` defaults to ``uri``) and deploy it at
    ``uri``, in one call."""
    model_id = store(model, name or uri.replace("-", "_"), version, **options)
    _call("POST", "/deployment", json={"modelId": model_id, "uri": uri})
    return Endpoint(uri, model_id)


def score(uri: str, records: Any, top_n: int | None = None) -> list[dict[str, Any]]:
    """Score records with the endpoint ``uri``: Oracle's ``scoringResults``."""
    body: dict[str, Any] = {"inputRecords": _records(records)}
    if top_n is not None:
        body["topN"] = top_n
    results: list[dict[str, Any]] = _call("POST", f"/deployment/{uri}/score",
                                          json=body)["scoringResults"]
    return results


def dir(name: str | None = None, version: str | None = None,
        namespace: str | None = None) -> pd.DataFrame:
    """The models you may see (yours, shared ones, and those granted to you), one row
    each."""
    params = {k: v for k, v in (("modelName", name), ("version", version),
                                ("namespace", namespace)) if v is not None}
    items = _call("GET", "/models", params=params)["items"]
    columns = ["modelId", "modelName", "version", "namespace", "modelType", "function",
               "shared", "createdBy", "createdDate", "description"]
    return pd.DataFrame([{c: m.get(c) for c in columns} for m in items], columns=columns)


def drop(model_id: str) -> None:
    """Delete one of your models (undeploy it first)."""
    _call("DELETE", f"/models/{model_id}")


def endpoints() -> list[Endpoint]:
    """The endpoints you may score."""
    return [Endpoint(e["uri"], e["modelId"]) for e in _call("GET", "/deployment")["items"]]


def undeploy(uri: str) -> None:
    """Delete one of your endpoints."""
    _call("DELETE", f"/deployment/{uri}")


def grant(model_id: str, user: str | None = None, *, group: str | None = None) -> None:
    """Let ``user`` (``"PUBLIC"``: everyone), or the members of ``group``, see and
    score your model ``model_id``."""
    change_grant("grant", model_id, user, group)


def revoke(model_id: str, user: str | None = None, *, group: str | None = None) -> None:
    """Take back what ``grant`` gave ``user`` or ``group`` (NotFound if it had not)."""
    change_grant("revoke", model_id, user, group)


def grants(model_id: str) -> dict[str, list[str]]:
    """Whom your model is granted to: ``{"users": [...], "groups": [...]}``."""
    return list_grants(model_id)


def change_grant(action: str, model_id: str, user: str | None, group: str | None,
                 connection: Connection | None = None) -> Any:
    """``grant`` or ``revoke`` one user or group (shared with ``epe model grant``)."""
    if (user is None) == (group is None):
        raise ValueError("name a user (PUBLIC: everyone) or a group, and not both")
    kind, name = ("user", user) if user is not None else ("group", group)
    root = f"/models/{segment(model_id)}/grants"
    if action == "revoke":
        return _call("DELETE", f"{root}/{kind}/{segment(name or '')}", connection)
    public = kind == "user" and (name or "").strip().upper() == "PUBLIC"
    return _call("POST", root, connection, json={kind: None if public else name})


def list_grants(model_id: str, connection: Connection | None = None) -> dict[str, list[str]]:
    found = _call("GET", f"/models/{segment(model_id)}/grants", connection)["result"]
    return {"users": list(found["users"]), "groups": list(found["groups"])}


@dataclass(frozen=True)
class ScoringJob:
    """A batch scoring job on a schedule."""

    id: str

    def info(self) -> dict[str, Any]:
        """The job, with its runs (the newest first)."""
        found: dict[str, Any] = _call("GET", f"/jobs/{self.id}")
        return found

    def runs(self) -> pd.DataFrame:
        """Its runs, the newest first."""
        return pd.DataFrame(self.info()["runs"])

    def enable(self) -> None:
        """Run it again from its next slot after now."""
        _call("POST", f"/jobs/{self.id}/action", json={"action": "ENABLE"})

    def disable(self) -> None:
        """Stop running it on its schedule."""
        _call("POST", f"/jobs/{self.id}/action", json={"action": "DISABLE"})

    def run_now(self) -> int:
        """Run it once now; the run's id."""
        return int(_call("POST", f"/jobs/{self.id}/action", json={"action": "RUN"})["runId"])

    def drop(self) -> None:
        """Delete it and its runs' history."""
        _call("DELETE", f"/jobs/{self.id}")


def schedule(name: str, model_id: str, input: str, output: str, repeat: str = "FREQ=DAILY",
             start: dt.datetime | str | None = None, end: dt.datetime | str | None = None,
             max_runs: int | None = None, keep: list[str] | None = None) -> ScoringJob:
    """Score table ``input`` into table ``output`` with a model on a schedule: from
    ``start`` (now by default) on the repeat rule ``repeat`` (``FREQ=DAILY``,
    ``FREQ=HOURLY;INTERVAL=2``...), until ``end`` or ``max_runs`` runs, keeping the
    columns ``keep`` of the input beside the predictions."""
    when: dict[str, Any] = {"jobStartDate": _instant(start or dt.datetime.now(dt.UTC)),
                            "repeatInterval": repeat}
    if end is not None:
        when["jobEndDate"] = _instant(end)
    if max_runs is not None:
        when["maxRuns"] = max_runs
    answer = _call("POST", "/jobs", json={
        "jobName": name, "jobType": "MODEL_SCORING", "jobSchedule": when,
        "jobProperties": {"modelId": model_id, "inputData": input, "outputData": output,
                          "supplementalColumnNames": keep or []}})
    return ScoringJob(str(answer["jobId"]))


def jobs() -> list[dict[str, Any]]:
    """Your batch scoring jobs."""
    items: list[dict[str, Any]] = _call("GET", "/jobs")["items"]
    return items


def _instant(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value
    moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds")
