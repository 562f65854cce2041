"""The ``parameters`` string: keyword arguments plus ``oml_*`` control arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from epe.core.requests import SERVICE_LEVELS
from epe.errors import InvalidRequest

InputType = Literal["pandas.DataFrame", "numpy.recarray", "default"]
INPUT_TYPES: tuple[InputType, ...] = ("pandas.DataFrame", "numpy.recarray", "default")


@dataclass(frozen=True)
class Controls:
    """The ``oml_*`` control arguments; ``None`` where the request did not set one."""

    input_type: InputType = "default"
    na_omit: bool = False
    graphics: bool | None = None
    parallel: bool | None = None
    service: str | None = None
    async_: bool | None = None


def parse_parameters(text: str | None) -> tuple[dict[str, Any], Controls]:
    """Split ``parameters`` (a JSON object encoded as a string) into kwargs and controls."""
    if text is None or not text.strip():
        return {}, Controls()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"'parameters' is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("'parameters' must encode a JSON object, e.g. \"{\\\"n\\\": 10}\"")
    kwargs = {k: v for k, v in value.items() if not k.startswith("oml_")}
    return kwargs, _controls({k: v for k, v in value.items() if k.startswith("oml_")})


def _controls(raw: dict[str, Any]) -> Controls:
    input_type = raw.get("oml_input_type", "default")
    if input_type not in INPUT_TYPES:
        raise InvalidRequest(f"oml_input_type must be one of {', '.join(INPUT_TYPES)}; "
                             f"got {input_type!r}")
    service = raw.get("oml_service_level")
    if service is not None and (not isinstance(service, str)
                                or service.upper() not in SERVICE_LEVELS):
        raise InvalidRequest(f"oml_service_level must be one of {', '.join(SERVICE_LEVELS)}")
    return Controls(
        input_type=cast(InputType, input_type),
        na_omit=_flag(raw, "oml_na_omit") or False,
        graphics=_flag(raw, "oml_graphics_flag"),
        parallel=_flag(raw, "oml_parallel_flag"),
        service=service.upper() if service else None,
        async_=_flag(raw, "oml_async_flag"),
    )


def _flag(raw: dict[str, Any], key: str) -> bool | None:
    value = raw.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"{key} must be true or false; got {value!r}")
