"""The error body everywhere (docs/errors.md), version metadata, health,
the API docs, and the request body limit (413)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serverproc import API, ROOT, TOKEN_URL, EpeServer


@pytest.fixture(scope="module")
def c(server: EpeServer) -> Iterator[httpx.Client]:
    _user, client = server.new_client()
    with client:
        yield client


def assert_error(r: httpx.Response, status: int) -> dict[str, Any]:
    """``r`` is an error body with ``status``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("errorCode"), int) and not isinstance(body["errorCode"], bool)
    assert isinstance(body.get("errorMessage"), str) and body["errorMessage"]
    assert "detail" not in body
    return body


@pytest.mark.parametrize("path", ["/nope", "/oml/api/nope", f"{ROOT}/v3", f"{ROOT}/v3/scripts",
                                  f"{API}/nope", f"{API}/scripts/a/b/c",
                                  "/omlusers/api/oauth2/v2/token", "/omlusers/api/v1/nope"])
def test_unknown_route_is_404(c: httpx.Client, path: str) -> None:
    assert_error(c.get(path), 404)
    if path != f"{ROOT}/v3":  # shaped like a version, which only answers GET
        assert_error(c.post(path, json={}), 404)


@pytest.mark.parametrize("method, path", [
    ("GET", TOKEN_URL),
    ("DELETE", TOKEN_URL),
    ("GET", TOKEN_URL + "/revoke"),
    ("PUT", f"{API}/scripts"),
    ("DELETE", f"{API}/scripts"),
    ("GET", f"{API}/do-eval/x"),
    ("PUT", f"{API}/do-eval/x"),
    ("PUT", "/omlusers/api/v1/users"),
    ("POST", "/health"),
    ("POST", ROOT),
])
def test_wrong_method_is_405(c: httpx.Client, method: str, path: str) -> None:
    assert_error(c.request(method, path), 405)


def test_versions(c: httpx.Client) -> None:
    r = c.get(ROOT)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {i["version"] for i in items} == {"v1", "v2"}
    by_version = {i["version"]: i for i in items}
    assert by_version["v2"]["isLatest"] is True
    assert by_version["v1"]["isLatest"] is False


@pytest.mark.parametrize("version, latest", [("v1", False), ("v2", True)])
def test_version_metadata(c: httpx.Client, version: str, latest: bool) -> None:
    r = c.get(f"{ROOT}/{version}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == version
    assert body["isLatest"] is latest
    assert isinstance(body["lifecycle"], str) and body["lifecycle"]
    links = body["links"]
    assert isinstance(links, list) and links
    selves = [link["href"] for link in links if link.get("rel") == "self"]
    assert len(selves) == 1
    assert selves[0].endswith(f"{ROOT}/{version}")
    assert selves[0].startswith("http")
    hrefs = [link["href"] for link in links]
    assert any(h.endswith(f"{ROOT}/{version}/scripts") for h in hrefs)
    assert all(f"{ROOT}/{version}" in h for h in hrefs)
    if version == "v1":
        assert r.headers.get("Deprecation") and r.headers.get("Sunset")
    else:
        assert "Deprecation" not in r.headers and "Sunset" not in r.headers


def test_version_metadata_needs_a_token(server: EpeServer) -> None:
    # Every endpoint but the token ones (and /health) needs a bearer token.
    with server.http() as h:
        for path in (ROOT, f"{ROOT}/v1", f"{ROOT}/v2"):
            assert_error(h.get(path), 401)


def test_health_needs_no_token(server: EpeServer) -> None:
    with server.http() as h:
        r = h.get("/health")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_api_docs(server: EpeServer) -> None:
    with server.http() as h:
        docs = h.get("/docs")
        spec = h.get("/openapi.json")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
    assert "/openapi.json" in docs.text
    assert spec.status_code == 200, spec.text
    assert spec.headers["content-type"].startswith("application/json")
    body = spec.json()
    assert body["openapi"].startswith("3.")
    assert TOKEN_URL in body["paths"]
    assert f"{API}/do-eval/{{scriptName}}" in body["paths"]
    assert f"{API}/scripts" in body["paths"]


def test_error_bodies_never_leak_framework_shapes(c: httpx.Client) -> None:
    # A body that fails validation is a 400 with the error body, never FastAPI's 422.
    assert_error(c.post(f"{API}/scripts", json={"nme": "x"}), 400)
    assert_error(c.post(f"{API}/scripts", content=b"{", headers={"Content-Type":
                                                                 "application/json"}), 400)
    assert_error(c.post(f"{API}/scripts/x/grants", json={"user": 5}), 400)
    assert_error(c.delete(f"{API}/scripts/x", params={"isGlobal": "perhaps"}), 400)


def test_unauthorized_comes_with_www_authenticate(server: EpeServer) -> None:
    with server.http() as h:
        r = h.get(f"{API}/scripts")
    assert_error(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    srv = EpeServer(tmp_path_factory.mktemp("epe-small-body"),
                    {"EPE_MAX_BODY_SIZE": "1000"}).start()
    yield srv
    srv.stop()


def test_body_over_the_limit_is_413(small_body_server: EpeServer) -> None:
    srv = small_body_server
    user, password = srv.add_user()
    big = {"grant_type": "password", "username": user, "password": password,
           "padding": "x" * 2000}
    with srv.http() as h:
        assert_error(h.post(TOKEN_URL, json=big), 413)
        # Under the limit, the same request is fine.
        small = {k: v for k, v in big.items() if k != "padding"}
        r = h.post(TOKEN_URL, json=small)
        assert r.status_code == 200, r.text
        token = r.json()["accessToken"]
    with srv.http(headers={"Authorization": f"Bearer {token}"}) as h:
        source = "def f():\n    return " + repr("y" * 2000) + "\n"
        assert_error(h.post(f"{API}/scripts", json={"name": "big", "script": source}), 413)
        assert_error(h.post(f"{API}/do-eval", json={"script": source}), 413)
        assert_error(h.post(f"{ROOT}/v1/do-eval", json={"script": source}), 413)
        r = h.post(f"{API}/do-eval", json={"script": "def f():\n    return 'ok'\n"})
        assert r.status_code == 200, r.text


def test_streamed_body_over_the_limit_is_413(small_body_server: EpeServer) -> None:
    # No Content-Length (chunked): the limit holds as the body streams in.
    srv = small_body_server
    user, password = srv.add_user()
    token = srv.token(user, password)

    def chunks() -> Iterator[bytes]:
        yield b'{"script": "def f():\\n    return 1\\n", "padding": "'
        for _ in range(20):
            yield b"z" * 200
        yield b'"}'

    with srv.http(headers={"Authorization": f"Bearer {token}",
                           "Content-Type": "application/json"}) as h:
        r = h.post(f"{API}/do-eval", content=chunks())
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413)
        r = h.post(f"{API}/do-eval", content=iter([b'{"script": "def f():\\n    return 2\\n"}']))
        assert r.status_code == 200, r.text
        assert r.json() == {"result": 2}


def test_413_even_without_a_token(small_body_server: EpeServer) -> None:
    with small_body_server.http() as h:
        assert_error(h.post(f"{API}/do-eval/x", content=b"{" + b" " * 5000 + b"}",
                            headers={"Content-Type": "application/json"}), 413)
