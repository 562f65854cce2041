"""Granting over REST and with ``oml.grant``/``oml.revoke`` inside a function applies one
set of rules: each refusal is the same on both paths, word for word (docs/api.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serverproc import API, EpeServer, assert_error, unique_name

GRANT = """def f(name, typ, user=None, revoke=False):
    import oml
    (oml.revoke if revoke else oml.grant)(name, typ, user)
    return True
"""
SAVE = """def f(name, grantable):
    import oml
    oml.ds.save({'x': 1}, name, grantable=grantable)
    return True
"""


@pytest.fixture(scope="module")
def people(server: EpeServer) -> Iterator[dict[str, tuple[str, httpx.Client]]]:
    found = {k: server.new_client() for k in ("ann", "ben")}
    yield found
    for _name, client in found.values():
        client.close()


def in_function(c: httpx.Client, source: str, **params: Any) -> httpx.Response:
    return c.post(f"{API}/do-eval", json={"script": source, "parameters": json.dumps(params)})


def refused_in_function(c: httpx.Client, **params: Any) -> str:
    """The server's message when a function's oml.grant/oml.revoke is refused."""
    body = assert_error(in_function(c, GRANT, **params), 400)
    assert body["errorMessage"].startswith("ValueError: "), body
    return str(body["errorMessage"].removeprefix("ValueError: "))


def script(c: httpx.Client) -> str:
    name = unique_name("s_")
    r = c.post(f"{API}/scripts", json={"name": name, "script": "def f():\n    return 1\n"})
    assert r.status_code == 201, r.text
    return name


def datastore(c: httpx.Client, grantable: bool) -> str:
    name = unique_name("ds_")
    r = in_function(c, SAVE, name=name, grantable=grantable)
    assert r.status_code == 200, r.text
    return name


def test_revoking_from_a_user_that_does_not_exist(people: dict[str, Any]) -> None:
    _, ann = people["ann"]
    name, nobody = script(ann), unique_name("NOSUCH")
    rest = assert_error(ann.delete(f"{API}/scripts/{name}/grants/{nobody}"), 404)
    assert rest["errorMessage"] == f"no such user {nobody}"
    assert refused_in_function(ann, name=name, typ="pyqscript", user=nobody,
                               revoke=True) == rest["errorMessage"]


def test_granting_what_is_not_yours(people: dict[str, Any]) -> None:
    (_, ann), (ben_name, ben) = people["ann"], people["ben"]
    name = script(ann)
    rest = assert_error(ben.post(f"{API}/scripts/{name}/grants", json={"user": None}), 404)
    assert refused_in_function(ben, name=name, typ="pyqscript") == rest["errorMessage"]
    stored = datastore(ann, grantable=True)
    rest = assert_error(ben.post(f"{API}/datastores/{stored}/grants",
                                 json={"user": ben_name}), 404)
    assert refused_in_function(ben, name=stored, typ="datastore",
                               user=ben_name) == rest["errorMessage"]


def test_revoking_what_was_not_granted(people: dict[str, Any]) -> None:
    (_, ann), (ben_name, _) = people["ann"], people["ben"]
    name = script(ann)
    rest = assert_error(ann.delete(f"{API}/scripts/{name}/grants/{ben_name}"), 404)
    assert rest["errorMessage"] == f"script {name} is not granted to {ben_name}"
    assert refused_in_function(ann, name=name, typ="pyqscript", user=ben_name,
                               revoke=True) == rest["errorMessage"]


def test_a_datastore_saved_not_grantable(people: dict[str, Any]) -> None:
    (_, ann), (ben_name, _) = people["ann"], people["ben"]
    stored = datastore(ann, grantable=False)
    rest = assert_error(ann.post(f"{API}/datastores/{stored}/grants",
                                 json={"user": ben_name}), 403)
    assert "grantable=False" in rest["errorMessage"]
    assert refused_in_function(ann, name=stored, typ="datastore",
                               user=ben_name) == rest["errorMessage"]


def test_what_one_path_grants_the_other_revokes(people: dict[str, Any]) -> None:
    (ann_name, ann), (ben_name, ben) = people["ann"], people["ben"]
    name = script(ann)
    r = in_function(ann, GRANT, name=name, typ="pyqscript", user=ben_name.lower())
    assert r.status_code == 200, r.text
    assert ben.post(f"{API}/do-eval/{name}/{ann_name}").json() == {"result": 1}
    r = ann.delete(f"{API}/scripts/{name}/grants/{ben_name}")
    assert r.json() == {"result": {"name": name, "user": ben_name, "revoked": True}}
    assert_error(ben.post(f"{API}/do-eval/{name}/{ann_name}"), 404)
