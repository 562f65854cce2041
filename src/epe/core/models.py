"""Models as scoring endpoints, the pure part (docs/models.md): names, a model's input
columns, the records a score call sends checked against them, the answer's shapes,
and the OpenAPI document of one endpoint.

The server checks records here, against the columns a worker read from the model
when it was stored; the worker shapes its predictions with the functions at the
bottom, so both ends agree on Oracle's shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from epe.errors import InvalidRequest

ModelType = Literal["ONNX", "PYTHON"]
Function = Literal["regression", "classification", "clustering"]
MODEL_TYPES: tuple[ModelType, ...] = ("ONNX", "PYTHON")
FUNCTIONS: tuple[Function, ...] = ("regression", "classification", "clustering")
ColumnType = Literal["number", "integer", "string", "boolean"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("number", "integer", "string", "boolean")

# Oracle's modelId is a UUID; an endpoint's URI is one path segment of its own.
MODEL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URI = re.compile(r"[A-Za-z0-9_-]{1,128}")
SCORING_JOB_ID = re.compile(r"[0-9a-f]{32}")
# What an upload's text fields may hold: names shown in listings and used in filters.
MODEL_NAME = re.compile(r"[A-Za-z0-9_.$#-]{1,256}")
VERSION = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
NAMESPACE = re.compile(r"[A-Za-z0-9_.$#-]{0,128}")
MAX_DESCRIPTION = 4000  # characters (Oracle's limit)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "number"

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


def check_uri(uri: str) -> str:
    if not URI.fullmatch(uri):
        raise InvalidRequest(f"invalid uri {uri!r}: use letters, digits, _ and - (at most 128)")
    return uri


def check_text(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidRequest(f"invalid {what} {value!r}: it must match {pattern.pattern}")
    return value


def parse_columns(value: Any, where: str) -> list[Column]:
    """Input columns as given: a list of names (numbers), a list of ``{"name", "type"}``,
    or an object of name -> type; ``where`` names what gave them, for the message."""
    if isinstance(value, Mapping):
        value = [{"name": k, "type": v} for k, v in value.items()]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{where} must be a non-empty list of column names, or an "
                             "object of column name -> type")
    columns = [_column(item, where) for item in value]
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"{where} names a column twice")
    return columns


def _column(item: Any, where: str) -> Column:
    if isinstance(item, str) and item:
        return Column(item)
    if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]:
        kind = item.get("type", "number")
        if kind not in COLUMN_TYPES:
            raise InvalidRequest(f"{where}: column {item['name']} has type {kind!r}; use one "
                                 f"of {', '.join(COLUMN_TYPES)}")
        return Column(item["name"], kind)
    raise InvalidRequest(f"{where}: {item!r} is not a column name")


# -- records a score call sends ----------------------------------------------------------

def _fits(value: Any, kind: ColumnType) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float) and math.isfinite(value)


def check_records(records: Any, columns: Sequence[Column], limit: int) -> list[list[Any]]:
    """The records as rows in the columns' order; a 400 naming the record and column
    for a missing or extra column or a value of the wrong type."""
    if not isinstance(records, list) or not records:
        raise InvalidRequest("inputRecords must be a non-empty list of records")
    if len(records) > limit:
        raise InvalidRequest(f"{len(records)} records is over this server's limit of {limit} "
                             "per call (EPE_SCORE_MAX_RECORDS); send them in smaller calls, or "
                             "score a table with a batch scoring job")
    names = [c.name for c in columns]
    expected = set(names)
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidRequest(f"inputRecords[{i}] is not an object of column -> value")
        if len(record) != len(names) or record.keys() != expected:
            raise _columns_differ(i, record, names)
        rows.append([record[n] for n in names])
        for column, value in zip(columns, rows[-1], strict=True):
            if not _fits(value, column.type):
                raise InvalidRequest(f"inputRecords[{i}]: column {column.name} is "
                                     f"{_shown(value)}; the model needs a {column.type}",
                                     column=column.name, record=i)
    return rows


def _columns_differ(i: int, record: dict[str, Any], names: list[str]) -> InvalidRequest:
    missing = [n for n in names if n not in record]
    if missing:
        return InvalidRequest(f"inputRecords[{i}] lacks column {missing[0]}; the model takes "
                              f"{', '.join(names)}", column=missing[0], record=i)
    extra = next(k for k in record if k not in names)
    return InvalidRequest(f"inputRecords[{i}] has column {extra}, which the model does not "
                          f"take; it takes {', '.join(names)}", column=extra, record=i)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def check_top_n(top_n: Any) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InvalidRequest("topN must be a positive integer")
    return top_n


# -- the answer's shapes (Oracle's) ------------------------------------------------------

def regression_results(values: Any) -> list[dict[str, Any]]:
    return [{"regression": _number(v)} for v in np.asarray(values, dtype=np.float64).ravel()]


def ranked_results(key: str, id_key: str, labels: Sequence[Any], probabilities: Any,
                   top_n: int | None) -> list[dict[str, Any]]:
    """Per record, ``{key: [{id_key: label, "probability": p}, ...]}`` most probable
    first, the first ``top_n`` of them (all without it)."""
    matrix = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-matrix, axis=1, kind="stable")
    if top_n is not None:
        order = order[:, :top_n]
    plain = [_plain(label) for label in labels]
    return [{key: [{id_key: plain[j], "probability": _number(row[j])} for j in ranks]}
            for row, ranks in zip(matrix, order, strict=True)]


def classification_results(labels: Sequence[Any], probabilities: Any,
                           top_n: int | None) -> list[dict[str, Any]]:
    return ranked_results("classifications", "label", labels, probabilities, top_n)


def clustering_results(clusters: Sequence[Any], probabilities: Any,
                       top_n: int | None) -> list[dict[str, Any]]:
    return ranked_results("clusters", "clusterId", clusters, probabilities, top_n)


def from_distances(distances: Any) -> np.ndarray:
    """Cluster probabilities from distances to the clusters' centres: inversely
    proportional to the distance, summing to 1 (a record on a centre: 1 for it). The
    same whatever the distances' scale."""
    d = np.asarray(distances, dtype=np.float64)
    at_centre = d <= 0
    inverse = np.where(at_centre, 0.0, 1.0 / np.where(at_centre, 1.0, d))
    inverse[at_centre.any(axis=1)] = at_centre[at_centre.any(axis=1)]
    return inverse / inverse.sum(axis=1, keepdims=True)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# -- the endpoint's own OpenAPI document -------------------------------------------------

