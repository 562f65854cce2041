"""``GET /metrics``: Prometheus' text format, for admins only (docs/operations.md).

A scraper without an admin's token reads them from ``EPE_METRICS_ADDRESS`` instead,
a listener of its own that the app starts (``app.py``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep
from epe.observe.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics")
async def metrics(_admin: AdminDep) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
