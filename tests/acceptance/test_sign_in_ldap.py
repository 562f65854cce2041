"""Signing in through a real OpenLDAP directory (docs/sign-in.md#ldap): OML's password
grant for curl-style clients, dbt-oracle's client and ``from epe import oml``; users
made at first sign-in; admins and groups from the directory; a disabled account
refused at sign-in and at refresh; names escaped; the directory down is a 503."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import ldap3
import pytest

from epe import oml
from tests.ldapserver import (
    ACTIVE_FILTER,
    GROUPS,
    LOCKED,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PW,
    Slapd,
    user_dn,
)
from tests.pgserver import free_port
from tests.serverproc import API, TOKEN_URL, EpeServer, assert_error, unique_name

ME = "/omlusers/api/v1/users/me"


def search_settings(slapd: Slapd) -> dict[str, str]:
    """Search-then-bind over LDAPS, as most companies' directories are set up."""
    return {"EPE_LDAP_URL": slapd.ldaps_url, "EPE_LDAP_CA_FILE": slapd.ca_file,
            "EPE_LDAP_BIND_DN": SERVICE_DN, "EPE_LDAP_BIND_PASSWORD": SERVICE_PW,
            "EPE_LDAP_USER_BASE": PEOPLE, "EPE_LDAP_USER_FILTER": ACTIVE_FILTER,
            "EPE_LDAP_GROUP_BASE": GROUPS, "EPE_LDAP_ADMIN_GROUP": "epe-admins"}


@pytest.fixture(scope="module")
def ldap_server(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EpeServer]:
    srv = EpeServer(tmp_path_factory.mktemp("epe-ldap"), search_settings(slapd)).start()
    yield srv
    srv.stop()


def grant(srv: EpeServer, user: str, password: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "password", "username": user,
                                       "password": password})


def signed_in(srv: EpeServer, user: str, password: str) -> httpx.Client:
    r = grant(srv, user, password)
    assert r.status_code == 200, r.text
    return srv.http(headers={"Authorization": f"Bearer {r.json()['accessToken']}"})


IDENTITY = ("username", "admin", "groups", "source", "via", "scope")


def me(c: httpx.Client) -> dict[str, object]:
    """Who ``users/me`` says the caller is (its limits and usage are the fair share's)."""
    r = c.get(ME)
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json()["result"].items() if k in IDENTITY}


def refresh(srv: EpeServer, token: str) -> httpx.Response:
    with srv.http() as c:
        return c.post(TOKEN_URL, json={"grant_type": "refresh_token", "token": token})


def test_first_sign_in_creates_the_user_with_the_directory_groups(ldap_server: EpeServer
                                                                   ) -> None:
    with signed_in(ldap_server, "alice", "alice-pw") as c:
        assert me(c) == {"username": "ALICE", "admin": False, "groups": ["DATA-SCIENCE"],
                         "source": "ldap", "via": "epe", "scope": None}
        # A place for tables like any user's, and a run in a worker of their own.
        assert c.put(f"{API}/tables/T1", content="A\n1\n",
                     headers={"Content-Type": "text/csv"}).status_code == 201
        r = c.post(f"{API}/do-eval", json={"script": "def f():\n    return 7\n"})
        assert r.status_code == 200 and r.json() == {"result": 7}, r.text
    with sqlite3.connect(ldap_server.data_dir / "metadata.sqlite") as db:
        row = db.execute("SELECT source, external_id, password_hash FROM users "
                         "WHERE name = 'ALICE'").fetchone()
        uid = db.execute("SELECT uid FROM worker_uids WHERE owner = 'ALICE'").fetchone()
    assert row == ("ldap", "alice", "")  # no password of theirs is kept here
    with ldap_server.http() as h:
        isolated = h.get("/health").json()["tenantIsolation"]
    assert (uid is not None) == isolated  # given at first sign-in, where users are isolated


def test_the_directory_admin_group_makes_an_admin(ldap_server: EpeServer) -> None:
    with signed_in(ldap_server, "carol", "carol-pw") as c:
        shown = me(c)
        assert shown["admin"] is True
        assert shown["groups"] == ["ADMIN", "DATA-SCIENCE", "EPE-ADMINS"]
        users = c.get("/omlusers/api/v1/users")
        assert users.status_code == 200 and "CAROL" in [u["username"]
                                                         for u in users.json()["result"]]


