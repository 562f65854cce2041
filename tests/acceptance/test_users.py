"""Users (docs/api.md#users): the admin API and ``epe user add``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error, run_cli, unique_name

USERS = "/omlusers/api/v1/users"


def login(srv: EpeServer, user: str, password: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                       "password": password})


def create(client: httpx.Client, name: str, password: str = "pw-Secret1",
           **extra: Any) -> httpx.Response:
    return client.post(USERS, json={"username": name, "password": password, **extra})


def test_admin_creates_a_user_who_can_log_in(server: EpeServer, admin: httpx.Client) -> None:
    name = "new" + unique_name("u")
    r = create(admin, name, "Secret-pw")
    assert r.status_code == 201, r.text
    assert r.json()["result"]["username"] == name.upper()  # shown upper-case (OML)
    assert r.json()["result"]["admin"] is False
    token = login(server, name, "Secret-pw")
    assert token.status_code == 200, token.text
    with server.http(headers={"Authorization": f"Bearer {token.json()['accessToken']}"}) as c:
        assert c.get(f"{API}/scripts").status_code == 200
        # An ordinary user is not an admin.
        assert_error(c.post(USERS, json={"username": unique_name(), "password": "x"}), 403)


def test_users_list_for_admins_and_each_user_reads_their_own_account(
        server: EpeServer, admin: httpx.Client) -> None:
    name = unique_name("who")
    assert create(admin, name, "Secret-pw").status_code == 201
    listed = admin.get(USERS)
    assert listed.status_code == 200, listed.text
    rows = listed.json()["result"]
    assert [r["username"] for r in rows] == sorted(r["username"] for r in rows)
    mine = next(r for r in rows if r["username"] == name.upper())
    assert mine["admin"] is False and mine["createdDate"].endswith("+00:00")
    assert "password" not in str(rows).lower()  # no hash, ever

    token = login(server, name, "Secret-pw").json()["accessToken"]
    with server.http(headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get(f"{USERS}/me").json() == {"result": {
            "username": name.upper(), "admin": False, "groups": [], "source": "local",
            "via": "epe", "scope": None}}
        assert_error(c.get(USERS), 403, 3001)  # the list is for admins only
    assert admin.get(f"{USERS}/me").json()["result"]["admin"] is True
    assert admin.get(f"{USERS}/me").json()["result"]["groups"] == ["ADMIN"]
    with server.http() as anonymous:
        assert_error(anonymous.get(f"{USERS}/me"), 401)


def test_admin_can_create_an_admin(server: EpeServer, admin: httpx.Client) -> None:
    name = unique_name("adm")
    r = create(admin, name, "Secret-pw", admin=True)
    assert r.status_code == 201, r.text
    assert r.json()["result"]["admin"] is True
    token = login(server, name, "Secret-pw").json()["accessToken"]
    with server.http(headers={"Authorization": f"Bearer {token}"}) as c:
        made = unique_name()
        assert c.post(USERS, json={"username": made, "password": "p"}).status_code == 201
        assert c.delete(f"{USERS}/{made}").status_code == 200


def test_non_admin_gets_403(server: EpeServer, admin: httpx.Client) -> None:
    victim = unique_name()
    assert create(admin, victim).status_code == 201
    _user, c = server.new_client()
    with c:
        assert_error(c.post(USERS, json={"username": unique_name(), "password": "x"}), 403)
        assert_error(c.delete(f"{USERS}/{victim}"), 403)
    assert login(server, victim, "pw-Secret1").status_code == 200


def test_user_admin_needs_a_token(server: EpeServer) -> None:
    with server.http() as c:
        assert_error(c.post(USERS, json={"username": unique_name(), "password": "x"}), 401)
        assert_error(c.delete(f"{USERS}/OMLUSER"), 401)


def test_duplicate_user_is_409(admin: httpx.Client) -> None:
    name = unique_name("dup")
    assert create(admin, name).status_code == 201
    assert_error(create(admin, name), 409)
    # Names are case-insensitive: another spelling is the same user.
    assert_error(create(admin, name.lower()), 409)


@pytest.mark.parametrize("name", ["1abc", "a b", "PYQSYS", "pyqsys", "PUBLIC", "public", "",
                                  "_x", "a-b", "a/b", "x" * 200, "naïve"])
def test_invalid_user_names_are_400(admin: httpx.Client, name: str) -> None:
    assert_error(create(admin, name), 400)


@pytest.mark.parametrize("body", [
    {"username": "okname"},
    {"password": "x"},
    {"username": "okname", "password": ""},
    {"username": 5, "password": "x"},
    {"username": "okname", "password": "x", "admin": "yes"},
], ids=["no-password", "no-username", "empty-password", "int-name", "string-admin"])
def test_malformed_user_bodies_are_400(admin: httpx.Client, body: dict[str, Any]) -> None:
    assert_error(admin.post(USERS, json=body), 400)


def test_delete_user(server: EpeServer, admin: httpx.Client) -> None:
    name = unique_name("del")
    assert create(admin, name, "Secret-pw").status_code == 201
    assert login(server, name, "Secret-pw").status_code == 200
    r = admin.delete(f"{USERS}/{name.lower()}")  # names are case-insensitive
    assert r.status_code == 200, r.text
    assert_error(login(server, name, "Secret-pw"), 401)
    assert_error(admin.delete(f"{USERS}/{name}"), 404)
    # The name is free again.
    assert create(admin, name, "Other-pw").status_code == 201
    assert login(server, name, "Other-pw").status_code == 200
    assert_error(login(server, name, "Secret-pw"), 401)


def test_delete_unknown_user_is_404(admin: httpx.Client) -> None:
    assert_error(admin.delete(f"{USERS}/{unique_name('ghost')}"), 404)


def test_cli_user_add_works_while_the_server_runs(server: EpeServer) -> None:
    name = unique_name("cli")
    result = run_cli("user", "add", name.lower(), "--data-dir", str(server.data_dir),
                     "--password-stdin", stdin="Cli-pw\n", env=server.env)
    assert result.returncode == 0
    assert name.upper() in result.stdout
    assert login(server, name, "Cli-pw").status_code == 200


def test_cli_duplicate_user_exits_nonzero_with_a_message(server: EpeServer) -> None:
    name, _password = server.add_user()
    result = run_cli("user", "add", name.lower(), "--data-dir", str(server.data_dir),
                     "--password-stdin", stdin="whatever\n", env=server.env, check=False)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "already exists" in message
    assert "Traceback" not in message
    # The existing user keeps their password.
    assert login(server, name, "pw-Secret1").status_code == 200
    assert_error(login(server, name, "whatever"), 401)


@pytest.mark.parametrize("name", ["1abc", "PYQSYS"])
def test_cli_invalid_user_name_exits_nonzero_with_a_message(server: EpeServer,
                                                            name: str) -> None:
    result = run_cli("user", "add", name, "--data-dir", str(server.data_dir),
                     "--password-stdin", stdin="whatever\n", env=server.env, check=False)
    assert result.returncode != 0
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr


def test_admins_keep_local_users_groups_and_admin_is_a_group(server: EpeServer,
                                                             admin: httpx.Client) -> None:
    groups = "/omlusers/api/v1/groups"
    member, member_pw = server.add_user()
    owner, owner_pw = server.add_user()
    name = unique_name("analysis")
    with server.client(owner, owner_pw) as o:
        assert o.post(f"{API}/scripts", json={"name": name, "script": "def f():\n    return 3\n"}
                      ).status_code == 201
        assert o.post(f"{API}/scripts/{name}/grants", json={"group": "analysts"}
                      ).status_code == 200
        assert_error(o.put(f"{groups}/analysts/members/{member}"), 403, 3001)
    run = f"{API}/do-eval/{name}/{owner}"
    with server.client(member, member_pw) as m:
        assert_error(m.post(run), 404)
        r = admin.put(f"{groups}/Analysts/members/{member.lower()}")
        assert r.status_code == 200 and r.json()["result"] == {"group": "ANALYSTS", "user": member}
        assert m.get(f"{USERS}/me").json()["result"]["groups"] == ["ANALYSTS"]
        assert m.post(run).json() == {"result": 3}  # at once: membership is looked up per run
        listed = {g["name"]: g["members"] for g in admin.get(groups).json()["items"]}
        assert member in listed["ANALYSTS"] and member not in listed.get("ADMIN", [])
        assert admin.delete(f"{groups}/analysts/members/{member}").status_code == 200
        assert_error(admin.delete(f"{groups}/analysts/members/{member}"), 404)
        assert_error(m.post(run), 404)
        # Admin is the group ADMIN: joining it is the role, and a grant to it reaches admins.
        assert admin.put(f"{groups}/ADMIN/members/{member}").status_code == 200
        me = m.get(f"{USERS}/me").json()["result"]
        assert me["admin"] is True and me["groups"] == ["ADMIN"]
        assert m.get(USERS).status_code == 200
        with server.client(owner, owner_pw) as o:
            assert o.post(f"{API}/scripts/{name}/grants", json={"group": "admin"}
                          ).status_code == 200
        assert m.post(run).json() == {"result": 3}
        assert admin.delete(f"{groups}/ADMIN/members/{member}").status_code == 200
        assert_error(m.get(USERS), 403, 3001)
        assert_error(m.post(run), 404)
    me_admin = admin.get(f"{USERS}/me").json()["result"]["username"]
    assert_error(admin.delete(f"{groups}/ADMIN/members/{me_admin}"), 400)
    assert_error(admin.put(f"{groups}/PUBLIC/members/{member}"), 400)
    assert_error(admin.put(f"{groups}/analysts/members/NOBODY_HERE"), 404)
