"""The client commands (``epe script|run|job|table``) against a real ``epe serve``,
through click's runner, logged in from EPE_URL, EPE_USER and EPE_PASSWORD."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from epe.cli import cli
from tests.serverproc import EpeServer, run_cli, unique_name

Invoke = Callable[..., Result]

SCALE_SOURCE = "def scale(x, factor=2):\n    return x * factor\n"
COUNT_SOURCE = "def count(df):\n    return int(df.shape[0])\n"
FAIL_SOURCE = "def fail(x=0):\n    print('dividing')\n    return 1 / x\n"


@pytest.fixture(scope="module")
def env(server: EpeServer) -> dict[str, str]:
    user, password = server.add_user()
    return {"EPE_URL": server.url, "EPE_USER": user, "EPE_PASSWORD": password}


@pytest.fixture
def epe(env: dict[str, str]) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    from epe.demo import iris_table

    path = tmp_path / "iris.csv"
    iris_table().to_pandas().to_csv(path, index=False)
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_script_push_list_show_drop(epe: Invoke, tmp_path: Path, env: dict[str, str]) -> None:
    name = unique_name("scale")
    source = write(tmp_path, "scale.py", SCALE_SOURCE)
    pushed = epe("script", "push", str(source), "--name", name, "--description", "doubles")
    assert f"script {name} stored (owner {env['EPE_USER']})" in pushed.output
    listed = epe("script", "list")
    assert listed.output.splitlines()[0].split() == ["NAME", "OWNER", "GLOBAL", "DATE",
                                                      "DESCRIPTION"]
    assert any(line.split()[:3] == [name, env["EPE_USER"], "no"] and "doubles" in line
               for line in listed.output.splitlines())
    as_json = json.loads(epe("script", "list", "--json").output)
    assert name in [s["name"] for s in as_json]
    assert epe("script", "show", name).output == SCALE_SOURCE
    refused = epe("script", "push", str(source), "--name", name, "--no-overwrite", code=1)
    assert "already exists" in refused.output and "errorCode 4009" in refused.output
    epe("script", "push", str(source), "--name", name)  # replaced
    assert f"script {name} dropped" in epe("script", "drop", name).output
    missing = epe("script", "show", name, code=1)
    assert "errorCode 4004" in missing.output


def test_script_push_global(epe: Invoke, tmp_path: Path) -> None:
    name = unique_name("gscale")
    source = write(tmp_path, "scale.py", SCALE_SOURCE)
    assert "(owner PYQSYS)" in epe("script", "push", str(source), "--name", name,
                                   "--global").output
    assert epe("script", "show", name, "--owner", "PYQSYS").output == SCALE_SOURCE
    epe("script", "drop", name, code=1)  # the private one does not exist
    epe("script", "drop", name, "--global")


def test_run_each_operation(epe: Invoke, tmp_path: Path, iris_csv: Path) -> None:
    table = unique_name("IRIS")
    epe("table", "load", str(iris_csv), "--name", table)
    name, count = unique_name("scale"), unique_name("count")
    epe("script", "push", str(write(tmp_path, "s.py", SCALE_SOURCE)), "--name", name)
    epe("script", "push", str(write(tmp_path, "c.py", COUNT_SOURCE)), "--name", count)
    assert json.loads(epe("run", "do-eval", name, "--param", "x=21").output) == 42
    assert json.loads(epe("run", "do-eval", name, "--param", "x=ab", "--param",
                          "factor=3").output) == "ababab"
    assert json.loads(epe("run", "do-eval", name, "--param", 'x=[1]').output) == [1, 1]
    assert json.loads(epe("run", "table-apply", count, "--input", table).output) == 150
    query = f'SELECT * FROM "{table}" WHERE "SPECIES" = \'setosa\''
    assert json.loads(epe("run", "table-apply", count, "--input", query).output) == 50
    assert json.loads(epe("run", "row-apply", count, "--input", table, "--rows",
                          "100", "--parallel", "2").output) == [100, 50]
    assert json.loads(epe("run", "group-apply", count, "--input", table, "--group-by",
                          "species").output) == {"setosa": 50, "versicolor": 50,
                                                 "virginica": 50}
    assert json.loads(epe("run", "index-apply", name, "--times", "3").output) == [2, 4, 6]
    local = write(tmp_path, "local.py", "def f(i):\n    return i * i\n")
    assert json.loads(epe("run", "index-apply", str(local), "--times", "3").output) == [1, 4, 9]


def test_run_reports_errors(epe: Invoke, tmp_path: Path) -> None:
    failing = write(tmp_path, "fail.py", FAIL_SOURCE)
    failed = epe("run", "do-eval", str(failing), code=1)
    assert "ZeroDivisionError: division by zero (errorCode 1011)" in failed.output
    assert "return 1 / x" in failed.output and "dividing" in failed.output
    missing = epe("run", "row-apply", str(failing), "--input", "T", code=2)
    assert "row-apply needs --rows" in missing.output
    assert "errorCode 4004" in epe("run", "do-eval", "no_such_script", code=1).output
    assert "is not KEY=VALUE" in epe("run", "do-eval", str(failing), "--param", "x",
                                     code=2).output


def test_async_run_and_jobs(epe: Invoke, tmp_path: Path) -> None:
    source = write(tmp_path, "mean.py", "def f(i):\n    print('index', i)\n    return i\n")
    job = epe("run", "index-apply", str(source), "--times", "12", "--async").output.strip()
    assert len(job) >= 16 and "\n" not in job
    watched = epe("job", "watch", job)
    assert f"job {job} FINISH" in watched.stdout
    assert "12/12" in watched.stderr  # the progress bar
    assert json.loads(epe("job", "result", job).output) == list(range(1, 13))
    log = epe("job", "log", job).output
    assert log.splitlines() == [f"index {i}" for i in range(1, 13)]
    listed = epe("job", "list").output.splitlines()
    assert listed[0].split() == ["JOB_ID", "STATUS", "OPERATION", "CREATED", "ELAPSED",
                                 "PROGRESS"]
    row = next(line.split() for line in listed if line.startswith(job))
    assert row[1:3] == ["FINISH", "index-apply"] and row[-1] == "12/12"
    assert job in [j["job_id"] for j in json.loads(epe("job", "list", "--json").output)]
    assert f"job {job} cancelled and deleted" in epe("job", "cancel", job).output
    assert "errorCode 4004" in epe("job", "result", job, code=1).output


def test_a_failed_job(epe: Invoke, tmp_path: Path) -> None:
    failing = write(tmp_path, "fail.py", FAIL_SOURCE)
    job = epe("run", "do-eval", str(failing), "--async").output.strip()
    assert f"job {job} FAILED" in epe("job", "watch", job, code=1).output
    result = epe("job", "result", job, code=1)
    assert "ZeroDivisionError" in result.output and "errorCode 1011" in result.output
    assert epe("job", "log", job).output == "dividing\n"


def test_table_load_list_drop(epe: Invoke, tmp_path: Path, iris_csv: Path) -> None:
    frame = pd.DataFrame({"A": [1, 2], "B": ["x", "y"]})
    parquet, records = tmp_path / "t.parquet", tmp_path / "t.json"
    frame.to_parquet(parquet, index=False)
    frame.to_json(records, orient="records")
    names = {fmt: unique_name(f"T_{fmt}") for fmt in ("csv", "parquet", "json")}
    assert f"table {names['csv']} loaded: 150 rows, 5 columns" in epe(
        "table", "load", str(iris_csv), "--name", names["csv"]).output
    epe("table", "load", str(parquet), "--name", names["parquet"])
    epe("table", "load", str(records), "--name", names["json"])
    conflict = epe("table", "load", str(parquet), "--name", names["parquet"], code=1)
    assert "errorCode 4009" in conflict.output
    epe("table", "load", str(records), "--name", names["parquet"], "--overwrite")
    listed = {line.split()[0]: line for line in epe("table", "list").output.splitlines()}
    assert "SPECIES VARCHAR" in listed[names["csv"]]
    assert listed[names["parquet"]].split()[1] == "2"
    tables = json.loads(epe("table", "list", "--json").output)
    assert {t["name"] for t in tables} >= set(names.values())
    epe("table", "load", str(write(tmp_path, "t.txt", "A\n1\n")), "--name", "X", code=2)
    for name in names.values():
        assert f"table {name} dropped" in epe("table", "drop", name).output
    assert not set(names.values()) & {t["name"] for t in
                                      json.loads(epe("table", "list", "--json").output)}


def test_without_a_connection_it_says_what_to_set() -> None:
    result = CliRunner().invoke(cli, ["table", "list"], env={"EPE_URL": None, "EPE_USER": None,
                                                             "EPE_PASSWORD": None})
    assert result.exit_code == 2
    assert "EPE_URL" in result.output and "EPE_PASSWORD" in result.output


def test_the_installed_command(env: dict[str, str], tmp_path: Path) -> None:
    """The real ``epe`` program, not the runner: the commands are registered in main."""
    source = write(tmp_path, "hello.py", "def hello(who='you'):\n    return 'hi ' + who\n")
    done = run_cli("run", "do-eval", str(source), "--param", "who=epe", env=env)
    assert json.loads(done.stdout) == "hi epe"
    failed = run_cli("run", "do-eval", "nope_nope", env=env, check=False)
    assert failed.returncode == 1 and "errorCode 4004" in failed.stderr
