"""The provider's own access tokens as bearer tokens, against a real OpenID provider
(docs/sign-in.md#openid-connect): accepted when signed by a key it publishes, from its
issuer, for epe's audience, unexpired; anything else refused; a rotated key picked up;
the provider down is a 503; users and groups from the token's claims."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import OIDC_SERVER_PORTS
from tests.oidcprovider import (
    ADMIN_GROUP,
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    OidcProvider,
    SigningKey,
)
from tests.serverproc import API, EpeServer, assert_error, unique_name, wait_for

ME = "/omlusers/api/v1/users/me"


def oidc_settings(provider: OidcProvider) -> dict[str, str]:
    return {"EPE_OIDC_ISSUER": provider.issuer, "EPE_OIDC_CLIENT_ID": CLIENT_ID,
            "EPE_OIDC_CLIENT_SECRET": CLIENT_SECRET, "EPE_OIDC_AUDIENCE": AUDIENCE,
            "EPE_OIDC_ADMIN_GROUP": ADMIN_GROUP, "EPE_OIDC_NAME": "Example SSO",
            "EPE_OIDC_TIMEOUT": "3",
            # Keys a second old are fetched again: an outage then meets old keys.
            "EPE_SIGNIN_CACHE_TTL": "1"}


@pytest.fixture(scope="module")
def oidc_server(oidc_provider: OidcProvider,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    srv = EpeServer(tmp_path_factory.mktemp("epe-oidc"), oidc_settings(oidc_provider),
                    port=OIDC_SERVER_PORTS["api"]).start()
    yield srv
    srv.stop()


def bearer(srv: EpeServer, token: str) -> httpx.Client:
    return srv.http(headers={"Authorization": f"Bearer {token}"})


# What users/me says of who the caller is (its limits and usage are the fair share's).
IDENTITY = ("username", "admin", "groups", "source", "via", "scope")


def me(srv: EpeServer, token: str) -> httpx.Response:
    with bearer(srv, token) as c:
        return c.get(ME)


def unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_the_providers_access_token_is_a_bearer_token(oidc_server: EpeServer,
                                                      oidc_provider: OidcProvider) -> None:
    token = oidc_provider.access_token("oscar")
    r = me(oidc_server, token)
    assert r.status_code == 200, r.text
    who = {k: v for k, v in r.json()["result"].items() if k in IDENTITY}
    assert who == {"username": "OSCAR", "admin": False,
                                  "groups": ["DATA-SCIENCE"], "source": "oidc", "via": "oidc",
                                  "scope": None}
    with bearer(oidc_server, token) as c:
        r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 'sso'\n"})
        assert r.status_code == 200 and r.json() == {"result": "sso"}, r.text
        # The provider's tokens are the provider's to refresh and revoke.
        assert_error(c.post("/omlusers/api/oauth2/v1/token/revoke"), 400)
    admin = me(oidc_server, oidc_provider.access_token("olga")).json()["result"]
    assert admin["admin"] is True and admin["groups"] == ["ADMIN", "EPE-ADMINS"]


def test_epe_tokens_keep_working_beside_the_providers(oidc_server: EpeServer) -> None:
    user, client = oidc_server.new_client()
    with client:
        assert client.get(ME).json()["result"]["username"] == user


def test_tokens_the_provider_would_not_issue_are_refused(oidc_server: EpeServer,
                                                         oidc_provider: OidcProvider) -> None:
    key = oidc_provider.keys[0]
    now = int(time.time())
    refused = {
        "wrong audience": oidc_provider.access_token("oscar", resource="https://other.example"),
        "wrong issuer": key.sign(oidc_provider.claims("oscar", iss="https://evil.example")),
        "expired": key.sign(oidc_provider.claims("oscar", iat=now - 7200, exp=now - 3600)),
        "unknown key": SigningKey().sign(oidc_provider.claims("oscar")),
        "alg none": unsigned(oidc_provider.claims("oscar")),
        "no user name": key.sign(oidc_provider.claims("oscar", preferred_username=None)),
        "tampered": key.sign(oidc_provider.claims("otto"))[:-4] + "AAAA",
    }
    for why, token in refused.items():
        body = assert_error(me(oidc_server, token), 401)
        assert body["errorMessage"], why
    messages = {why: me(oidc_server, t).json()["errorMessage"] for why, t in refused.items()}
    assert "another audience" in messages["wrong audience"]
    assert "another issuer" in messages["wrong issuer"]
    assert "expired" in messages["expired"]
    assert "not accepted" in messages["alg none"]
    # The same claims, signed by the provider's key, are fine.
    assert me(oidc_server, key.sign(oidc_provider.claims("oscar"))).status_code == 200


def test_a_script_granted_to_a_group_follows_the_tokens_groups(
        oidc_server: EpeServer, oidc_provider: OidcProvider) -> None:
    owner, owner_pw = oidc_server.add_user()
    name = unique_name("sso_script")
    with oidc_server.client(owner, owner_pw) as c:
        assert c.post(f"{API}/scripts", json={
            "name": name, "script": "def f():\n    return 'team'\n"}).status_code == 201
        assert c.post(f"{API}/scripts/{name}/grants",
                      json={"group": "data-science"}).status_code == 200
    run = f"{API}/do-eval/{name}/{owner}"
    key = oidc_provider.keys[0]
    with bearer(oidc_server, oidc_provider.access_token("oscar")) as oscar:
        assert oscar.post(run).json() == {"result": "team"}
    with bearer(oidc_server, oidc_provider.access_token("otto")) as otto:
        assert_error(otto.post(run), 404)
    # Oscar's next token no longer says data-science: the grant no longer reaches him.
    with bearer(oidc_server, key.sign(oidc_provider.claims("oscar", groups=[]))) as oscar:
        assert_error(oscar.post(run), 404)


def test_a_rotated_key_is_picked_up_and_the_provider_down_is_503(
        oidc_server: EpeServer, oidc_provider: OidcProvider) -> None:
    old, new = oidc_provider.keys[0], SigningKey()
    token = new.sign(oidc_provider.claims("oscar"))
    assert_error(me(oidc_server, token), 401)  # a key the provider does not publish yet
    oidc_provider.stop()
    try:
        # A key it does not know sends epe to the provider (once the last fetch is a
        # couple of seconds old), which does not answer.
        stranger = SigningKey().sign(oidc_provider.claims("oscar"))
        r = wait_for(lambda: (x := me(oidc_server, stranger)).status_code == 503 and x,
                     interval=0.5)
        assert int(r.headers["Retry-After"]) >= 1
        assert assert_error(r, 503, 5005)["errorMessage"].startswith("the identity provider")
        # A token signed by a key already known needs no provider, even once the keys
        # are older than EPE_SIGNIN_CACHE_TTL: they serve on while it cannot answer.
        assert me(oidc_server, old.sign(oidc_provider.claims("otto"))).status_code == 200
    finally:
        oidc_provider.restart([new, old])  # the new key first: it signs from now on
    assert wait_for(lambda: me(oidc_server, token).status_code == 200, interval=0.5)
    fresh = oidc_provider.access_token("oscar")
    assert json.loads(base64.urlsafe_b64decode(fresh.split(".")[0] + "=="))["kid"] == new.kid
    assert me(oidc_server, fresh).status_code == 200
