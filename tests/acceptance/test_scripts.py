"""The script repository (docs/api.md#scripts): CRUD, global scripts,
lookup order, grants, and who may see what. Under both API versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.serverproc import ROOT, EpeServer, assert_error, unique_name

VERSIONS = ["v1", "v2"]
NewClient = Callable[[], tuple[str, httpx.Client]]


@pytest.fixture
def new_client(server: EpeServer, admin: httpx.Client) -> Iterator[NewClient]:
    """A fresh user (made through the admin API) and a client logged in as them."""
    made: list[httpx.Client] = []

    def make() -> tuple[str, httpx.Client]:
        name, password = unique_name("S"), "pw-Secret1"
        r = admin.post("/omlusers/api/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        client = server.client(name, password)
        made.append(client)
        return name.upper(), client

    yield make
    for c in made:
        c.close()


@pytest.fixture(params=VERSIONS)
def api(request: pytest.FixtureRequest) -> str:
    return f"{ROOT}/{request.param}"


def returning(value: str) -> str:
    """A script whose function returns the Python expression ``value``."""
    return f"def f():\n    return {value}\n"


def create(c: httpx.Client, api: str, name: str, source: str, **extra: Any) -> httpx.Response:
    return c.post(f"{api}/scripts", json={"name": name, "script": source, **extra})


def created(c: httpx.Client, api: str, name: str, source: str, **extra: Any) -> dict[str, Any]:
    r = create(c, api, name, source, **extra)
    assert r.status_code == 201, r.text
    return dict(r.json()["result"])


def listed(c: httpx.Client, api: str) -> list[dict[str, Any]]:
    r = c.get(f"{api}/scripts")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"}
    return list(body["result"])


def names_owners(c: httpx.Client, api: str) -> set[tuple[str, str]]:
    return {(s["name"], s["owner"]) for s in listed(c, api)}


def run(c: httpx.Client, api: str, name: str, owner: str | None = None) -> httpx.Response:
    path = f"{api}/do-eval/{name}" + (f"/{owner}" if owner else "")
    return c.post(path, json={})


def result_of(c: httpx.Client, api: str, name: str, owner: str | None = None) -> Any:
    r = run(c, api, name, owner)
    assert r.status_code == 200, r.text
    return r.json()["result"]


# -- create, get, list, delete -------------------------------------------------------


def test_create_get_list_delete(api: str, new_client: NewClient) -> None:
    user, c = new_client()
    source = "import math\n\ndef area(r=1):\n    return math.pi * r * r\n"
    info = created(c, api, "area", source, description="circle area")
    assert info["name"] == "area"
    assert info["owner"] == user

    for path in (f"{api}/scripts/area", f"{api}/scripts/area/{user}",
                 f"{api}/scripts/area/{user.lower()}"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text)
        got = r.json()["result"]
        assert got["script"] == source
        assert got["name"] == "area" and got["owner"] == user
        assert got["description"] == "circle area"

    entries = [s for s in listed(c, api) if s["name"] == "area" and s["owner"] == user]
    assert len(entries) == 1
    entry = entries[0]
    assert {"name", "owner", "description", "date"} <= set(entry)
    assert entry["description"] == "circle area"
    assert isinstance(entry["date"], str)
    dt.datetime.fromisoformat(entry["date"].replace("Z", "+00:00"))  # an ISO-8601 date

    assert c.post(f"{api}/do-eval/area", json={"parameters": '{"r": 2}'}).json() == \
        {"result": pytest.approx(12.566370614359172)}

    r = c.delete(f"{api}/scripts/area")
    assert r.status_code == 200, r.text
    assert_error(c.get(f"{api}/scripts/area"), 404)
    assert_error(run(c, api, "area"), 404)
    assert ("area", user) not in names_owners(c, api)
    assert_error(c.delete(f"{api}/scripts/area"), 404)


def test_description_is_optional(api: str, new_client: NewClient) -> None:
    _user, c = new_client()
    created(c, api, "nodesc", returning("1"))
    entry = next(s for s in listed(c, api) if s["name"] == "nodesc")
    assert entry["description"] in ("", None)


def test_overwrite(api: str, new_client: NewClient) -> None:
    _user, c = new_client()
    created(c, api, "over", returning("'first'"))
    assert_error(create(c, api, "over", returning("'second'")), 409)
    assert_error(create(c, api, "over", returning("'second'"), overwrite=False), 409)
    assert result_of(c, api, "over") == "first"
    created(c, api, "over", returning("'second'"), overwrite=True)
    assert c.get(f"{api}/scripts/over").json()["result"]["script"] == returning("'second'")
    assert result_of(c, api, "over") == "second"
    # Overwriting replaces; it does not add a second entry.
    assert [s["name"] for s in listed(c, api)].count("over") == 1


def test_script_that_does_not_parse_is_400_naming_the_line(api: str,
                                                           new_client: NewClient) -> None:
    _user, c = new_client()
    source = "import os\n\ndef f():\n    return 1 +\n"
    body = assert_error(create(c, api, "broken", source), 400)
    assert "line 4" in body["errorMessage"]
    assert_error(c.get(f"{api}/scripts/broken"), 404)


@pytest.mark.parametrize("source", ["import os\n", "# nothing\n", "print('hi')\n",
                                    "class C:\n    pass\n"])
def test_script_with_no_function_is_400(api: str, new_client: NewClient, source: str) -> None:
    _user, c = new_client()
    assert_error(create(c, api, "nofunc", source), 400)
    assert_error(c.get(f"{api}/scripts/nofunc"), 404)


@pytest.mark.parametrize("source", ["x = 1\n", "x = 'text'\nn = [1, 2]\n"])
def test_script_binding_only_literals_is_400(api: str, new_client: NewClient,
                                             source: str) -> None:
    # No name can be bound to a callable here: a literal never is one.
    _user, c = new_client()
    assert_error(create(c, api, "literal", source), 400)


@pytest.mark.parametrize("name", ["has space", "a/b", "x" * 129, "semi;colon", "quote'"])
def test_invalid_script_names_are_400(api: str, new_client: NewClient, name: str) -> None:
    _user, c = new_client()
    assert_error(create(c, api, name, returning("1")), 400)
    assert name not in {s["name"] for s in listed(c, api)}


@pytest.mark.parametrize("body", [
    {"script": "def f():\n    return 1\n"},
    {"name": "x"},
    {"name": "x", "script": ""},
    {"name": 5, "script": "def f():\n    return 1\n"},
    {"name": "x", "script": "def f():\n    return 1\n", "isGlobal": "yes"},
    {"name": "x", "script": "def f():\n    return 1\n", "overwrite": "true"},
], ids=["no-name", "no-script", "empty-script", "int-name", "string-global", "string-overwrite"])
def test_malformed_create_bodies_are_400(api: str, new_client: NewClient,
                                         body: dict[str, Any]) -> None:
    _user, c = new_client()
    assert_error(c.post(f"{api}/scripts", json=body), 400)


def test_script_endpoints_need_a_token(api: str, server: EpeServer) -> None:
    with server.http() as c:
        assert_error(c.get(f"{api}/scripts"), 401)
        assert_error(c.post(f"{api}/scripts", json={"name": "x", "script": returning("1")}), 401)
        assert_error(c.get(f"{api}/scripts/x"), 401)
        assert_error(c.delete(f"{api}/scripts/x"), 401)
        assert_error(c.post(f"{api}/scripts/x/grants", json={"user": None}), 401)


# -- global scripts and lookup order ------------------------------------------------


def test_global_scripts(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    _b, cb = new_client()
    name = unique_name("glob")
    info = created(ca, api, name, returning("'from PYQSYS'"), isGlobal=True)
    assert info["owner"] == "PYQSYS"
    for c in (ca, cb):
        assert (name, "PYQSYS") in names_owners(c, api)
        assert result_of(c, api, name) == "from PYQSYS"
        assert result_of(c, api, name, "PYQSYS") == "from PYQSYS"
        assert result_of(c, api, name, "pyqsys") == "from PYQSYS"
        got = c.get(f"{api}/scripts/{name}/PYQSYS")
        assert got.status_code == 200, got.text
        assert got.json()["result"]["script"] == returning("'from PYQSYS'")
    # A global script is not the creator's private one.
    assert_error(run(ca, api, name, a), 404)
    # Deleting it needs isGlobal=true.
    assert_error(ca.delete(f"{api}/scripts/{name}"), 404)
    r = ca.delete(f"{api}/scripts/{name}", params={"isGlobal": "true"})
    assert r.status_code == 200, r.text
    assert_error(run(cb, api, name), 404)
    assert (name, "PYQSYS") not in names_owners(cb, api)


def test_lookup_order_own_script_first_then_global(api: str, new_client: NewClient) -> None:
    _a, ca = new_client()
    b, cb = new_client()
    _c, cc = new_client()
    name = unique_name("both")
    created(ca, api, name, returning("'global'"), isGlobal=True)
    created(cb, api, name, returning("'own'"))
    assert result_of(cb, api, name) == "own"
    assert cb.get(f"{api}/scripts/{name}").json()["result"]["owner"] == b
    assert result_of(cb, api, name, "PYQSYS") == "global"
    assert result_of(cc, api, name) == "global"
    # B's list holds both.
    assert {(name, b), (name, "PYQSYS")} <= names_owners(cb, api)
    # Once B's own script is gone, the global one answers.
    assert cb.delete(f"{api}/scripts/{name}").status_code == 200
    assert result_of(cb, api, name) == "global"
    assert ca.delete(f"{api}/scripts/{name}", params={"isGlobal": "true"}).status_code == 200


# -- isolation and grants ------------------------------------------------------------


def assert_hidden_from(cb: httpx.Client, api: str, name: str, owner: str) -> None:
    """``owner``'s script ``name`` looks exactly like a missing one to ``cb``."""
    assert (name, owner) not in names_owners(cb, api)
    hidden = assert_error(cb.get(f"{api}/scripts/{name}/{owner}"), 404)
    missing = assert_error(cb.get(f"{api}/scripts/{unique_name('none')}/{owner}"), 404)
    assert hidden["errorCode"] == missing["errorCode"]
    assert_error(run(cb, api, name, owner), 404)
    assert_error(run(cb, api, name), 404)
    assert_error(cb.get(f"{api}/scripts/{name}"), 404)


