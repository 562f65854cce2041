"""A Ray node is given the settings it needs and no URL, key or password
(docs/security.md, Ray nodes): ``NODE_SETTINGS`` is the whole of what code running on
a node reads, and none of it is a secret. The acceptance test that reads what reaches
the nodes is tests/acceptance/on_ray/test_loopback_on_ray.py."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from epe.settings import NODE_SETTINGS, Settings

SRC = Path(__file__).resolve().parents[2] / "src" / "epe"
# What runs on a node: the agent and the local executor's machinery it runs there.
ON_NODES = [SRC / "runner" / "ray" / "agent.py", SRC / "runner" / "identity.py",
            *(SRC / "runner" / "local").glob("*.py"), *(SRC / "runner" / "worker").rglob("*.py")]
READ = re.compile(r"\bsettings\.([a-z_]+)")


def test_code_on_the_nodes_reads_only_the_settings_they_are_given() -> None:
    read = {name for path in ON_NODES for name in READ.findall(path.read_text())}
    assert read, "no settings read at all: the pattern is out of date"
    properties = {name for name in dir(Settings) if isinstance(getattr(Settings, name, None),
                                                             property)}
    assert sorted(read - NODE_SETTINGS - properties) == []


def test_no_node_setting_is_a_url_or_a_secret() -> None:
    assert set(Settings.model_fields) >= NODE_SETTINGS
    assert not [name for name in NODE_SETTINGS
                if re.search(r"url|key|password|secret|token|address", name)]


def test_what_nodes_are_given_holds_no_password() -> None:
    settings = Settings(metadata_url="postgresql://epe:meta-Secret@db/epe",
                        data_url="postgresql://epe:data-Secret@db/tables",
                        ray_address="10.0.0.1:6379", metrics_address="0.0.0.0:9090")
    given = settings.for_nodes()
    assert set(given) == NODE_SETTINGS
    text = orjson.dumps(given).decode()
    for secret in ("meta-Secret", "data-Secret", "postgresql://", "10.0.0.1", "9090"):
        assert secret not in text
    assert given["data_dir"] == str(settings.data_dir.absolute())  # what nodes hide
