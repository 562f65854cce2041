"""The Kubernetes manifests (deploy/kubernetes/, and those docs/deploy.md and
docs/scale-out.md show) against the schemas a cluster would hold them to: Kubernetes' own
(kubernetes-validate, which carries them, offline) and, for the RayCluster, KubeRay's CRD
(tests/release/kuberay/). Unknown fields are refused, as ``kubectl apply`` refuses them
(strict field validation). The manifests are not run on a cluster here."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from epe.settings import Settings
from tests.release.history import REPO

KUBERNETES = "1.30"  # the oldest Kubernetes the manifests are for (appArmorProfile: 1.30)
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
DOCS = [REPO / "docs" / "deploy.md", REPO / "docs" / "scale-out.md"]
RAYCLUSTER = Path(__file__).parent / "kuberay" / "raycluster-v1.json"
# Variables the image's command line reads (cli.py), beside the settings.
CLI_VARIABLES = {"EPE_DATA_DIR", "EPE_HOST", "EPE_PORT", "EPE_DEMO_PASSWORD"}


def documents() -> list[Any]:
    """Every resource: the files', and the YAML blocks with an apiVersion in the docs."""
    found = []
    for path in MANIFESTS:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            found.append(pytest.param(doc, id=f"{path.name}-{i}-{doc['kind']}"))
    for path in DOCS:
        blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)
        for i, block in enumerate(blocks):
            for j, doc in enumerate(yaml.safe_load_all(block)):
                if isinstance(doc, dict) and "apiVersion" in doc:
                    found.append(pytest.param(doc, id=f"{path.name}-{i}.{j}-{doc['kind']}"))
    return found


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def test_there_is_a_deployment_postgresql_and_a_raycluster() -> None:
    kinds = {(doc.values[0]["kind"], doc.values[0]["metadata"]["name"])
             for doc in documents() if doc.id.endswith(".yaml") or ".yaml-" in doc.id}
    assert {("Deployment", "epe"), ("StatefulSet", "epe-postgresql"),
            ("RayCluster", "epe")} <= kinds


@pytest.mark.parametrize("doc", documents())
def test_each_manifest_is_valid(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("ray.io/"):
        assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster"), doc["kind"]
        schema = strict(json.loads(RAYCLUSTER.read_text()))
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("doc", documents())
def test_what_epe_is_told_is_what_it_reads(doc: dict[str, Any]) -> None:
    """Every EPE_ variable set is one epe reads; epe's own probes are its health paths."""
    known = {f"EPE_{name.upper()}" for name in Settings.model_fields} | CLI_VARIABLES
    for container in containers(doc):
        for variable in container.get("env", []):
            if variable["name"].startswith("EPE_"):
                assert variable["name"] in known, variable["name"]
        if doc["kind"] == "Deployment" and container.get("args", [None])[0] == "serve":
            assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    templates = [spec.get("template"), spec.get("headGroupSpec", {}).get("template"),
                 *(group.get("template") for group in spec.get("workerGroupSpecs", []))]
    return [c for t in templates if t for c in t["spec"]["containers"]]


def test_an_unknown_field_is_refused() -> None:
    """The check itself: a misspelt field fails, in Kubernetes' schemas and in KubeRay's."""
    deployment = next(d.values[0] for d in documents() if d.values[0]["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES, strict=True)
    cluster = next(d.values[0] for d in documents() if d.values[0]["kind"] == "RayCluster")
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["replica"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, strict(json.loads(RAYCLUSTER.read_text())),
                            cls=jsonschema.Draft202012Validator)
