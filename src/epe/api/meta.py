"""API version metadata, liveness (``/health``) and readiness (``/health/ready``)
(docs/operations.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.errors import error_response
from epe.api.responses import json_response
from epe.core.operations import API_ROOT, OPERATIONS, V1_RETIRED
from epe.errors import NotFound, NotReady
from epe.service.health import all_ready, readiness

router = APIRouter(tags=["meta"])

VERSIONS = {
    "v1": {"isLatest": False, "lifecycle": f"DEPRECATED@{V1_RETIRED.isoformat()}"},
    "v2": {"isLatest": True, "lifecycle": "ACTIVE"},
}


def child_paths() -> list[str]:
    """The paths a version lists: its operations' are read when asked, so that those a
    plugin registers are there too."""
    return ["scripts", "envs", "jobs/{jobId}", "jobs/{jobId}/result",
            *(f"{op.path}/{{scriptName}}{owner}" for op in OPERATIONS.values()
              for owner in ("", "/{ownerName}"))]


def version_info(request: Request, version: str, children: bool) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + f"{API_ROOT}/{version}"
    links = [{"rel": "self", "href": base}]
    if children:
        links += [{"rel": "child", "href": f"{base}/{c}"} for c in child_paths()]
    return {"version": version, **VERSIONS[version], "links": links}


@router.get(API_ROOT)
def versions(request: Request, _caller: CallerDep) -> Response:
    base = str(request.base_url).rstrip("/") + API_ROOT
    return json_response({"items": [version_info(request, v, False) for v in VERSIONS],
                          "links": [{"rel": "self", "href": base}]})


@router.get(API_ROOT + "/{version}")
def version(version: str, request: Request, _caller: CallerDep) -> Response:
    if version not in VERSIONS:
        raise NotFound(f"no API version {version}")
    return json_response(version_info(request, version, True))


@router.get("/health")
async def health(services: ServicesDep) -> Response:
    """Liveness, whether users' workers are isolated from each other, and how they are
    limited."""
    return json_response({"status": "ok", "tenantIsolation": services.isolated,
                          "resourceLimits": services.resource_limits})


@router.get("/health/ready")
async def ready(services: ServicesDep) -> Response:
    """Readiness: the store, the data layer and the executor can serve; 503 if one cannot,
    or once the server is stopping (a load balancer sends it nothing more)."""
    if services.drain.draining:
        return error_response(NotReady("not ready: the server is stopping (draining)",
                                       status="draining"))
    parts = await readiness(services)
    if all_ready(parts):
        return json_response({"status": "ready", "parts": parts})
    down = ", ".join(name for name, part in parts.items() if part["state"] != "ok")
    return error_response(NotReady(f"not ready: {down} cannot serve", status="unready",
                                   parts=parts))
