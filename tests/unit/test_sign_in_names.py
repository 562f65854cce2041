"""Names from directories and providers, group names, and automation tokens' shape
(docs/sign-in.md)."""

from __future__ import annotations

import pytest

from epe.auth import apitokens
from epe.core.names import normalize_group, user_name_from
from epe.errors import InvalidRequest


def test_external_names_become_user_names_or_nothing() -> None:
    assert user_name_from("jane.doe") == "JANE_DOE"
    assert user_name_from(" Jane@Example.org ") == "JANE_EXAMPLE_ORG"
    assert user_name_from("o'brien-smith") == "O_BRIEN_SMITH"
    for refused in ("", "1234", "_x", "*", "PUBLIC", "pyqsys", "é" * 3):
        assert user_name_from(refused) is None, refused
    assert user_name_from("a" * 300) == "A" * 128


def test_group_names_are_upper_case_without_slashes_or_control_characters() -> None:
    assert normalize_group(" data-science ") == "DATA-SCIENCE"
    assert normalize_group("Équipe Données") == "ÉQUIPE DONNÉES"
    assert normalize_group("3f2b-49c1") == "3F2B-49C1"  # Entra ID's object ids
    for refused in ("", "a/b", "x\ny", "g" * 129, "public"):
        with pytest.raises(InvalidRequest):
            normalize_group(refused)


def test_automation_tokens_parse_only_in_their_own_shape() -> None:
    made = apitokens.new_token()
    assert apitokens.looks_like(made.token) and "." not in made.token
    parsed = apitokens.parse(made.token)
    assert parsed is not None and parsed[0] == made.id
    assert apitokens.matches(parsed[1], made.secret_hash)
    assert not apitokens.matches(parsed[1][:-1] + "x", made.secret_hash)
    assert parsed[1] not in made.secret_hash
    for bad in (made.token + "x", made.token.replace("epe_", "epf_"), "epe_", "epe_x_y",
                made.token[:-1]):
        assert apitokens.parse(bad) is None, bad