def test_isolation_and_grants(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    b, cb = new_client()
    _c, cc = new_client()
    name = "secret"
    created(ca, api, name, returning("'A only'"))

    assert_hidden_from(cb, api, name, a)
    assert_hidden_from(cb, api, name, a.lower())

    r = ca.post(f"{api}/scripts/{name}/grants", json={"user": b})
    assert r.status_code == 200, r.text
    assert (name, a) in names_owners(cb, api)
    assert result_of(cb, api, name, a) == "A only"
    got = cb.get(f"{api}/scripts/{name}/{a}")
    assert got.status_code == 200, got.text
    assert got.json()["result"]["script"] == returning("'A only'")
    # Granted to B, not to C.
    assert_hidden_from(cc, api, name, a)
    # Without an owner, B's lookup is B's own then global: A's script is not found.
    assert_error(run(cb, api, name), 404)

    r = ca.delete(f"{api}/scripts/{name}/grants/{b}")
    assert r.status_code == 200, r.text
    assert_hidden_from(cb, api, name, a)
    assert result_of(ca, api, name) == "A only"


def test_grant_by_lower_case_name(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    b, cb = new_client()
    created(ca, api, "lc", returning("7"))
    assert ca.post(f"{api}/scripts/lc/grants", json={"user": b.lower()}).status_code == 200
    assert result_of(cb, api, "lc", a) == 7
    assert ca.delete(f"{api}/scripts/lc/grants/{b.lower()}").status_code == 200
    assert_hidden_from(cb, api, "lc", a)


def test_grant_to_everyone(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    _b, cb = new_client()
    _c, cc = new_client()
    created(ca, api, "shared", returning("'for all'"))
    r = ca.post(f"{api}/scripts/shared/grants", json={"user": None})
    assert r.status_code == 200, r.text
    for c in (cb, cc):
        assert ("shared", a) in names_owners(c, api)
        assert result_of(c, api, "shared", a) == "for all"
    # OML calls "everyone" PUBLIC; taking the grant back hides it again.
    r = ca.delete(f"{api}/scripts/shared/grants/PUBLIC")
    assert r.status_code == 200, r.text
    for c in (cb, cc):
        assert_hidden_from(c, api, "shared", a)


def test_only_the_owner_can_grant(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    b, cb = new_client()
    _c, cc = new_client()
    created(ca, api, "mine", returning("1"))
    assert_error(cb.post(f"{api}/scripts/mine/grants", json={"user": b}), 404)
    assert_error(cb.post(f"{api}/scripts/mine/grants", json={"user": None}), 404)
    assert_hidden_from(cb, api, "mine", a)
    # Even a grantee cannot pass the script on, or take the grant back.
    assert ca.post(f"{api}/scripts/mine/grants", json={"user": b}).status_code == 200
    assert_error(cb.post(f"{api}/scripts/mine/grants", json={"user": None}), 404)
    assert_hidden_from(cc, api, "mine", a)
    assert_error(cb.delete(f"{api}/scripts/mine/grants/{b}"), 404)
    assert result_of(cb, api, "mine", a) == 1


def test_grant_of_a_missing_script_is_404(api: str, new_client: NewClient) -> None:
    _a, ca = new_client()
    b, _cb = new_client()
    assert_error(ca.post(f"{api}/scripts/nothing/grants", json={"user": b}), 404)
    assert_error(ca.delete(f"{api}/scripts/nothing/grants/{b}"), 404)


def test_other_user_cannot_delete_a_private_script(api: str, new_client: NewClient) -> None:
    a, ca = new_client()
    _b, cb = new_client()
    created(ca, api, "keep", returning("'still here'"))
    assert_error(cb.delete(f"{api}/scripts/keep"), 404)
    assert_error(cb.delete(f"{api}/scripts/keep", params={"isGlobal": "true"}), 404)
    assert result_of(ca, api, "keep") == "still here"
    # Not even once it is granted to them.
    assert ca.post(f"{api}/scripts/keep/grants", json={"user": None}).status_code == 200
    assert_error(cb.delete(f"{api}/scripts/keep"), 404)
    assert result_of(ca, api, "keep") == "still here"
    assert result_of(cb, api, "keep", a) == "still here"


def test_other_user_cannot_delete_a_global_script(api: str, new_client: NewClient) -> None:
    _a, ca = new_client()
    _b, cb = new_client()
    name = unique_name("gkeep")
    created(ca, api, name, returning("'global, kept'"), isGlobal=True)
    assert_error(cb.delete(f"{api}/scripts/{name}", params={"isGlobal": "true"}), 404)
    assert_error(cb.delete(f"{api}/scripts/{name}"), 404)
    assert result_of(cb, api, name) == "global, kept"
    assert result_of(ca, api, name, "PYQSYS") == "global, kept"
    # Nor replace it.
    assert_error(create(cb, api, name, returning("'hijacked'"), isGlobal=True, overwrite=True),
                 409)
    assert result_of(ca, api, name) == "global, kept"
    assert ca.delete(f"{api}/scripts/{name}", params={"isGlobal": "true"}).status_code == 200


def test_scripts_are_the_same_under_v1_and_v2(new_client: NewClient) -> None:
    _a, ca = new_client()
    created(ca, f"{ROOT}/v1", "bothversions", returning("'v1 made me'"))
    assert result_of(ca, f"{ROOT}/v2", "bothversions") == "v1 made me"
    assert ca.delete(f"{ROOT}/v2/scripts/bothversions").status_code == 200
    assert_error(run(ca, f"{ROOT}/v1", "bothversions"), 404)


def test_v1_answers_are_deprecated_and_v2_answers_are_not(new_client: NewClient) -> None:
    _a, ca = new_client()
    v1, v2 = f"{ROOT}/v1", f"{ROOT}/v2"
    for r in (create(ca, v1, "dep", returning("1")), ca.get(f"{v1}/scripts"),
              ca.get(f"{v1}/scripts/dep"), run(ca, v1, "dep"),
              ca.get(f"{v1}/scripts/nothing")):
        assert r.headers.get("Deprecation"), r.request.url
        assert r.headers.get("Sunset"), r.request.url
    for r in (ca.get(f"{v2}/scripts"), ca.get(f"{v2}/scripts/dep"), run(ca, v2, "dep"),
              ca.get(f"{v2}/scripts/nothing")):
        assert "Deprecation" not in r.headers, r.request.url
        assert "Sunset" not in r.headers, r.request.url
