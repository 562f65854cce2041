"""Tokens (docs/api.md#authentication): password grant, refresh chains, expiry, revocation."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from epe.api.deps import TOKEN_FREE
from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error, unique_name, wait_for

REVOKE_URL = TOKEN_URL + "/revoke"
PROBE = f"{API}/scripts"  # any endpoint that needs a token
NewUser = Callable[..., tuple[str, str]]


@pytest.fixture
def new_user(admin: httpx.Client) -> NewUser:
    """Create users through the admin API (much faster than a CLI process each)."""

    def make(name: str | None = None, password: str | None = None) -> tuple[str, str]:
        name = name or unique_name("T")
        password = password or "pw-" + name
        r = admin.post("/omlusers/api/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        return name.upper(), password

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_grant(srv: EpeServer, user: str, password: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                       "password": password})


def refresh(srv: EpeServer, token: str, key: str = "refresh_token") -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "refresh_token", key: token},
                      headers=bearer(token))


def probe(srv: EpeServer, token: str) -> httpx.Response:
    with srv.http() as c:
        return c.get(PROBE, headers=bearer(token))


def assert_token_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"accessToken", "expiresIn", "tokenType"}, body
    assert isinstance(body["accessToken"], str) and body["accessToken"]
    assert isinstance(body["expiresIn"], int) and not isinstance(body["expiresIn"], bool)
    assert body["tokenType"] == "Bearer"


# -- password grant -----------------------------------------------------------------


def test_password_grant_shape_and_token_works(server: EpeServer, new_user: NewUser) -> None:
    user, password = new_user()
    r = password_grant(server, user, password)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_token_shape(body)
    assert body["expiresIn"] == 3600
    assert probe(server, body["accessToken"]).status_code == 200


def test_password_grant_from_a_curl_form_body(server: EpeServer, new_user: NewUser) -> None:
    # Oracle's curl examples: `curl -d '{...}'`, which sends a form content type.
    user, password = new_user()
    with server.http() as c:
        r = c.post(TOKEN_URL, content=('{"grant_type":"password", "username":"' + user
                                       + '", "password":"' + password + '"}'),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert_token_shape(r.json())


def test_user_names_are_case_insensitive_at_login(server: EpeServer,
                                                  new_user: NewUser) -> None:
    name = "MiXed" + unique_name("n")
    user, password = new_user(name)
    assert user == name.upper()
    for spelling in (name, name.lower(), name.upper()):
        r = password_grant(server, spelling, password)
        assert r.status_code == 200, (spelling, r.text)
        assert probe(server, r.json()["accessToken"]).status_code == 200


def test_wrong_user_and_wrong_password_get_the_same_answer(server: EpeServer,
                                                           new_user: NewUser) -> None:
    user, password = new_user()
    wrong_password = password_grant(server, user, password + "x")
    wrong_user = password_grant(server, unique_name("nobody"), password)
    assert_error(wrong_password, 401)
    assert_error(wrong_user, 401)
    assert wrong_password.status_code == wrong_user.status_code
    assert wrong_password.json() == wrong_user.json()


def test_password_is_case_sensitive(server: EpeServer, new_user: NewUser) -> None:
    user, _ = new_user(password="CaseMatters1")
    assert_error(password_grant(server, user, "casematters1"), 401)
    assert password_grant(server, user, "CaseMatters1").status_code == 200


@pytest.mark.parametrize("body", [
    {"grant_type": "client_credentials", "username": "u", "password": "p"},
    {"username": "u", "password": "p"},
    {"grant_type": "password", "password": "p"},
    {"grant_type": "password", "username": 5, "password": "p"},
])
def test_bad_token_requests_are_400(server: EpeServer, body: dict[str, Any]) -> None:
    with server.http() as c:
        assert_error(c.post(TOKEN_URL, json=body), 400)


def test_token_request_that_is_not_json_is_400(server: EpeServer) -> None:
    with server.http() as c:
        r = c.post(TOKEN_URL, content=b"grant_type=password&username=u&password=p",
                   headers={"Content-Type": "application/json"})
    assert_error(r, 400)


# -- missing and bad bearer tokens -------------------------------------------------


def _foreign_token() -> str:
    """A well-formed token signed with a key this server does not have."""
    now = time.time()
    return jwt.encode({"sub": "OMLUSER", "jti": "x", "iat": int(now), "exp": now + 3600,
                       "chain": now}, "not-the-servers-key-" * 4, algorithm="HS256")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Token abc"},
    {"Authorization": "Bearer garbage"},
    {"Authorization": "Bearer a.b.c"},
    {"Authorization": "Bearer " + _foreign_token()},
], ids=["none", "empty", "scheme-only", "basic", "other-scheme", "garbage",
        "three-parts", "foreign-key"])
def test_missing_malformed_or_garbage_bearer_is_401(server: EpeServer,
                                                     headers: dict[str, str]) -> None:
    with server.http() as c:
        assert_error(c.get(PROBE, headers=headers), 401)
        assert_error(c.post(f"{API}/do-eval/anything", json={}, headers=headers), 401)
        assert_error(c.post(REVOKE_URL, headers=headers), 401)


def test_tampered_token_is_401(server: EpeServer, new_user: NewUser) -> None:
    user, password = new_user()
    token = password_grant(server, user, password).json()["accessToken"]
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert_error(probe(server, f"{head}.{payload}.{flipped}"), 401)
    assert probe(server, token).status_code == 200


# -- refresh ------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["refresh_token", "token"])
def test_refresh_gives_a_new_working_token(server: EpeServer, new_user: NewUser,
                                           key: str) -> None:
    user, password = new_user()
    old = password_grant(server, user, password).json()["accessToken"]
    r = refresh(server, old, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_token_shape(body)
    assert body["expiresIn"] == 3600
    assert body["accessToken"] != old
    assert probe(server, body["accessToken"]).status_code == 200
    # A refreshed token can itself be refreshed.
    again = refresh(server, body["accessToken"], key)
    assert again.status_code == 200, again.text
    assert probe(server, again.json()["accessToken"]).status_code == 200


def test_refresh_with_a_garbage_token_is_401(server: EpeServer) -> None:
    assert_error(refresh(server, "garbage"), 401)
    assert_error(refresh(server, _foreign_token(), "token"), 401)


def test_expired_token_is_refused_for_use_and_refresh(
        make_server: Callable[..., EpeServer]) -> None:
    srv = make_server(EPE_TOKEN_LIFETIME="1")
    user, password = srv.add_user()
    r = password_grant(srv, user, password)
    assert r.json()["expiresIn"] == 1
    token = r.json()["accessToken"]
    expired = wait_for(lambda: (p := probe(srv, token)).status_code == 401 and p)
    assert_error(expired, 401)
    assert_error(refresh(srv, token), 401)
    assert_error(refresh(srv, token, "token"), 401)
    # The password still works: a new chain starts.
    assert password_grant(srv, user, password).status_code == 200


def test_refresh_chain_ends_after_the_chain_lifetime(
        make_server: Callable[..., EpeServer]) -> None:
    # Lifetimes long enough that a loaded machine still refreshes before a token
    # runs out: only the chain's cap may end the loop below.
    srv = make_server(EPE_TOKEN_LIFETIME="3", EPE_TOKEN_CHAIN_LIFETIME="6")
    user, password = srv.add_user()
    grant = password_grant(srv, user, password).json()
    assert grant["expiresIn"] == 3
    current = {"token": grant["accessToken"], "refreshes": 0}
    refused: list[httpx.Response] = []

    def keep_refreshing() -> bool:
        r = refresh(srv, current["token"])
        if r.status_code != 200:
            refused.append(r)
            return True
        body = r.json()
        assert_token_shape(body)
        assert 1 <= body["expiresIn"] <= 3  # never beyond the chain's end
        current["token"] = body["accessToken"]
        current["refreshes"] += 1
        return False

    wait_for(keep_refreshing, timeout=60, interval=0.1)
    assert current["refreshes"] >= 1
    assert_error(refused[0], 401)
    # The last token of the chain is refused too, once it has run out.
    wait_for(lambda: probe(srv, str(current["token"])).status_code == 401)
    assert password_grant(srv, user, password).status_code == 200


def test_refreshed_token_never_outlives_its_chain(
        make_server: Callable[..., EpeServer]) -> None:
    chain = 5
    srv = make_server(EPE_TOKEN_LIFETIME="3600", EPE_TOKEN_CHAIN_LIFETIME=str(chain))
    user, password = srv.add_user()
    before_grant = time.time()
    grant = password_grant(srv, user, password).json()
    after_grant = time.time()
    assert_token_shape(grant)
    # The chain caps even the first token.
    assert grant["expiresIn"] <= chain
    before_refresh = time.time()
    r = refresh(srv, grant["accessToken"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert_token_shape(body)
    # By the order of events (same clock): the chain started no later than
    # after_grant and the refresh happened no earlier than before_refresh, so
    # what remained of the chain is at most this (plus rounding to a second).
    remaining = chain - (before_refresh - after_grant)
    assert body["expiresIn"] <= max(1.0, remaining + 0.5), (body, remaining)
    assert body["expiresIn"] < 3600
    assert before_grant <= after_grant
    # Once the chain is over, the refreshed token is refused, and so is a refresh.
    token = body["accessToken"]
    wait_for(lambda: probe(srv, token).status_code == 401, timeout=60, interval=0.2)
    assert_error(probe(srv, token), 401)
    assert_error(refresh(srv, token), 401)
    assert_error(refresh(srv, token, "token"), 401)


# -- revoke -------------------------------------------------------------------------


def test_revoke_refuses_the_token_for_use_and_refresh(server: EpeServer,
                                                      new_user: NewUser) -> None:
    user, password = new_user()
    token = password_grant(server, user, password).json()["accessToken"]
    other = password_grant(server, user, password).json()["accessToken"]
    assert probe(server, token).status_code == 200
    with server.http() as c:
        r = c.post(REVOKE_URL, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}
    assert_error(probe(server, token), 401)
    assert_error(refresh(server, token), 401)
    assert_error(refresh(server, token, "token"), 401)
    with server.http() as c:
        assert_error(c.post(REVOKE_URL, headers=bearer(token)), 401)
    # Only that token: the user's other token still works.
    assert probe(server, other).status_code == 200


def test_revoking_a_refreshed_token_refuses_it(
        server: EpeServer, new_user: NewUser) -> None:
    user, password = new_user()
    first = password_grant(server, user, password).json()["accessToken"]
    second = refresh(server, first).json()["accessToken"]
    with server.http() as c:
        assert c.post(REVOKE_URL, headers=bearer(second)).status_code == 200
    assert_error(probe(server, second), 401)
    assert_error(refresh(server, second), 401)


def test_deleted_users_token_stops_working(server: EpeServer, new_user: NewUser,
                                           admin: httpx.Client) -> None:
    user, password = new_user()
    token = password_grant(server, user, password).json()["accessToken"]
    assert probe(server, token).status_code == 200
    r = admin.delete(f"/omlusers/api/v1/users/{user}")
    assert r.status_code == 200, r.text
    assert_error(probe(server, token), 401)
    assert_error(refresh(server, token), 401)
    assert_error(password_grant(server, user, password), 401)


def test_only_the_token_free_paths_answer_without_a_token(server: EpeServer) -> None:
    """Every operation of the OpenAPI document, asked without a token: 401 unless its path
    is on the one list (``api.deps.TOKEN_FREE``), which is then never 401; the pages
    outside the document answer too."""
    with server.http() as anonymous:
        document = anonymous.get("/openapi.json").json()
        for path, methods in document["paths"].items():
            concrete = re.sub(r"\{jobId\}", "0" * 32, re.sub(r"\{(?!jobId)\w+\}", "X", path))
            for method in methods:
                r = anonymous.request(method.upper(), concrete)
                assert (r.status_code == 401) == (path not in TOKEN_FREE), (method, path, r.text)
        pages = [p for p in TOKEN_FREE if p not in document["paths"]]
        for page in pages:
            asked = page + "console.js" if page.endswith("/assets/") else page
            assert anonymous.get(asked).status_code in (200, 307), asked
