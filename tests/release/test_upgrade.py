"""Upgrading in place: a data folder (SQLite metadata) and a PostgreSQL metadata database
made by an earlier epe are opened by the current code, migrated, and serve everything they
held: passwords, tokens issued before, scripts and grants, tables, datastores, finished
jobs with their results and logs, the audit trail; and they take new work.

The earlier versions are not fixtures: each is checked out from this repository's history
and run (tests/release/history.py says which and how), so what it wrote is what that
version really writes.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from epe.store import open_store
from tests.release import history
from tests.serverproc import API, EpeServer, wait_for
from tests.unit.test_migrations import current_revision, head_revision, schema_diff

AUDIT = "/omlusers/api/v1/audit"
SALES = "ID,REGION,AMOUNT\n1,north,10.5\n2,south,20.25\n3,north,7\n4,east,1.125\n"
SCRIPTS = {
    "total": "def total(dat):\n"
             "    return {'rows': int(len(dat)), 'amount': float(dat['AMOUNT'].sum())}\n",
    "greet": "def greet(name='you'):\n    return 'hello ' + name\n",
    "keep": "def keep():\n"
            "    import oml\n"
            "    import pandas as pd\n"
            "    oml.ds.save(objs={'df': pd.DataFrame({'x': [1, 2, 3]}),\n"
            "                      'weights': {'a': 1.5, 'b': [1, 2]}},\n"
            "                name='MODELS', description='kept across upgrades', grantable=True)\n"
            "    return 'saved'\n",
    "fetch": "def fetch(owner=None):\n"
             "    import oml\n"
             "    got = oml.ds.load(name='MODELS', owner=owner, to_globals=False)\n"
             "    return {'x': [int(v) for v in got['df']['x']], 'weights': got['weights']}\n",
}
FETCHED = {"x": [1, 2, 3], "weights": {"a": 1.5, "b": [1, 2]}}


def cases() -> list[Any]:
    """Each old version, with SQLite metadata and (where it had it) PostgreSQL's."""
    try:
        versions = history.old_versions()
    except history.HistoryMissing as e:  # fail in the test, with the reason, not here
        return [pytest.param(str(e), "sqlite", id="history")]
    params = []
    for version in versions:
        backends = ["sqlite"]
        if history.supports_postgresql_metadata(version):
            backends.append("postgresql")
        params += [pytest.param(version, backend, id=f"{version.label}-{backend}")
                   for backend in backends]
    return params


@pytest.fixture(scope="module")
def old_python(tmp_path_factory: pytest.TempPathFactory) -> Callable[[history.OldVersion], Path]:
    """The Python that runs an old version, each checked out once for the module."""
    root = tmp_path_factory.mktemp("old-versions")
    installed: dict[str, Path] = {}

    def python(version: history.OldVersion) -> Path:
        if version.commit not in installed:
            installed[version.commit] = history.install(version, root / version.short)
        return installed[version.commit]

    return python


@pytest.mark.parametrize(("version", "backend"), cases())
def test_an_old_version_s_data_is_upgraded_in_place_and_served(
        version: history.OldVersion | str, backend: str, request: pytest.FixtureRequest,
        old_python: Callable[[history.OldVersion], Path], tmp_path: Path) -> None:
    if isinstance(version, str):  # this checkout cannot give the old version
        pytest.fail(version)
    env = {"EPE_WORKERS": "1"}  # one worker a user is all this needs
    if backend == "postgresql":
        postgres = request.getfixturevalue("postgres")
        env["EPE_METADATA_URL"] = url = postgres.new_database("upgrade")
        request.addfinalizer(lambda: postgres.drop_database(url))
    data = tmp_path / "data"

    old = EpeServer(data, env, epe=(str(old_python(version)), "-m", "epe")).start()
    try:
        held = fill(old)
    finally:
        stop(old)

    database = env.get("EPE_METADATA_URL", f"sqlite:///{data / 'metadata.sqlite'}")
    newest, before_newest = history.revision_of(history.newest_migration())
    if version.label == f"before {history.newest_migration().stem}":
        assert migrated_to(database) == before_newest  # so the newest has something to do

    new = EpeServer(data, env).start()
    try:
        check(new, held)
    finally:
        stop(new)

    assert migrated_to(database) == newest
    store = open_store(database)
    try:
        assert current_revision(store) == head_revision(store) == newest
        assert schema_diff(store) == [], "the upgraded schema is not the declared one"
    finally:
        store.close()


