"""The OpenAPI document served at ``/openapi.json`` (and drawn at ``/docs``), made precise.

FastAPI derives it from the routes and the request models. What the routes do not
say is added here, from the same regular expressions and settings the server checks
with, so that the document cannot drift from the behaviour: the shape of names in
paths, the table upload's media types, the error body (docs/errors.md) in place of
FastAPI's 422 (which this server never answers), the bearer token, the answers a
route gives besides its default (201 for an async run, 202/302 for a job's status),
and examples a reader (or a fuzzer) can start from. Nothing here changes what a
request gets; docs/api.md is the prose for the same API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI

from epe.api.deps import TOKEN_FREE
from epe.core.names import ENV_NAME, GROUP_NAME, TABLE_NAME, USER_NAME
from epe.core.names import OBJECT_NAME as DATASTORE_NAME
from epe.core.names import OBJECT_NAME as SCRIPT_NAME
from epe.core.operations import OPERATIONS

Schema = dict[str, Any]

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: Schema = {
    "type": "object", "title": "Error",
    "description": "Every error (docs/errors.md): errorCode and errorMessage always, the "
                   "rest when they have a value.",
    "required": ["errorCode", "errorMessage"],
    "properties": {
        "errorCode": {"type": "integer"}, "errorMessage": {"type": "string"},
        "traceback": {"type": "string"}, "stdout": {"type": "string"},
        "chunk": {"type": "integer"}, "group": {"type": "string"}, "index": {"type": "integer"},
    },
}
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
          "description": "A token from POST /omlusers/api/oauth2/v1/token."}

# What a name in a path may look like, by resource: the server's own checks.
NAMES = {"scripts": SCRIPT_NAME, "datastores": DATASTORE_NAME, "tables": TABLE_NAME,
         "envs": ENV_NAME, "users": USER_NAME}
PARAMETERS = {"scriptName": SCRIPT_NAME, "ownerName": USER_NAME, "owner": USER_NAME,
              "user": USER_NAME, "group": GROUP_NAME, "token_id": re.compile(r"[0-9a-f]{32}")}
JOB_ID = re.compile(r"[0-9a-f]{32}")
# ... and in request bodies, by (model, property).
BODY_NAMES = {("ScriptCreate", "name"): SCRIPT_NAME, ("UserCreate", "username"): USER_NAME,
              ("GrantRequest", "user"): USER_NAME, ("EnvCreate", "name"): ENV_NAME}

EXAMPLES = {
    "parameters": ['{"num": 10, "scale": 100}', '{"oml_input_type": "pandas.DataFrame"}'],
    "input": ["SELECT * FROM IRIS"],
    "groupBy": ["SPECIES"],
    "orderBy": ["SEPAL_LENGTH"],
    "script": ["def f(*args, **kwargs):\n    return 1\n"],
    "name": ["scaled_stats"],
    "overwrite": [True],
}
TABLE_BODY: Schema = {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "A,B\n1,x\n2,y\n"},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {
        "type": "array", "description": "records: one object per row, keyed by column",
        "items": {"type": "object", "additionalProperties": {
            "type": ["string", "number", "integer", "boolean", "null"]}}},
        "example": [{"A": 1, "B": "x"}, {"A": 2, "B": "y"}]},
}}
LOCATION = {"Location": {"description": "the job's absolute URL",
                         "schema": {"type": "string", "format": "uri"}}}


def install(app: FastAPI, max_timeout: int) -> None:
    """Serve the refined document in place of FastAPI's own."""
    generate = app.openapi
    refined: list[Schema] = []

    def openapi() -> Schema:
        schema = generate()  # FastAPI's, cached until the routes change
        if not refined or refined[0] is not schema:
            refine(schema, max_timeout)
            refined[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def refine(schema: Schema, max_timeout: int) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = BEARER
    models = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        models.pop(unused, None)
    models["Error"] = ERROR_SCHEMA
    _refine_models(models, max_timeout)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _refine_operation(path, method, operation)


def _refine_models(models: Schema, max_timeout: int) -> None:
    for (title, name), pattern in BODY_NAMES.items():
        prop = models.get(title, {}).get("properties", {}).get(name)
        if prop is not None:
            _each_of_type(prop, "string", partial(_set, pattern=f"^{pattern.pattern}$"))
    for model in models.values():
        properties = model.get("properties", {})
        for name, examples in EXAMPLES.items():
            if name in properties:
                properties[name]["examples"] = examples
        if "timeout" in properties:
            _each_of_type(properties["timeout"], "integer", partial(_set, maximum=max_timeout))
        if "parameters" in properties:
            properties["parameters"]["description"] = (
                "a JSON object encoded as a string: its keys become the function's "
                "keyword arguments, except the oml_* controls")
        if "pickledParameters" in properties:
            properties["pickledParameters"]["contentEncoding"] = "base64"


def _set(schema: Schema, **values: Any) -> None:
    schema.update(values)


def _each_of_type(prop: Schema, kind: str, change: Callable[[Schema], None]) -> None:
    for option in [prop, *prop.get("anyOf", [])]:
        if option.get("type") == kind:
            change(option)


def _refine_operation(path: str, method: str, operation: Schema) -> None:
    secured = path not in TOKEN_FREE
    if secured:
        operation["security"] = [{"bearer": []}]
    elif path.endswith("/token"):
        operation["security"] = [{}, {"bearer": []}]  # a refresh may send it as the bearer
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path":
            _describe_path_parameter(path, parameter)
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    _error(responses, "400", "invalid request: a body or parameter the server refuses")
    if secured:
        _error(responses, "401", "no valid bearer token")
    _error(responses, "default", "any other error (docs/errors.md)")
    _success_responses(path, method, operation, responses)


def _describe_path_parameter(path: str, parameter: Schema) -> None:
    name = parameter["name"]
    target = parameter.setdefault("schema", {})
    if name == "version":
        target["enum"] = ["v1", "v2"]
        return
    if name == "jobId":
        pattern = JOB_ID
    elif name in PARAMETERS:
        pattern = PARAMETERS[name]
    else:
        resource = next((r for r in NAMES if f"/{r}/{{{name}}}" in path), None)
        if resource is None:
            return
        pattern = NAMES[resource]
    target["pattern"] = f"^{pattern.pattern}$"


def _error(responses: Schema, status: str, description: str) -> None:
    responses.setdefault(status, {"description": description,
                                  "content": {"application/json": {"schema": ERROR_REF}}})


def _success_responses(path: str, method: str, operation: Schema, responses: Schema) -> None:
    if method == "post" and set(path.split("/")) & {op.path for op in OPERATIONS.values()}:
        responses["201"] = {"description": "with asyncFlag: the job was submitted",
                            "headers": LOCATION}
    elif method == "post" and path.endswith("/envs"):
        responses["201"] = {"description": "the build was submitted as a job",
                            "headers": LOCATION}
    elif method == "put" and "/tables/" in path:
        operation["requestBody"] = TABLE_BODY
    elif method == "get" and path.endswith("/jobs/{jobId}"):
        responses.pop("200", None)
        responses["202"] = {"description": "the job is waiting or running",
                            "content": {"application/json": {"schema": {"type": "object"}}}}
        responses["302"] = {"description": "the job has ended: its result is at "
                                           "Content-Location", "headers": {
            "Content-Location": {"schema": {"type": "string", "format": "uri"}}}}
