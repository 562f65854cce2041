"""docs/errors.md lists every error; error bodies have one shape."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from epe import errors
from epe.api.errors import error_response

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
# | errorCode | HTTP status | `ClassName` | when |
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|", re.MULTILINE)
ALL = errors.all_errors()


def documented() -> set[tuple[int, int, str]]:
    return {(int(code), int(status), name) for code, status, name in ROW.findall(DOC.read_text())}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_has_its_row(cls: type[errors.EpeError]) -> None:
    assert (cls.code, cls.status, cls.__name__) in documented()


def test_every_row_is_a_real_error() -> None:
    real = {(c.code, c.status, c.__name__) for c in ALL}
    assert documented() - real == set()


def test_all_errors_are_every_subclass_base_first() -> None:
    assert ALL[0] is errors.EpeError
    public = {v for v in vars(errors).values()
              if isinstance(v, type) and issubclass(v, errors.EpeError)}
    assert set(ALL) == public
    assert len(ALL) == len(set(ALL))


@pytest.mark.parametrize("cls", [c for c in ALL if c is not errors.EpeError],
                         ids=lambda c: c.__name__)
def test_error_for_code_maps_each_code_back_to_its_class(cls: type[errors.EpeError]) -> None:
    assert errors.error_for_code(cls.code) is cls


def test_codes_are_unique_except_the_base_sharing_internal_errors() -> None:
    by_code: dict[int, list[str]] = {}
    for cls in ALL:
        by_code.setdefault(cls.code, []).append(cls.__name__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == {5000: ["EpeError", "InternalError"]}
    assert errors.error_for_code(5000) is errors.InternalError


def test_an_unknown_code_maps_to_the_base_class() -> None:
    assert errors.error_for_code(999_999) is errors.EpeError


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_status_matches_the_family(cls: type[errors.EpeError]) -> None:
    assert issubclass(cls, errors.BadRequest) == (cls.status == 400)
    assert 400 <= cls.status <= 599


def test_oml_output_limit_code_is_1024() -> None:
    assert (errors.OutputTooLarge.code, errors.OutputTooLarge.status) == (1024, 400)


# -- the body ---------------------------------------------------------------------

def test_body_is_code_and_message_only_by_default() -> None:
    body = errors.NotFound("no script named s that you may run").body()
    assert body == {"errorCode": 4004, "errorMessage": "no script named s that you may run"}
    assert type(body["errorCode"]) is int and type(body["errorMessage"]) is str


def test_extras_appear_only_when_set() -> None:
    failed = errors.ScriptFailed("ValueError: x", traceback="Traceback ...", stdout=None)
    assert failed.body() == {"errorCode": 1011, "errorMessage": "ValueError: x",
                             "traceback": "Traceback ..."}
    printed = errors.ScriptFailed("ValueError: x", traceback="Traceback ...", stdout="hi\n")
    assert printed.body() == {"errorCode": 1011, "errorMessage": "ValueError: x",
                              "traceback": "Traceback ...", "stdout": "hi\n"}


def test_extras_come_after_code_and_message() -> None:
    body = errors.ScriptFailed("m", stdout="out", traceback="tb").body()
    assert list(body)[:2] == ["errorCode", "errorMessage"]


def test_the_message_is_also_the_exception_text() -> None:
    error = errors.InvalidRequest("'rows' is required")
    assert str(error) == error.message == "'rows' is required"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_error_response_has_the_status_and_the_body(cls: type[errors.EpeError]) -> None:
    response = error_response(cls("the message"))
    assert response.status_code == cls.status
    assert response.media_type == "application/json"
    assert orjson.loads(bytes(response.body)) == {"errorCode": cls.code,
                                                 "errorMessage": "the message"}


def test_unauthorized_response_asks_for_a_bearer_token() -> None:
    response = error_response(errors.Unauthorized("the token has expired"))
    assert response.headers["www-authenticate"] == "Bearer"


def test_server_busy_response_says_when_to_retry_and_keeps_it_out_of_the_body() -> None:
    response = error_response(errors.ServerBusy("full", retry_after=7))
    assert response.headers["retry-after"] == "7"
    assert orjson.loads(bytes(response.body)) == {"errorCode": 5003, "errorMessage": "full"}
