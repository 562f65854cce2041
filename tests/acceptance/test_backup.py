"""``epe backup`` while the server serves under load, ``epe restore`` into a new folder, and
a new server on it (docs/deploy.md#backups): the same users and passwords, tokens,
scripts and grants, tables (every type and value exactly), datastores (byte for byte),
models and their scoring endpoints, and finished jobs.
What the load changed while the backup was taken is whole in the copy, never torn: a
table rewritten again and again is one of its versions; a job that had not ended is
FAILED there, saying why."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import io
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from tests.acceptance.test_jobs import FAILING, QUICK, SLEEPER, job_id, result, submit
from tests.serverproc import API, EpeServer, assert_error, put_table, run_cli, wait_for

ARROW = {"Accept": "application/vnd.apache.arrow.stream"}
SAVE = ("def f(name, n, append=False):\n    import numpy as np, pandas as pd, oml\n"
        "    objs = {f'o{n}': np.arange(n, dtype='float64'),\n"
        "            f'df{n}': pd.DataFrame({'A': range(n), 'B': [str(i) for i in range(n)]})}\n"
        "    oml.ds.save(objs, name, append=append, overwrite=not append, grantable=True)\n"
        "    return n\n")
CHURN_ROWS = 500
OML = "/omlmod/v1"  # OML Services: models and their scoring endpoints (docs/models.md)
FIT = ("def f():\n    import oml, pandas as pd\n"
       "    from sklearn.linear_model import LogisticRegression\n"
       "    X = pd.DataFrame({'X': [0.0, 1.0, 2.0, 3.0]})\n"
       "    clf = LogisticRegression().fit(X, ['low', 'low', 'high', 'high'])\n"
       "    oml.ds.save({'clf': clf}, 'models', overwrite=True)\n    return 1\n")


def rich_table() -> bytes:
    """A Parquet file of many column types: they must come back as they were."""
    table = pa.table({
        "I": pa.array([1, None, 3], pa.int64()), "F": [1.5, float("nan"), None],
        "S": ["x", None, "é€"], "B": [True, False, None],
        "TS": pa.array([datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC), None,
                        datetime.datetime(1999, 12, 31, tzinfo=datetime.UTC)],
                       pa.timestamp("us", tz="UTC")),
        "D": [datetime.date(2020, 2, 29), None, datetime.date(1970, 1, 1)],
        "DEC": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.50")],
                        pa.decimal128(12, 2)),
        "L": [[1, 2], [], None], "ST": [{"a": 1, "b": "q"}, None, {"a": 2, "b": None}],
        "BIN": [b"\x00\xff", None, b""]})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def rows(c: httpx.Client, table: str) -> tuple[str, str]:
    """The table's columns and types, and every value exactly (as ``repr`` writes them:
    NaN included, bytes and decimals as they are). Not the Arrow stream's bytes: what a
    null slot's buffer holds is left undefined by Arrow, and differs from one query to the
    next."""
    r = c.post(f"{API}/query", json={"input": f"select * from {table} order by 1"},
               headers=ARROW)
    assert r.status_code == 200, r.text
    read = pa.ipc.open_stream(r.content).read_all()
    return str(read.schema), repr(read.to_pylist())


def objects(metadata: Path) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    """Every datastore object, its description and its bytes, straight from the store."""
    with contextlib.closing(sqlite3.connect(f"file:{metadata}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT d.owner, d.name, o.name, o.class_name, o.size, o.length, o.row_count, "
            "o.col_count, o.data FROM datastores d JOIN datastore_objects o "
            "ON o.datastore_id = d.id")
        return {(r[0], r[1], r[2]): r[3:] for r in found}


class Load(threading.Thread):
    """While the backup is taken: a table rewritten whole, a datastore appended to, and
    jobs submitted, as fast as the server takes them."""

    def __init__(self, c: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.stop = threading.Event()
        self.rounds = 0
        self.jobs: dict[str, int] = {}  # job id -> its n
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.rounds += 1
                n = self.rounds
                put_table(self.c, "CHURN?overwrite=true",
                          "V,I\n" + "".join(f"{n},{i}\n" for i in range(CHURN_ROWS)))
                r = self.c.post(f"{API}/do-eval", json={"script": SAVE, "parameters": json.dumps(
                    {"name": "growing", "n": n, "append": n > 1})})
                assert r.status_code == 200, r.text
                url = submit(self.c, f"{API}/do-eval",
                             {"script": QUICK, "parameters": json.dumps({"n": n})})
                self.jobs[job_id(url)] = n
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")


def test_a_backup_under_load_restores_into_a_server_with_the_same_objects(
        make_server: Callable[..., EpeServer], tmp_path: Path) -> None:
    srv = make_server(EPE_JOB_CONCURRENCY_LOW="1")
    alice, friend = srv.add_user(), srv.add_user()
    token = srv.token(*alice)  # issued before the backup: good after the restore
    with srv.client(*alice) as c, srv.client(*friend) as f:
        assert c.post(f"{API}/scripts", json={"name": "square", "script": QUICK}).status_code \
            == 201
        assert c.post(f"{API}/scripts/square/grants", json={"user": friend[0]}).status_code \
            == 200
        put_table(c, "NUMS", "G,X\na,1\nb,2\na,3\n")
        r = c.put(f"{API}/tables/RICH", content=rich_table(),
                  headers={"Content-Type": "application/vnd.apache.parquet"})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/do-eval", json={"script": SAVE,
                                             "parameters": json.dumps({"name": "box", "n": 7})})
        assert r.json() == {"result": 7}, r.text
        assert c.post(f"{API}/datastores/box/grants", json={"user": friend[0]}).status_code \
            == 200
        deploy_a_model(c)
        finished = [submit(c, f"{API}/do-eval/square", {"parameters": '{"n": 12}'}),
                    submit(c, f"{API}/do-eval", {"script": FAILING})]
        for url in finished:
            result(c, url)
        sleeping = submit(c, f"{API}/do-eval", {"script": SLEEPER})  # running at the backup
        before = snapshot(c, f, alice[0], finished)

        load = Load(c)
        load.start()
        try:  # the load goes on before, during and after the backup
            wait_for(lambda: load.rounds >= 3 or load.errors, 60)
            done = run_cli("backup", "--data-dir", str(srv.data_dir),
                           "--to", str(tmp_path / "backup"), env=srv.env)
            taken = load.rounds
            wait_for(lambda: load.rounds > taken + 1 or load.errors, 60)
        finally:
            load.stop.set()
            load.join(60)
        assert not load.errors, load.errors
        assert "written to" in done.stdout, done
        # The server wrote it, through its control socket: it holds the tables.
        assert any("epe.backup: backup written to" in line for line in srv.output)
        assert c.delete(sleeping).status_code == 200

    # A backup is refused where one exists; a folder that is not a backup, restoring.
    refused = run_cli("backup", "--data-dir", str(srv.data_dir), "--to",
                      str(tmp_path / "backup"), env=srv.env, check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr, refused
    refused = run_cli("restore", "--from", str(tmp_path), "--data-dir",
                      str(tmp_path / "nowhere"), env=srv.env, check=False)
    assert refused.returncode == 1 and "not a backup" in refused.stderr, refused

    restored_dir = tmp_path / "restored"
    done = run_cli("restore", "--from", str(tmp_path / "backup"), "--data-dir",
                   str(restored_dir), env=srv.env)
    assert "restored" in done.stdout, done
    new = EpeServer(restored_dir).start()
    try:
        with new.client(*alice) as c, new.client(*friend) as f, \
                new.http(headers={"Authorization": f"Bearer {token}"}) as by_token:
            assert snapshot(c, f, alice[0], finished) == before
            assert by_token.get(f"{API}/scripts").status_code == 200
            check_the_load(c, load, taken)
            r = c.get(f"{API}/jobs/{job_id(sleeping)}/result")
            assert "backup" in assert_error(r, 400, 1015)["errorMessage"]
        original, copy = objects(srv.data_dir / "metadata.sqlite"), objects(
            restored_dir / "metadata.sqlite")
        stable = {k: v for k, v in original.items() if k[1] != "growing"}
        assert stable and {k: copy[k] for k in stable} == stable
    finally:
        new.stop()
    # With no server on the folder, epe backup opens its files itself.
    done = run_cli("backup", "--data-dir", str(restored_dir), "--to",
                   str(tmp_path / "offline"), env=srv.env)
    assert (tmp_path / "offline" / "tables" / f"{alice[0]}.duckdb").is_file(), done


def deploy_a_model(c: httpx.Client) -> None:
    """A Python model from a datastore, deployed at ``/deployment/tiny/score``."""
    assert c.post(f"{API}/do-eval", json={"script": FIT}).json() == {"result": 1}
    r = c.post(f"{OML}/models", data={"modelName": "tiny", "modelType": "PYTHON",
                                       "version": "1", "datastore": "models", "object": "clf"})
    assert r.status_code == 201, r.text
    r = c.post(f"{OML}/deployment", json={"modelId": r.json()["modelId"], "uri": "tiny"})
    assert r.status_code == 201, r.text


LOAD_BOX = ("def f(owner):\n    import oml\n"
            "    box = oml.ds.load('box', owner=owner, to_globals=False)\n"
            "    return {k: repr(v) for k, v in sorted(box.items())}\n")


def snapshot(c: httpx.Client, f: httpx.Client, owner: str,
             finished: list[str]) -> dict[str, Any]:
    """What the users see of what was made before the backup."""
    seen: dict[str, Any] = {
        "scripts": c.get(f"{API}/scripts").json(), "granted": f.get(f"{API}/scripts").json(),
        "tables": [t for t in c.get(f"{API}/tables").json()["result"]
                   if t["name"] != "CHURN"],
        "NUMS": rows(c, "NUMS"), "RICH": rows(c, "RICH"),
        "box": c.get(f"{API}/datastores/box").json(),
        "box, loaded by the friend": f.post(f"{API}/do-eval", json={
            "script": LOAD_BOX, "parameters": json.dumps({"owner": owner})}).json(),
        "a granted script, run by the friend": f.post(
            f"{API}/do-eval/square/{owner}", json={"parameters": '{"n": 3}'}).json(),
        # The listing's links name the server answering: another port after the restore.
        "models": json.loads(c.get(f"{OML}/models").text.replace(
            str(c.base_url).rstrip("/"), "SERVER")),
        "scores": c.post(f"{OML}/deployment/tiny/score", json={
            "inputRecords": [{"X": 0.5}, {"X": 2.5}]}).json()}
    listed = {j["job_id"]: j for j in c.get(f"{API}/jobs").json()["result"]}
    for url in finished:
        r = c.get(f"{API}/jobs/{job_id(url)}/result")
        seen[job_id(url)] = (listed[job_id(url)], r.status_code, r.content,
                             c.get(f"{API}/jobs/{job_id(url)}/log").content)
    return seen


def check_the_load(c: httpx.Client, load: Load, taken: int) -> None:
    """What the load was changing is whole in the copy, as of one moment each (the
    backup was taken in the load's round ``taken`` or before, after its second)."""
    table = c.post(f"{API}/query", json={"input": "select V, count(*) N from CHURN group by V"})
    assert table.status_code == 200, table.text
    [version] = table.json()["result"]
    assert version["N"] == CHURN_ROWS and 2 <= version["V"] <= taken
    growing = c.get(f"{API}/datastores/growing").json()["result"]
    names = sorted(o["name"] for o in growing["objects"])
    n = len(names) // 2  # each round appended two objects, in one transaction
    assert n >= 1 and names == sorted([f"o{i}" for i in range(1, n + 1)] +
                                      [f"df{i}" for i in range(1, n + 1)])
    listed = {j["job_id"]: j["status"] for j in c.get(f"{API}/jobs").json()["result"]}
    for job, n in load.jobs.items():
        status = listed.get(job)  # None: submitted after the backup was taken
        r = c.get(f"{API}/jobs/{job}/result")
        if status == "FINISH":
            assert (r.status_code, r.json()) == (200, {"result": n * n})
        elif status is not None:  # waiting or running at the backup: not run here
            assert status == "FAILED" and "backup" in r.json()["errorMessage"], r.text
