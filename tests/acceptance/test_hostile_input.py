"""Input that once made the server answer 500 (found by the fuzzer in tests/fuzz and by
probing around what it found): each is the client's mistake, so each is a 400 with the
error body of docs/errors.md."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error

USERS = "/omlusers/api/v1/users"
LONE = "\\ud800"  # a JSON escape of a lone surrogate: valid JSON, not a character


@pytest.fixture(scope="module")
def c(server: EpeServer) -> Iterator[httpx.Client]:
    _user, client = server.new_client()
    with client:
        yield client


def post_raw(c: httpx.Client, path: str, text: str) -> httpx.Response:
    """POST ``text`` as it is: httpx's ``json=`` would refuse a lone surrogate itself."""
    return c.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def test_a_nul_character_in_a_stored_script_is_400(c: httpx.Client) -> None:
    r = c.post(f"{API}/scripts", json={"name": "nul", "script": "def f():\n    return 1\x00\n"})
    body = assert_error(r, 400, 1010)
    assert "NUL character" in body["errorMessage"] and "line 2" in body["errorMessage"]
    assert c.get(f"{API}/scripts/nul").status_code == 404  # nothing was stored


@pytest.mark.parametrize("op", ["do-eval", "table-apply"])
def test_a_nul_character_in_an_inline_script_is_400(c: httpx.Client, op: str) -> None:
    r = c.post(f"{API}/{op}", json={"script": "\x00", "input": "select 1 as x"})
    assert "NUL character" in assert_error(r, 400, 1010)["errorMessage"]


def test_a_script_nested_too_deeply_for_the_parser_is_400(c: httpx.Client) -> None:
    source = "def f():\n    return a" + ".a" * 100_000 + "\n"
    r = c.post(f"{API}/scripts", json={"name": "deep", "script": source})
    assert "nested too deeply" in assert_error(r, 400, 1010)["errorMessage"]


@pytest.mark.parametrize(("path", "text"), [
    (f"{API}/scripts", '{"name": "s", "script": "def f(): pass", "description": "%s"}'),
    (f"{API}/do-eval", '{"script": "def f(): return 1", "pickledParameters": "%s"}'),
    (f"{API}/group-apply", '{"script": "def f(d): return 1", "input": "select 1 as a", '
                           '"groupBy": "a", "orderBy": "%s"}'),
    (f"{API}/do-eval", '{"script": "def f(): return 1", "%s": 1}'),  # even an unknown key
    (TOKEN_URL, '{"grant_type": "password", "username": "%s", "password": "x"}'),
    (TOKEN_URL, '{"grant_type": "password", "username": "OMLUSER", "password": "%s"}'),
    (TOKEN_URL, '{"grant_type": "refresh_token", "refresh_token": "%s"}'),
])
def test_a_lone_surrogate_in_a_json_body_is_400(c: httpx.Client, path: str, text: str) -> None:
    for surrogate in (LONE, "\\udc00", "\\ud800x\\udc00"):
        body = assert_error(post_raw(c, path, text % surrogate), 400, 1001)
        assert "lone UTF-16 surrogate" in body["errorMessage"]


def test_a_surrogate_as_raw_utf8_bytes_is_400(c: httpx.Client) -> None:
    raw = b'{"name": "s", "script": "def f(): pass", "description": "\xed\xa0\x80"}'
    r = c.post(f"{API}/scripts", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, 1001)


def test_a_form_typed_body_is_checked_too(c: httpx.Client) -> None:
    text = '{"name": "s", "script": "def f(): pass", "description": "' + LONE + '"}'
    r = c.post(f"{API}/scripts", content=text.encode(),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, 1001)


def test_an_admin_creating_an_environment_with_one_is_400(server: EpeServer) -> None:
    _admin, admin = server.new_client(admin=True)
    with admin:
        for field in ('"packages": ["%s"]', '"packages": ["x"], "description": "%s"'):
            text = '{"name": "e1", %s}' % (field % LONE)
            assert_error(post_raw(admin, f"{API}/envs", text), 400, 1001)
        assert admin.get(f"{API}/envs/e1").status_code == 404


def test_surrogate_pairs_and_escaped_backslashes_are_ordinary_text(c: httpx.Client) -> None:
    text = ('{"name": "pair", "script": "def f(): pass", '
            '"description": "\\ud83d\\ude00 and \\\\ud800"}')
    r = post_raw(c, f"{API}/scripts", text)
    assert r.status_code == 201, r.text
    assert r.json()["result"]["description"] == "\U0001F600 and \\ud800"


@pytest.mark.parametrize("async_flag", [False, True])
def test_a_huge_index_apply_is_refused_before_any_work(c: httpx.Client, async_flag: bool) -> None:
    # times=10**11 once made the server plan 10**11 invocations in memory until it died.
    r = c.post(f"{API}/index-apply", json={"script": "def f(i):\n    return i\n",
                                           "times": 10**11, "asyncFlag": async_flag})
    assert "'times'" in assert_error(r, 400, 1001)["errorMessage"]
    assert c.get(f"{API}/jobs").json()["result"] == []  # no job was made for it
    r = c.post(f"{API}/index-apply", json={"script": "def f(i):\n    return i\n", "times": 3})
    assert r.json() == {"result": [1, 2, 3]}
