"""``GET /omlusers/api/v1/audit``: the audit trail, for admins (docs/operations.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from epe.api.deps import AdminDep, ServicesDep
from epe.api.responses import json_response
from epe.core.names import iso_instant
from epe.service import audit
from epe.store.audit import AuditEntry

router = APIRouter(prefix="/omlusers/api/v1/audit", tags=["operations"])


def shown(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "time": iso_instant(entry.time), "kind": entry.kind,
            "action": entry.action, "user": entry.user, "status": entry.status,
            "errorCode": entry.error_code, "owner": entry.owner, "name": entry.name,
            "client": entry.client, "requestId": entry.request_id, "details": entry.details}


@router.get("")
async def find(_admin: AdminDep, services: ServicesDep, user: str | None = None,
               since: str | None = None, until: str | None = None, kind: str | None = None,
               limit: int = 100, offset: int = 0) -> Response:
    """Audit entries, oldest first, one page at a time: each filter given narrows them
    (``since`` and ``until``: UNIX seconds or ISO-8601; ``until`` excluded)."""
    wanted = audit.query(user=user, since=since, until=until, kind=kind, limit=limit,
                         offset=offset)
    entries, more = await asyncio.to_thread(services.audit.find, wanted)
    return json_response({"result": {"items": [shown(e) for e in entries],
                                     "offset": offset, "limit": limit, "hasMore": more}})
