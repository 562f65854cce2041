"""API version metadata and health (docs/api.md#version-metadata-and-health)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from epe.api.deps import CallerDep
from epe.api.responses import json_response
from epe.errors import NotFound

router = APIRouter(tags=["meta"])

ROOT = "/oml/api/py-scripts"
VERSIONS = {
    "v1": {"isLatest": False, "lifecycle": "DEPRECATED@2026-03-31"},
    "v2": {"isLatest": True, "lifecycle": "ACTIVE"},
}
CHILDREN = ("scripts", "envs", "jobs/{jobId}", "jobs/{jobId}/result",
            *(f"{op}/{{scriptName}}{owner}" for op in
              ("do-eval", "table-apply", "row-apply", "group-apply", "index-apply")
              for owner in ("", "/{ownerName}")))


def version_info(request: Request, version: str, children: bool) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + f"{ROOT}/{version}"
    links = [{"rel": "self", "href": base}]
    if children:
        links += [{"rel": "child", "href": f"{base}/{c}"} for c in CHILDREN]
    return {"version": version, **VERSIONS[version], "links": links}


@router.get(ROOT)
def versions(request: Request, _caller: CallerDep) -> Response:
    base = str(request.base_url).rstrip("/") + ROOT
    return json_response({"items": [version_info(request, v, False) for v in VERSIONS],
                          "links": [{"rel": "self", "href": base}]})


@router.get(ROOT + "/{version}")
def version(version: str, request: Request, _caller: CallerDep) -> Response:
    if version not in VERSIONS:
        raise NotFound(f"no API version {version}")
    return json_response(version_info(request, version, True))


@router.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})