def fill(srv: EpeServer) -> dict[str, Any]:
    """Give the old server one of everything it keeps; what it answered about each."""
    alice, alice_pw = srv.add_user(admin=True)
    bob, bob_pw = srv.add_user()
    token = srv.token(alice, alice_pw)
    with srv.http(headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.put(f"{API}/tables/SALES", content=SALES.encode(),
                  headers={"Content-Type": "text/csv"})
        assert r.status_code == 201, r.text
        for name, source in SCRIPTS.items():
            r = c.post(f"{API}/scripts", json={"name": name, "script": source,
                                               "description": f"{name}, from the old version"})
            assert r.status_code == 201, r.text
        r = c.post(f"{API}/scripts", json={"name": "everyone_greet", "isGlobal": True,
                                           "script": SCRIPTS["greet"]})
        assert r.status_code == 201, r.text
        for script in ("greet", "fetch"):
            r = c.post(f"{API}/scripts/{script}/grants", json={"user": bob})
            assert r.status_code == 200, r.text
        assert c.post(f"{API}/do-eval/keep").json() == {"result": "saved"}
        assert c.post(f"{API}/datastores/MODELS/grants", json={"user": bob}).status_code == 200
        job = c.post(f"{API}/table-apply/total",
                     json={"input": "select * from SALES", "asyncFlag": True})
        assert job.status_code == 201, job.text
        job_url = httpx.URL(job.headers["Location"]).path  # the new server has another port
        wait_for(lambda: c.get(job_url).status_code == 302, timeout=120)
        held = {
            "users": (alice, alice_pw, bob, bob_pw), "token": token, "job": job_url,
            "scripts": listing(c, "scripts"),
            "table": c.get(f"{API}/tables/SALES").json(),
            "rows": c.post(f"{API}/query", json={"input": "select * from SALES order by ID"}
                           ).json(),
            "datastore": c.get(f"{API}/datastores/MODELS").json(),
            "result": c.get(f"{job_url}/result").json(),
            "log": c.get(f"{job_url}/log").json(),
            "audit": c.get(AUDIT, params={"limit": 1000}).json()["result"]["items"],
        }
    assert held["result"] == {"result": {"rows": 4, "amount": 38.875}}, held["result"]
    assert held["audit"], "the old version audited nothing"
    return held


def kept(new: Any, old: Any) -> bool:
    """Whether ``new`` says all that ``old`` said, the same way: fields a newer version
    adds to an object (a script's group grantees) are allowed, nothing may change."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and kept(new[k], v)
                                             for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(
            kept(n, o) for n, o in zip(new, old, strict=True))
    return bool(new == old)


def check(srv: EpeServer, held: dict[str, Any]) -> None:
    """The new server serves all of it, to the same clients, and takes new work."""
    alice, alice_pw, bob, bob_pw = held["users"]
    # A token the old version issued is still good (the signing key was kept).
    with srv.http(headers={"Authorization": f"Bearer {held['token']}"}) as c:
        assert kept(listing(c, "scripts"), held["scripts"]), listing(c, "scripts")
    with srv.client(alice, alice_pw) as c:
        assert kept(c.get(f"{API}/tables/SALES").json(), held["table"])
        assert c.post(f"{API}/query", json={"input": "select * from SALES order by ID"}
                      ).json() == held["rows"]
        assert kept(c.get(f"{API}/datastores/MODELS").json(), held["datastore"])
        assert c.post(f"{API}/do-eval/fetch").json() == {"result": FETCHED}
        job = held["job"]
        assert c.get(job).status_code == 302
        assert c.get(f"{job}/result").json() == held["result"]
        assert c.get(f"{job}/log").json() == held["log"]
        jobs = {j["job_id"]: j["status"] for j in c.get(f"{API}/jobs").json()["result"]}
        assert jobs[job.rsplit("/", 1)[1]] == "FINISH"
        # The old entries, as the old version showed them (new fields may have come since).
        audit = {e["id"]: e for e in c.get(AUDIT, params={"limit": 1000}).json()["result"]["items"]}
        for entry in held["audit"]:
            assert {k: audit[entry["id"]].get(k) for k in entry} == entry
        # New work: a new script, a new async job over the old table.
        r = c.post(f"{API}/scripts", json={"name": "after", "script": SCRIPTS["greet"]})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/table-apply/total",
                   json={"input": "select * from SALES", "asyncFlag": True})
        assert r.status_code == 201, r.text
        url = r.headers["Location"]
        wait_for(lambda: c.get(url).status_code == 302, timeout=120)
        assert c.get(f"{url}/result").json() == held["result"]
    with srv.client(bob, bob_pw) as c:  # grants held: a script, a datastore, a global
        assert c.post(f"{API}/do-eval/greet/{alice}").json() == {"result": "hello you"}
        assert c.post(f"{API}/do-eval/everyone_greet").json() == {"result": "hello you"}
        r = c.post(f"{API}/do-eval/fetch/{alice}", json={"parameters": f'{{"owner":"{alice}"}}'})
        assert r.json() == {"result": FETCHED}, r.text


def migrated_to(database: str) -> str:
    """The migration a database is at, read as it is (opening it as a store migrates it)."""
    query = "SELECT version_num FROM alembic_version"
    if database.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database.removeprefix("sqlite:///"))) as conn:
            return str(conn.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(database) as pg:
        row = pg.execute(query).fetchone()
        assert row is not None
        return str(row[0])


def stop(srv: EpeServer) -> None:
    """Stop it as an operator would, and see it stop cleanly (uvicorn ends by the signal
    it was stopped with, once it has shut down)."""
    assert srv.stop() in (0, -signal.SIGTERM), "".join(srv.output)


def listing(c: httpx.Client, what: str) -> list[dict[str, Any]]:
    r = c.get(f"{API}/{what}")
    assert r.status_code == 200, r.text
    return sorted(r.json()["result"], key=lambda item: (item["name"], item["owner"]))
