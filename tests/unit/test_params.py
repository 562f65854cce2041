"""epe.core.params: the ``parameters`` string split into kwargs and oml_* controls."""

from __future__ import annotations

import re

import pytest

from epe.core.params import Controls, parse_parameters
from epe.errors import InvalidRequest


def one(key: str, raw_value: str) -> str:
    """``parameters`` text holding one key whose value is the JSON ``raw_value``."""
    return "{" + f'"{key}": {raw_value}' + "}"


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_parameters_means_no_kwargs_and_default_controls(text: str | None) -> None:
    assert parse_parameters(text) == ({}, Controls())


def test_plain_keys_become_kwargs_with_their_json_types() -> None:
    kwargs, controls = parse_parameters(
        '{"num": 10, "scale": 1.5, "name": "x", "on": true, "xs": [1, 2], "m": {"a": null}}')
    assert kwargs == {"num": 10, "scale": 1.5, "name": "x", "on": True, "xs": [1, 2],
                      "m": {"a": None}}
    assert controls == Controls()


def test_every_oml_key_is_a_control_never_a_kwarg() -> None:
    kwargs, controls = parse_parameters(
        '{"n": 1, "oml_input_type": "pandas.DataFrame", "oml_na_omit": true,'
        ' "oml_graphics_flag": true, "oml_parallel_flag": false,'
        ' "oml_service_level": "MEDIUM", "oml_async_flag": true, "oml_unknown_thing": 3}')
    assert kwargs == {"n": 1}
    assert controls == Controls(input_type="pandas.DataFrame", na_omit=True, graphics=True,
                                parallel=False, service="MEDIUM", async_=True)


def test_controls_left_out_are_none_so_the_body_flags_decide() -> None:
    _, controls = parse_parameters('{"oml_input_type": "numpy.recarray"}')
    assert controls.input_type == "numpy.recarray"
    assert controls.na_omit is False
    assert (controls.graphics, controls.parallel, controls.service, controls.async_) == (
        None, None, None, None)


def test_service_level_is_case_insensitive_and_shown_upper_case() -> None:
    assert parse_parameters('{"oml_service_level": "high"}')[1].service == "HIGH"


@pytest.mark.parametrize("text", ["{num: 10}", "{\"a\": 1", "not json", "{'a': 1}"])
def test_bad_json_is_an_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest, match="'parameters' is not valid JSON") as info:
        parse_parameters(text)
    assert (info.value.status, info.value.code) == (400, 1001)


@pytest.mark.parametrize("text", ["[1, 2]", "10", '"a string"', "null", "true"])
def test_json_that_is_not_an_object_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="must encode a JSON object"):
        parse_parameters(text)


@pytest.mark.parametrize("value", ['"list"', '"DataFrame"', '"pandas.dataframe"', "1", "null"])
def test_unknown_input_type_is_refused_naming_the_choices(value: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(
            "oml_input_type must be one of pandas.DataFrame, numpy.recarray, default")):
        parse_parameters(one("oml_input_type", value))


@pytest.mark.parametrize("key", ["oml_na_omit", "oml_graphics_flag", "oml_parallel_flag",
                                 "oml_async_flag"])
@pytest.mark.parametrize("value", ['"true"', "1", "0", '"yes"', "[]"])
def test_flags_must_be_json_booleans(key: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=f"{key} must be true or false"):
        parse_parameters(one(key, value))


@pytest.mark.parametrize("key", ["oml_na_omit", "oml_graphics_flag", "oml_parallel_flag",
                                 "oml_async_flag"])
def test_null_flag_is_the_same_as_an_absent_one(key: str) -> None:
    assert parse_parameters(one(key, "null")) == ({}, Controls())


@pytest.mark.parametrize("value", ['"FAST"', '""', "3", "true"])
def test_unknown_service_level_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="oml_service_level must be one of LOW, MEDIUM, HIGH"):
        parse_parameters(one("oml_service_level", value))
