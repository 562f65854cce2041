"""Readiness: whether the store, the data layer and the executor can serve now.

Each part is asked cheaply (a ``SELECT 1``, the tables folder and an in-memory
DuckDB, the executor's own count of live workers), never by running user code, so a
busy server is still ready. What went wrong is logged in full; the answer, which
anyone may ask for, says only which part and the error's kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from epe.errors import EpeError
from epe.service.services import Services

log = logging.getLogger("epe.health")

CHECK_TIMEOUT = 5.0  # seconds a part may take to answer before it counts as not ready


async def readiness(services: Services) -> dict[str, dict[str, Any]]:
    """Each part's state (``ok`` or ``unavailable``) and what else it reports."""
    store, data = await asyncio.gather(_probe("store", services.store.check),
                                       _probe("data", services.catalog.check))
    status = services.environments.pools.status()
    executor = {"state": "ok" if status.ready else "unavailable", **status.detail}
    return {"store": store, "data": data, "executor": executor}


def all_ready(parts: dict[str, dict[str, Any]]) -> bool:
    return all(p["state"] == "ok" for p in parts.values())


async def _probe(part: str, check: Callable[[], None]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT)
    except TimeoutError:
        log.warning("readiness: the %s did not answer within %g s", part, CHECK_TIMEOUT)
        return {"state": "unavailable", "error": f"no answer within {CHECK_TIMEOUT:g} s"}
    except EpeError as e:
        log.warning("readiness: the %s cannot serve: %s", part, e.message)
        return {"state": "unavailable", "error": e.message}
    except Exception as e:
        log.warning("readiness: the %s cannot serve", part, exc_info=e)
        return {"state": "unavailable", "error": type(e).__name__}
    return {"state": "ok"}
