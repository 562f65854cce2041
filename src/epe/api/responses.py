"""JSON responses written with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from epe.core.results import wrap_result


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(value), status_code=status, headers=headers,
                    media_type="application/json")


def result_response(payload: bytes, status: int = 200) -> Response:
    """``{"result": R}`` around JSON the worker already encoded, without re-parsing it."""
    return Response(wrap_result(payload), status_code=status, media_type="application/json")
