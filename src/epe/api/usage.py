"""``GET /omlusers/api/v1/usage``: what runs used, the caller's own or, for admins,
anyone's (docs/operations.md#usage)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import CallerDep, ServicesDep
from epe.api.responses import json_response
from epe.service import usage

router = APIRouter(prefix="/omlusers/api/v1/usage", tags=["operations"])


@router.get("")
async def find(caller: CallerDep, services: ServicesDep, user: str | None = None,
               since: str | None = None, until: str | None = None, by: str = "run",
               limit: int = 1000) -> Response:
    """Runs (``by=run``, newest first), or their counts and sums per user and day (UTC)
    or per user and script; ``since`` and ``until`` (UNIX seconds or ISO-8601; ``until``
    excluded) narrow them by when the runs started."""
    wanted = usage.query(caller.name, caller.user.is_admin, user, since, until, by, limit)
    rows, more = await asyncio.to_thread(services.usage.find, wanted)
    return json_response({"items": [usage.shown(r, wanted.by) for r in rows],
                          "hasMore": more})
