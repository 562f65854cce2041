"""Assembling the workers' JSON fragments into OML's result shapes (docs/api.md#results).

Each invocation comes back as one JSON fragment plus a flag saying whether it
was a DataFrame. The shapes are built by joining bytes: the server never parses
(or could be confused by) what user code returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from epe.errors import OutputTooLarge


@dataclass(frozen=True)
class Fragment:
    json: bytes
    is_frame: bool  # a DataFrame, encoded as records (or columns for group-apply)


def row_apply(parts: Sequence[Fragment]) -> bytes:
    """DataFrames concatenated into one list of records; otherwise one entry per chunk."""
    if parts and all(p.is_frame and p.json.startswith(b"[") for p in parts):
        inner = [p.json[1:-1] for p in parts if len(p.json) > 2]
        return b"[" + b",".join(inner) + b"]"
    return as_list(parts)


def as_list(parts: Sequence[Fragment]) -> bytes:
    return b"[" + b",".join(p.json for p in parts) + b"]"


def keyed(keys: Sequence[str], parts: Sequence[Fragment]) -> bytes:
    """An object keyed by group (or chunk, or invocation) label."""
    items = [orjson.dumps(k) + b":" + p.json for k, p in zip(keys, parts, strict=True)]
    return b"{" + b",".join(items) + b"}"


def check_size(payload: bytes, limit: int) -> bytes:
    if len(payload) > limit:
        raise OutputTooLarge(f"Output exceeds maximum length {limit} bytes (the result is "
                             f"{len(payload)} bytes)")
    return payload