_JSON_TYPES = {"number": "number", "integer": "integer", "string": "string",
               "boolean": "boolean"}


def _ranked(item: str, id_key: str, id_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [item], "properties": {item: {
        "type": "array", "items": {"type": "object", "required": [id_key, "probability"],
                                   "properties": {id_key: id_schema,
                                                  "probability": {"type": "number"}}}}}}


def result_schema(function: str) -> dict[str, Any]:
    if function == "regression":
        return {"type": "object", "required": ["regression"],
                "properties": {"regression": {"type": "number", "nullable": True}}}
    if function == "clustering":
        return _ranked("clusters", "clusterId", {"type": "integer"})
    return _ranked("classifications", "label", {})


def endpoint_document(*, uri: str, model_name: str, version: str, function: str,
                      columns: Sequence[Column], description: str = "") -> dict[str, Any]:
    """An OpenAPI 3.0 document for one endpoint's score call: its input columns and
    their types, and the answer's shape for the model's function."""
    record = {"type": "object", "additionalProperties": False,
              "required": [c.name for c in columns],
              "properties": {c.name: {"type": _JSON_TYPES[c.type]} for c in columns}}
    body = {"type": "object", "required": ["inputRecords"], "properties": {
        "inputRecords": {"type": "array", "minItems": 1, "items": record},
        "topN": {"type": "integer", "minimum": 1,
                 "description": "How many of the most probable labels or clusters to return "
                                "per record (all by default)."}}}
    answer = {"type": "object", "required": ["scoringResults"], "properties": {
        "scoringResults": {"type": "array", "items": result_schema(function)}}}
    error = {"type": "object", "required": ["errorCode", "errorMessage"], "properties": {
        "errorCode": {"type": "integer"}, "errorMessage": {"type": "string"},
        "column": {"type": "string"}, "record": {"type": "integer"}}}
    example = {"inputRecords": [{c.name: _example(c.type) for c in columns}]}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{model_name} {version}", "version": version,
                 "description": description or f"Scores records with the {function} model "
                                               f"{model_name} deployed at {uri}."},
        "paths": {f"/omlmod/v1/deployment/{uri}/score": {"post": {
            "operationId": "score", "summary": f"Score records with {model_name}",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ScoreRequest"},
                "example": example}}},
            "responses": {
                "200": {"description": "One result per record, in the records' order.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/ScoreResponse"}}}},
                "400": {"description": "A record lacks a column, has one the model does not "
                                       "take, or a value of the wrong type.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "No valid bearer token.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
                "404": {"description": "No such endpoint that the caller may score.",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}}}}}},
        "components": {
            "schemas": {"ScoreRequest": body, "ScoreResponse": answer, "Error": error},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}}},
    }


def _example(kind: str) -> Any:
    return {"number": 1.0, "integer": 1, "string": "a", "boolean": True}[kind]
