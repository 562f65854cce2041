"""Automation tokens (docs/api.md#automation-tokens): made, used as bearer tokens and as
the password of OML's password grant (what dbt-oracle's client sends), scoped, expiring,
revoked, listed and revoked by admins, every use audited with the token's name."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error, put_table, wait_for

TOKENS = "/omlusers/api/v1/tokens"
AUDIT = "/omlusers/api/v1/audit"
DOUBLE = "def f(n=1):\n    return n * 2\n"


@pytest.fixture(scope="module")
def owner(server: EpeServer) -> Iterator[tuple[str, str, httpx.Client]]:
    user, password = server.add_user()
    with server.client(user, password) as c:
        assert c.post(f"{API}/scripts", json={"name": "double", "script": DOUBLE}
                      ).status_code == 201
        put_table(c, "NUMS", "X\n1\n2\n")
        yield user, password, c


def make(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post(TOKENS, json=body)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def bearer(srv: EpeServer, token: str) -> httpx.Client:
    return srv.http(headers={"Authorization": f"Bearer {token}"})


def test_made_shown_once_kept_as_a_hash_and_used(server: EpeServer,
                                                 owner: tuple[str, str, httpx.Client]) -> None:
    user, _password, c = owner
    made = make(c, name="ci-nightly", expiresIn=86400)
    assert set(made) == {"id", "name", "user", "scope", "created", "expires", "token"}
    assert (made["name"], made["user"], made["scope"]) == ("ci-nightly", user, "run")
    listed = c.get(TOKENS).json()["items"]
    assert [t["id"] for t in listed if t["name"] == "ci-nightly"] == [made["id"]]
    assert "token" not in listed[0]  # the secret is in the answer that made it only
    with sqlite3.connect(server.data_dir / "metadata.sqlite") as db:
        stored = db.execute("SELECT * FROM api_tokens WHERE id = ?", (made["id"],)).fetchone()
    secret = made["token"].rsplit("_", 1)[1]
    assert secret not in json.dumps(stored) and made["token"] not in json.dumps(stored)
    with bearer(server, made["token"]) as bot:
        assert bot.post(f"{API}/do-eval/double", json={"parameters": '{"n": 21}'}
                        ).json() == {"result": 42}
        assert bot.get("/omlusers/api/v1/users/me").json()["result"]["via"] == "token"
        # A token cannot make or revoke tokens: a leaked one cannot keep itself alive.
        assert_error(bot.post(TOKENS, json={"name": "more"}), 403)
    assert_error(c.post(TOKENS, json={"name": "ci-nightly"}), 409)
    assert_error(c.post(TOKENS, json={"name": "x", "scope": "admin"}), 400)


def test_a_read_only_token_reads_but_cannot_run_or_change(server: EpeServer,
                                                          owner: tuple[str, str, httpx.Client]
                                                          ) -> None:
    made = make(owner[2], name="dashboard", scope="read")
    with bearer(server, made["token"]) as bot:
        assert bot.get(f"{API}/scripts").status_code == 200
        assert bot.post(f"{API}/query", json={"input": "SELECT * FROM NUMS"}).json() == \
            {"result": [{"X": 1}, {"X": 2}]}
        for r in (bot.post(f"{API}/do-eval/double"),
                  bot.post(f"{API}/scripts", json={"name": "s", "script": DOUBLE}),
                  bot.delete(f"{API}/tables/NUMS")):
            assert "scope is read" in assert_error(r, 403)["errorMessage"]


def test_dbt_oracle_client_uses_a_token_as_its_password(server: EpeServer,
                                                        owner: tuple[str, str, httpx.Client]
                                                        ) -> None:
    user, _password, c = owner
    made = make(c, name="dbt-ci")
    headers = {"Accept": "application/json", "Content-type": "application/json"}
    with server.http() as h:
        # OracleOML4PYClient._get_token, then a do-eval and a refresh as it sends them.
        r = h.post(TOKEN_URL, headers=headers, content=json.dumps(
            {"grant_type": "password", "username": user.lower(), "password": made["token"]}))
        assert r.status_code == 200, r.text
        token = r.json()["accessToken"]
        auth = {**headers, "Authorization": f"Bearer {token}"}
        r = h.post("/oml/api/py-scripts/v1/do-eval/double", headers=auth,
                   content=json.dumps({"service": "HIGH", "parameters": '{"n": 4}'}))
        assert r.status_code == 200 and r.json() == {"result": 8}, r.text
        r = h.post("/oml/api/py-scripts/v1/do-eval/double", headers=auth,
                   content=json.dumps({"service": "HIGH", "asyncFlag": True, "timeout": 1800}))
        assert r.status_code == 201, r.text
        job = r.headers["location"]
        wait_for(lambda: h.get(job, headers=auth).status_code == 302)
        assert h.get(f"{job}/result", headers=auth).json() == {"result": 2}
        r = h.post(TOKEN_URL, headers=headers, content=json.dumps(
            {"grant_type": "refresh_token", "token": token}))
        assert r.status_code == 200, r.text
        refreshed = r.json()["accessToken"]
        # Another user's name with this token is a wrong password.
        assert_error(h.post(TOKEN_URL, json={"grant_type": "password", "username": "SOMEONE",
                                             "password": made["token"]}), 401)
        assert c.delete(f"{TOKENS}/{made['id']}").status_code == 200
        # Revoked: the token, and the tokens got with it, are refused; no refresh.
        for t in (made["token"], token, refreshed):
            assert_error(h.get(f"{API}/scripts", headers={"Authorization": f"Bearer {t}"}), 401)
        assert_error(h.post(TOKEN_URL, json={"grant_type": "refresh_token", "token": refreshed}),
                     401)
        assert_error(h.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                             "password": made["token"]}), 401)


def test_an_expired_token_is_refused(server: EpeServer,
                                     owner: tuple[str, str, httpx.Client]) -> None:
    made = make(owner[2], name="short", expiresIn=1)
    with bearer(server, made["token"]) as bot:
        assert "has expired" in wait_for(
            lambda: (r := bot.get(f"{API}/scripts")).status_code == 401 and r.json()
        )["errorMessage"]


def test_admins_list_and_revoke_anyones_and_uses_are_audited(
        server: EpeServer, owner: tuple[str, str, httpx.Client]) -> None:
    user, _password, c = owner
    made = make(c, name="audited")
    with bearer(server, made["token"]) as bot:
        assert bot.post(f"{API}/do-eval/double").json() == {"result": 2}
    admin_name, admin_pw = server.add_user(admin=True)
    other, other_pw = server.add_user()
    with server.client(admin_name, admin_pw) as admin, server.client(other, other_pw) as o:
        assert_error(o.get(TOKENS, params={"user": user}), 403)
        assert_error(o.delete(f"{TOKENS}/{made['id']}"), 404)
        theirs = admin.get(TOKENS, params={"user": user}).json()["items"]
        assert made["id"] in [t["id"] for t in theirs]
        runs = admin.get(AUDIT, params={"user": user, "kind": "run"}).json()["result"]["items"]
        assert runs[-1]["details"]["token"] == "audited"
        assert admin.delete(f"{TOKENS}/{made['id']}").status_code == 200
        made_and_gone = admin.get(AUDIT, params={"kind": "token"}).json()["result"]["items"]
        assert [(e["action"], e["user"]) for e in made_and_gone
                if e["details"].get("id") == made["id"]] == [("create", user),
                                                            ("revoke", admin_name)]
    assert_error(bearer(server, made["token"]).get(f"{API}/scripts"), 401)