def test_wrong_passwords_disabled_accounts_and_filter_characters_sign_nobody_in(
        ldap_server: EpeServer) -> None:
    answers = [grant(ldap_server, user, password) for user, password in [
        ("alice", "wrong"), ("nobody", "alice-pw"), ("alice", ""),
        ("dave", "dave-pw"),  # locked in the directory
        # Unescaped, each of these would find alice's entry and bind with her password.
        ("al*ce", "alice-pw"), ("*", "alice-pw"), ("*)(uid=*", "alice-pw"),
        ("alice)(|(uid=*", "alice-pw"), ("ali\\2a", "alice-pw")]]
    for r in answers:
        assert assert_error(r, 401)["errorMessage"] in (
            "invalid username or password",
            "invalid request: 'password': String should have at least 1 character"), r.text


def test_a_disabled_account_is_refused_at_refresh_and_at_sign_in(ldap_server: EpeServer,
                                                                   slapd: Slapd) -> None:
    token = grant(ldap_server, "bob", "bob-pw").json()["accessToken"]
    assert refresh(ldap_server, token).status_code == 200
    slapd.modify(user_dn("bob"), {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [LOCKED])]})
    try:
        body = assert_error(refresh(ldap_server, token), 401)
        assert "no longer active in the directory" in body["errorMessage"]
        assert_error(grant(ldap_server, "bob", "bob-pw"), 401)
    finally:
        slapd.modify(user_dn("bob"), {"pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]})
    assert grant(ldap_server, "bob", "bob-pw").status_code == 200


def test_a_script_granted_to_a_group_runs_for_members_until_membership_ends(
        ldap_server: EpeServer, slapd: Slapd) -> None:
    owner, owner_pw = ldap_server.add_user()  # a local account shares with a directory group
    name = unique_name("team_script")
    with ldap_server.client(owner, owner_pw) as c:
        r = c.post(f"{API}/scripts", json={"name": name, "script": "def f():\n    return 'ok'\n"})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/scripts/{name}/grants", json={"group": "Data-Science"})
        assert r.status_code == 200 and r.json()["result"] == {"name": name,
                                                                "group": "DATA-SCIENCE"}
        listed = {s["name"]: s for s in c.get(f"{API}/scripts").json()["result"]}
        assert listed[name]["groupGrantees"] == ["DATA-SCIENCE"]
    erin_token = grant(ldap_server, "erin", "erin-pw").json()["accessToken"]
    run = f"{API}/do-eval/{name}/{owner}"
    with ldap_server.http(headers={"Authorization": f"Bearer {erin_token}"}) as erin, \
            signed_in(ldap_server, "bob", "bob-pw") as bob:
        assert erin.post(run).json() == {"result": "ok"}
        assert name in [s["name"] for s in erin.get(f"{API}/scripts").json()["result"]]
        assert_error(bob.post(run), 404)  # not a member: as if there were no such script
    group = f"cn=data-science,{GROUPS}"
    slapd.modify(group, {"member": [(ldap3.MODIFY_DELETE, [user_dn("erin")])]})
    try:
        refreshed = refresh(ldap_server, erin_token)
        assert refreshed.status_code == 200, refreshed.text
        with ldap_server.http(headers={
                "Authorization": f"Bearer {refreshed.json()['accessToken']}"}) as erin:
            assert me(erin)["groups"] == []
            assert_error(erin.post(run), 404)
    finally:
        slapd.modify(group, {"member": [(ldap3.MODIFY_ADD, [user_dn("erin")])]})
    with ldap_server.client(owner, owner_pw) as c:
        assert c.delete(f"{API}/scripts/{name}/grants/group/data-science").status_code == 200
        assert_error(c.delete(f"{API}/scripts/{name}/grants/group/data-science"), 404)
    with signed_in(ldap_server, "erin", "erin-pw") as erin:
        assert me(erin)["groups"] == ["DATA-SCIENCE"]
        assert_error(erin.post(run), 404)  # the grant itself is gone now


def test_the_python_client_signs_in_and_grants_a_datastore_to_a_group(
        ldap_server: EpeServer) -> None:
    save = ("def f():\n    import oml\n"
            "    oml.ds.save({'m': [1, 2]}, 'team_ds', grantable=True, overwrite=True)\n"
            "    return 'saved'\n")
    oml.connect(ldap_server.url, "alice", "alice-pw")
    try:
        assert oml.do_eval(save) == "saved"
        oml.grant("team_ds", "datastore", group="data-science")
    finally:
        oml.disconnect()
    with signed_in(ldap_server, "erin", "erin-pw") as erin, \
            signed_in(ldap_server, "bob", "bob-pw") as bob:
        r = erin.get(f"{API}/datastores/team_ds/ALICE")
        assert r.status_code == 200 and r.json()["result"]["objects"][0]["name"] == "m", r.text
        assert_error(bob.get(f"{API}/datastores/team_ds/ALICE"), 404)
    oml.connect(ldap_server.url, "alice", "alice-pw")
    try:
        oml.revoke("team_ds", "datastore", group="DATA-SCIENCE")
    finally:
        oml.disconnect()
    with signed_in(ldap_server, "erin", "erin-pw") as erin:
        assert_error(erin.get(f"{API}/datastores/team_ds/ALICE"), 404)


def test_dbt_oracle_client_signs_in_with_directory_credentials(ldap_server: EpeServer) -> None:
    # What dbt-oracle's OracleOML4PYClient sends: a password grant, the script run, and
    # a refresh with the token under "token".
    headers = {"Accept": "application/json", "Content-type": "application/json"}
    with ldap_server.http() as h:
        r = h.post(TOKEN_URL, content=json.dumps({"grant_type": "password", "username": "alice",
                                                  "password": "alice-pw"}), headers=headers)
        assert r.status_code == 200, r.text
        token = r.json()["accessToken"]
        auth = {**headers, "Authorization": f"Bearer {token}"}
        name = unique_name("model") + "_dbt_py_script"
        r = h.post(f"{API}/scripts", headers=auth, content=json.dumps(
            {"name": name, "script": "def main(action, **session):\n    return action\n"}))
        assert r.status_code == 201, r.text
        r = h.post(f"/oml/api/py-scripts/v1/do-eval/{name}", headers=auth, content=json.dumps(
            {"service": "HIGH", "parameters": json.dumps({"action": "DBT RUN OML4PY"})}))
        assert r.status_code == 200 and r.json() == {"result": "DBT RUN OML4PY"}, r.text
        r = h.post(TOKEN_URL, headers=headers, content=json.dumps(
            {"grant_type": "refresh_token", "token": token}))
        assert r.status_code == 200 and r.json()["accessToken"] != token, r.text


def test_bind_as_the_user_over_start_tls(make_server: object, slapd: Slapd) -> None:
    srv = make_server(  # type: ignore[operator]
        EPE_LDAP_URL=slapd.url, EPE_LDAP_START_TLS="true", EPE_LDAP_CA_FILE=slapd.ca_file,
        EPE_LDAP_USER_DN=f"uid={{username}},{PEOPLE}", EPE_LDAP_USER_FILTER=ACTIVE_FILTER,
        EPE_LDAP_GROUP_BASE=GROUPS)
    with signed_in(srv, "jane.doe", "jane-pw") as c:
        assert me(c)["username"] == "JANE_DOE"  # a user name epe can carry
    with signed_in(srv, "alice", "alice-pw") as c:
        token = c.headers["Authorization"].split()[1]
        assert me(c)["groups"] == ["DATA-SCIENCE"]
    assert refresh(srv, token).status_code == 200  # checked again anonymously
    for user, password in [("alice", "wrong"), ("dave", "dave-pw"), ("alice,ou=x", "alice-pw")]:
        assert_error(grant(srv, user, password), 401)


def test_directory_down_is_503_and_local_admins_still_sign_in(make_server: object,
                                                              tmp_path: Path) -> None:
    srv = make_server(  # type: ignore[operator]
        EPE_LDAP_URL=f"ldap://127.0.0.1:{free_port()}",  # nothing listens there
        EPE_LDAP_USER_DN=f"uid={{username}},{PEOPLE}", EPE_LDAP_TIMEOUT="2")
    admin, password = srv.add_user(admin=True)
    r = grant(srv, "alice", "alice-pw")
    body = assert_error(r, 503, 5005)
    assert int(r.headers["Retry-After"]) >= 1
    assert "directory cannot be reached" in body["errorMessage"]
    with srv.client(admin, password) as c:
        assert me(c)["admin"] is True
        assert c.get("/omlusers/api/v1/users").status_code == 200


def test_a_directory_without_a_way_to_find_users_stops_the_server_at_start(
        tmp_path: Path, slapd: Slapd) -> None:
    srv = EpeServer(tmp_path / "data", {"EPE_LDAP_URL": slapd.url})
    with pytest.raises(RuntimeError) as refused:
        srv.start()
    assert "set EPE_LDAP_USER_DN" in str(refused.value)
