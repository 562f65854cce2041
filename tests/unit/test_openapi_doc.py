"""The OpenAPI document (/openapi.json, /docs) says what the server checks: names in
paths have the server's own patterns, errors have the error body and never 422, the
table upload's media types are listed, and every route but the token-free ones
(``api.deps.TOKEN_FREE``) wants a bearer token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from epe.api.deps import TOKEN_FREE
from epe.app import create_app
from epe.core.names import check_object_name, normalize_user
from epe.data.names import check_table_name
from epe.errors import InvalidRequest
from epe.settings import Settings


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("data")), max_timeout=77)
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def path_pattern(document: dict[str, Any], path: str, method: str, name: str) -> str:
    parameters = document["paths"][path][method]["parameters"]
    return next(p["schema"]["pattern"] for p in parameters if p["name"] == name)


def test_no_operation_documents_422_and_every_one_documents_the_error_body(
        document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        for status in ("400", "default"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["errorCode", "errorMessage"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_route_but_the_token_free_ones_wants_a_bearer_token(
        document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"/health", "/health/ready"} <= set(TOKEN_FREE)
    for path, method, operation in operations(document):
        if path in TOKEN_FREE and not path.endswith("/token"):
            assert "security" not in operation
        elif path == "/omlusers/api/oauth2/v1/token":
            assert operation["security"] == [{}, {"bearer": []}]  # optional: a refresh
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"]


def test_every_path_parameter_has_a_pattern_or_values(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                schema = parameter["schema"]
                assert "pattern" in schema or "enum" in schema, (method, path, parameter)


@pytest.mark.parametrize(("path", "name", "check", "good", "bad"), [
    ("/oml/api/py-scripts/v2/scripts/{name}", "name",
     lambda name: check_object_name(name, "script"),
     ["a", "my.script-1$#", "x" * 128], ["", "a b", "a/b", "x" * 129]),
    ("/oml/api/py-scripts/v2/tables/{name}", "name", check_table_name,
     ["IRIS", "_t1"], ["1abc", "a-b", ""]),
    ("/oml/api/py-scripts/v2/do-eval/{scriptName}/{ownerName}", "ownerName",
     normalize_user, ["OMLUSER", "a$#_1"], ["1A", "a-b", ""]),
])
def test_path_patterns_agree_with_the_servers_checks(
        document: dict[str, Any], path: str, name: str, check: Any,
        good: list[str], bad: list[str]) -> None:
    method = next(iter(document["paths"][path]))
    pattern = re.compile(path_pattern(document, path, method, name))
    for value in good:
        check(value)
        assert pattern.search(value), value
    for value in bad:
        with pytest.raises(InvalidRequest):
            check(value)
        assert not pattern.search(value), value


def test_the_table_upload_lists_its_media_types(document: dict[str, Any]) -> None:
    body = document["paths"]["/oml/api/py-scripts/v2/tables/{name}"]["put"]["requestBody"]
    assert set(body["content"]) == {"text/csv", "application/vnd.apache.parquet",
                                    "application/json"}


def test_run_bodies_carry_the_servers_limits_and_async_answers(
        document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    timeout = schemas["DoEvalRequest"]["properties"]["timeout"]["anyOf"][0]
    assert timeout["maximum"] == 77  # this server's EPE_MAX_TIMEOUT
    assert schemas["IndexApplyRequest"]["properties"]["times"]["maximum"] == 1_000_000
    run = document["paths"]["/oml/api/py-scripts/v1/group-apply/{scriptName}"]["post"]
    assert "Location" in run["responses"]["201"]["headers"]
    status = document["paths"]["/oml/api/py-scripts/v2/jobs/{jobId}"]["get"]["responses"]
    assert {"202", "302"} <= set(status) and "200" not in status
