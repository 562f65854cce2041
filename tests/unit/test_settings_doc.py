"""docs/settings.md documents every setting, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from epe.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
# Read by `epe demo` and the Python client, never by the server: documented apart.
NOT_SETTINGS = {"EPE_DEMO_PASSWORD", "EPE_URL", "EPE_USER", "EPE_PASSWORD"}
# A table row: | `EPE_NAME` | type | `default` ... | meaning |
ROW = re.compile(r"^\|\s*`(EPE_[A-Z0-9_]+)`\s*\|[^|]*\|\s*`([^`]*)`[^|]*\|", re.MULTILINE)


def env_name(field: str) -> str:
    return "EPE_" + field.upper()


def documented_defaults() -> dict[str, str]:
    return dict(ROW.findall(DOC.read_text()))


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in text]
    assert missing == []


def test_every_setting_has_a_row_in_the_table() -> None:
    rows = documented_defaults()
    assert sorted(env_name(f) for f in Settings.model_fields if env_name(f) not in rows) == []


def test_every_documented_variable_is_a_setting() -> None:
    named = set(re.findall(r"EPE_[A-Z0-9_]*[A-Z0-9]", DOC.read_text()))
    fields = {env_name(f) for f in Settings.model_fields}
    assert sorted(named - fields - NOT_SETTINGS) == []


def test_the_non_server_variables_are_not_settings() -> None:
    assert not NOT_SETTINGS & {env_name(f) for f in Settings.model_fields}
    text = DOC.read_text()
    assert all(name in text for name in NOT_SETTINGS)


def parse_like(default: Any, text: str) -> Any:
    if isinstance(default, bool):
        return text.lower() == "true"
    return type(default)(text) if isinstance(default, int | float | Path) else text


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_the_documented_default_is_the_real_one(field: str) -> None:
    default = Settings.model_fields[field].default
    documented = documented_defaults()[env_name(field)]
    assert parse_like(default, documented) == default


def test_the_variables_really_set_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPE_PORT", "9090")
    monkeypatch.setenv("EPE_WORKER_USER", "epe-worker")
    monkeypatch.setenv("EPE_OUTPUT_LIMIT", "1048576")
    settings = Settings()
    assert (settings.port, settings.worker_user, settings.output_limit) == (
        9090, "epe-worker", 1048576)
