"""epe.core.requests: the run bodies of docs/api.md#run-requests, strict about types."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from epe.core.requests import (
    SERVICE_LEVELS,
    DoEvalRequest,
    GrantRequest,
    GroupApplyRequest,
    IndexApplyRequest,
    RowApplyRequest,
    ScriptCreate,
    TableApplyRequest,
    TokenRequest,
)
from epe.settings import Settings


def problems(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, pydantic error type) for each problem ``body`` has."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return [(".".join(str(p) for p in e["loc"]), e["type"]) for e in info.value.errors()]


def test_defaults_of_a_bare_do_eval() -> None:
    body = DoEvalRequest.model_validate({})
    assert body.parameters is None
    assert (body.graphics_flag, body.async_flag) == (False, False)
    assert (body.timeout, body.service, body.env_name) == (None, "LOW", None)
    assert (body.script, body.pickled_parameters, body.result_format) == (None, None, "json")


def test_camel_case_keys_fill_the_fields() -> None:
    body = IndexApplyRequest.model_validate({
        "times": 3, "parameters": '{"n": 1}', "graphicsFlag": True, "asyncFlag": True,
        "timeout": 60, "service": "HIGH", "envName": "sklearn", "parallelFlag": True,
        "parallel": 4})
    assert (body.times, body.parameters, body.graphics_flag, body.async_flag) == (
        3, '{"n": 1}', True, True)
    assert (body.timeout, body.service, body.env_name) == (60, "HIGH", "sklearn")
    assert (body.parallel_flag, body.parallel) == (True, 4)


def test_snake_case_names_are_not_aliases_and_are_ignored() -> None:
    body = DoEvalRequest.model_validate({"graphics_flag": True, "async_flag": True})
    assert (body.graphics_flag, body.async_flag) == (False, False)


def test_unknown_keys_are_ignored_as_oml_examples_send_them() -> None:
    # OML's own do-eval examples send "parameter" and "parallelFlag".
    body = DoEvalRequest.model_validate({"parameter": "x", "parallelFlag": True, "other": [1]})
    assert body == DoEvalRequest.model_validate({})


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, "yes"])
@pytest.mark.parametrize("key", ["graphicsFlag", "asyncFlag"])
def test_flags_are_strict_booleans(key: str, value: Any) -> None:
    assert problems(DoEvalRequest, {key: value}) == [(key, "bool_type")]


def test_parallel_flag_is_a_strict_boolean() -> None:
    assert problems(IndexApplyRequest, {"times": 1, "parallelFlag": "true"}) == [
        ("parallelFlag", "bool_type")]


def test_parameters_must_be_a_string_not_an_object() -> None:
    assert problems(DoEvalRequest, {"parameters": {"num": 10}}) == [("parameters", "string_type")]


@pytest.mark.parametrize("value", ["60", 60.0, True])
def test_timeout_is_a_strict_integer(value: Any) -> None:
    assert problems(DoEvalRequest, {"timeout": value}) == [("timeout", "int_type")]


@pytest.mark.parametrize("value", [0, -5])
def test_timeout_is_positive(value: int) -> None:
    assert problems(DoEvalRequest, {"timeout": value}) == [("timeout", "greater_than")]


@pytest.mark.parametrize("value", ["low", "URGENT", "", 1])
def test_service_is_one_of_the_three_levels(value: Any) -> None:
    assert problems(DoEvalRequest, {"service": value}) == [("service", "literal_error")]


def test_env_name_may_not_be_empty() -> None:
    assert problems(DoEvalRequest, {"envName": ""}) == [("envName", "string_too_short")]


def test_result_format_is_json_or_pickle() -> None:
    assert DoEvalRequest.model_validate({"resultFormat": "pickle"}).result_format == "pickle"
    assert problems(DoEvalRequest, {"resultFormat": "xml"}) == [("resultFormat", "literal_error")]


def test_table_apply_needs_a_non_empty_input_query() -> None:
    assert problems(TableApplyRequest, {}) == [("input", "missing")]
    assert problems(TableApplyRequest, {"input": ""}) == [("input", "string_too_short")]
    assert TableApplyRequest.model_validate({"input": "select * from IRIS"}).input == (
        "select * from IRIS")


def test_row_apply_needs_input_and_positive_rows() -> None:
    assert sorted(problems(RowApplyRequest, {})) == [("input", "missing"), ("rows", "missing")]
    for bad, kind in ((0, "greater_than"), (-1, "greater_than"), ("10", "int_type"),
                      (True, "int_type"), (2.0, "int_type")):
        assert problems(RowApplyRequest, {"input": "q", "rows": bad}) == [("rows", kind)]
    assert RowApplyRequest.model_validate({"input": "q", "rows": 1}).rows == 1


def test_index_apply_needs_positive_times() -> None:
    assert problems(IndexApplyRequest, {}) == [("times", "missing")]
    assert problems(IndexApplyRequest, {"times": 0}) == [("times", "greater_than")]
    assert problems(IndexApplyRequest, {"times": "3"}) == [("times", "int_type")]


def test_parallel_degree_is_positive() -> None:
    assert problems(IndexApplyRequest, {"times": 2, "parallel": 0}) == [
        ("parallel", "greater_than")]


def test_group_apply_needs_group_by_and_takes_order_by() -> None:
    assert problems(GroupApplyRequest, {"input": "q"}) == [("groupBy", "missing")]
    assert problems(GroupApplyRequest, {"input": "q", "groupBy": ""}) == [
        ("groupBy", "string_too_short")]
    body = GroupApplyRequest.model_validate({"input": "q", "groupBy": "SPECIES",
                                             "orderBy": "SEPAL_LENGTH"})
    assert (body.group_by, body.order_by) == ("SPECIES", "SEPAL_LENGTH")


def test_script_create_is_strict_too() -> None:
    body = ScriptCreate.model_validate({"name": "f", "script": "def f(): pass"})
    assert (body.description, body.is_global, body.overwrite) == ("", False, False)
    assert problems(ScriptCreate, {"name": "f", "script": "x", "isGlobal": "true"}) == [
        ("isGlobal", "bool_type")]
    assert problems(ScriptCreate, {"name": "n" * 129, "script": "x"}) == [
        ("name", "string_too_long")]


def test_grant_needs_a_user_key_whose_null_means_everyone() -> None:
    assert GrantRequest.model_validate({"user": None}).user is None
    assert GrantRequest.model_validate({"user": "BOB"}).user == "BOB"
    assert problems(GrantRequest, {}) == [("", "value_error")]
    assert GrantRequest.model_validate({"group": "data-science"}).group == "data-science"
    assert problems(GrantRequest, {"user": "BOB", "group": "G"}) == [("", "value_error")]


def test_token_request_grant_types() -> None:
    assert problems(TokenRequest, {"grant_type": "client_credentials"}) == [
        ("grant_type", "literal_error")]
    # dbt-oracle sends the refresh token under "token".
    body = TokenRequest.model_validate({"grant_type": "refresh_token", "token": "T"})
    assert (body.refresh_token, body.token) == (None, "T")


def test_index_apply_times_is_bounded() -> None:
    # Every invocation is planned in the server's memory first: 10**11 of them once
    # took the whole server down.
    from epe.core.requests import MAX_TIMES

    assert IndexApplyRequest.model_validate({"times": MAX_TIMES}).times == MAX_TIMES
    for bad in (MAX_TIMES + 1, 10**11, 10**30):
        assert problems(IndexApplyRequest, {"times": bad}) == [("times", "less_than_equal")]


def test_every_service_level_has_its_settings() -> None:
    settings = Settings()
    assert SERVICE_LEVELS == ("LOW", "MEDIUM", "HIGH")
    assert [settings.parallel_cap(level) for level in SERVICE_LEVELS] == [2, 4, 8]
    assert [settings.job_concurrency(level) for level in SERVICE_LEVELS] == [2, 2, 1]
