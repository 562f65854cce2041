"""OML's SQL side over HTTP (docs/sql.md): the PYQ views, the pyq*Eval table functions,
async jobs from SQL, and Oracle's dialect in ``POST /query`` and ``input``.

The session's shared server of each backend of users' tables (``data_server``: DuckDB
and PostgreSQL), users of the module's own: ``owner`` has IRIS, GRADE and Oracle's
example scripts; ``other`` is a second user who sees only what is granted to them;
``scott`` has Oracle's EMP and DEPT.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.oracle_examples import BUILD_LM
from tests.serverproc import (
    API,
    EpeServer,
    assert_error,
    iris_csv,
    put_table,
    unique_name,
    wait_for,
)

# Oracle's pyqFun1 (its pyqEval and output-format examples).
PYQ_FUN1 = (
    "def fun_tab():\n"
    "    import pandas as pd\n"
    "    names = ['demo_' + str(i) for i in range(10)]\n"
    "    ids = [x for x in range(10)]\n"
    "    floats = [float(x) / 10 for x in range(10)]\n"
    "    d = {'ID': ids, 'NAME': names, 'FLOAT': floats}\n"
    "    scores_table = pd.DataFrame(d)\n"
    "    return scores_table\n")

# Oracle's computeGradeDiff (its relational output example), on its GRADE table.
GRADE_DIFF = (
    "def computeGradeDiff(df):\n"
    "    import pandas as pd\n"
    "    df['DIFF'] = df['FINALGRADE'] - df['MIDTERMGRADE']\n"
    "    return df[['NAME', 'DIFF']]\n")
GRADE_CSV = ("NAME,GENDER,MIDTERMGRADE,FINALGRADE\n"
             "Abbott,F,90,93\nBranford,M,92,87\nCrandell,M,81,91\nDennison,M,85,98\n"
             "Edgar,F,89,98\nFaust,M,82,87\nGreeley,F,91,82\nHart,F,90,94\n"
             "Isley,M,93,95\nJasper,M,89,97\n")

# A figure and a value: PNG output.
PLOT = (
    "def plot(n=3):\n"
    "    import matplotlib.pyplot as plt\n"
    "    plt.figure()\n"
    "    plt.plot(range(n))\n"
    "    plt.title('Line of ' + str(n))\n"
    "    plt.show()\n"
    "    return n\n")

GROUP_COUNT = (
    "def group_count(dat):\n"
    "    import pandas as pd\n"
    '    return pd.DataFrame([(dat["SPECIES"][0], dat.shape[0])],\n'
    '                        columns=["SPECIES", "CNT"])\n')

ROW_SUM = (
    "def row_sum(dat):\n"
    "    import pandas as pd\n"
    "    return pd.DataFrame({'N': [len(dat)], 'S': [float(dat['SEPAL_LENGTH'].sum())]})\n")

SQUARE = "def square(i):\n    return {'I': i, 'SQ': i * i}\n"

SLOW = "def slow(s=1):\n    import time\n    time.sleep(s)\n    return {'DONE': s}\n"

BAD = "def bad():\n    raise ValueError('no good')\n"

SCRIPTS = {"build_lm": BUILD_LM, "pyqFun1": PYQ_FUN1, "computeGradeDiff": GRADE_DIFF,
           "plot": PLOT, "group_count": GROUP_COUNT, "row_sum": ROW_SUM, "square": SQUARE,
           "slow": SLOW, "bad": BAD}


# -- fixtures and helpers -------------------------------------------------------------------


def create_script(c: httpx.Client, name: str, source: str, description: str = "") -> None:
    r = c.post(f"{API}/scripts", json={"name": name, "script": source,
                                       "description": description, "overwrite": True})
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def owner(data_server: EpeServer) -> tuple[str, httpx.Client]:
    user, c = data_server.new_client()
    put_table(c, "IRIS", iris_csv())
    put_table(c, "GRADE", GRADE_CSV)
    for name, source in SCRIPTS.items():
        create_script(c, name, source, f"{name} example")
    return user, c


@pytest.fixture(scope="module")
def oml(owner: tuple[str, httpx.Client]) -> httpx.Client:
    return owner[1]


@pytest.fixture(scope="module")
def other(data_server: EpeServer) -> tuple[str, httpx.Client]:
    return data_server.new_client()


@pytest.fixture(scope="module")
def backend(data_server: EpeServer) -> str:
    return "postgresql" if "EPE_DATA_URL" in data_server.env else "duckdb"


def query(c: httpx.Client, sql: str, **extra: Any) -> list[dict[str, Any]]:
    r = c.post(f"{API}/query", json={"input": sql, **extra})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["result"]
    return rows


def query_error(c: httpx.Client, sql: str, status: int = 400, **extra: Any) -> str:
    r = c.post(f"{API}/query", json={"input": sql, **extra})
    return str(assert_error(r, status)["errorMessage"])


# -- the views ------------------------------------------------------------------------------


def test_the_labs_datastore_contents_after_build_lm(oml: httpx.Client,
                                                    owner: tuple[str, httpx.Client]) -> None:
    """Oracle's lab: build_lm saves its model from table-apply, then
    SELECT * FROM ALL_PYQ_DATASTORE_CONTENTS shows it with its class."""
    r = oml.post(f"{API}/table-apply/build_lm",
                 json={"input": "select * from IRIS", "parameters": '{"dsname":"ds_pymodel"}'})
    assert r.status_code == 200, r.text
    assert len(r.json()["result"]["coef"]) == 3
    rows = query(oml, "SELECT * FROM ALL_PYQ_DATASTORE_CONTENTS")
    assert list(rows[0]) == ["DSOWNER", "DSNAME", "OBJNAME", "CLASS", "OBJSIZE", "LENGTH",
                             "NROW", "NCOL"]
    [row] = [r for r in rows if r["DSNAME"] == "ds_pymodel"]
    assert row["DSOWNER"] == owner[0]
    assert (row["OBJNAME"], row["CLASS"], row["LENGTH"], row["NROW"], row["NCOL"]) == \
        ("regr", "LinearRegression", 1, 1, 1)
    assert row["OBJSIZE"] > 0
    # The lab's own SQL paragraph, in Oracle's dialect.
    assert query(oml, "SELECT DSNAME, OBJNAME, CLASS FROM ALL_PYQ_DATASTORE_CONTENTS "
                      "WHERE DSNAME = 'ds_pymodel' AND ROWNUM <= 1") == \
        [{"DSNAME": "ds_pymodel", "OBJNAME": "regr", "CLASS": "LinearRegression"}]


SHAPES = (
    "def shapes(ds):\n"
    "    import oml\n"
    "    import pandas as pd\n"
    "    oml.ds.save({'frame': pd.DataFrame({'A': range(5), 'B': 1.0, 'C': 'x'}),\n"
    "                 'words': ['a', 'b', 'c'], 'table': {'x': 1, 'y': 2}, 'n': 7}, ds,\n"
    "                description='shapes', grantable=True)\n"
    "    return True\n")


def test_length_nrow_ncol_as_oml_defines_them(oml: httpx.Client) -> None:
    name = unique_name("ds_shapes_")
    r = oml.post(f"{API}/do-eval", json={"script": SHAPES,
                                         "parameters": json.dumps({"ds": name})})
    assert r.status_code == 200, r.text
    rows = query(oml, "SELECT OBJNAME, CLASS, LENGTH, NROW, NCOL FROM "
                      f"ALL_PYQ_DATASTORE_CONTENTS WHERE DSNAME = '{name}' ORDER BY OBJNAME")
    assert rows == [
        {"OBJNAME": "frame", "CLASS": "DataFrame", "LENGTH": 5, "NROW": 5, "NCOL": 3},
        {"OBJNAME": "n", "CLASS": "int", "LENGTH": 1, "NROW": 1, "NCOL": 1},
        {"OBJNAME": "table", "CLASS": "dict", "LENGTH": 2, "NROW": 1, "NCOL": 2},
        {"OBJNAME": "words", "CLASS": "list", "LENGTH": 3, "NROW": 1, "NCOL": 3}]
    [ds] = query(oml, f"SELECT * FROM USER_PYQ_DATASTORES WHERE DSNAME = '{name}'")
    assert list(ds) == ["DSNAME", "NOBJ", "DSSIZE", "CDATE", "DESCRIPTION", "GRANTABLE"]
    assert (ds["NOBJ"], ds["DESCRIPTION"], ds["GRANTABLE"]) == (4, "shapes", "T")


def test_two_users_see_only_what_each_may(oml: httpx.Client, owner: tuple[str, httpx.Client],
                                         other: tuple[str, httpx.Client]) -> None:
    me, (them, c) = owner[0], other

    def of_us(sql: str, column: str) -> list[dict[str, Any]]:
        # The shared server holds other tests' users, some of whose scripts and
        # datastores are granted to everyone: only these two users' rows are compared.
        return [row for row in query(c, sql) if row[column] in (me, them)]

    create_script(c, "theirs", "def theirs():\n    return 1\n")
    r = oml.post(f"{API}/do-eval", json={"script": SHAPES, "parameters": '{"ds":"ds_shared"}'})
    assert r.status_code == 200, r.text
    mine = {r["NAME"] for r in query(oml, "SELECT NAME FROM USER_PYQ_SCRIPTS")}
    assert set(SCRIPTS) <= mine and "theirs" not in mine
    assert of_us("SELECT OWNER, NAME FROM ALL_PYQ_SCRIPTS ORDER BY NAME", "OWNER") == \
        [{"OWNER": them, "NAME": "theirs"}]
    assert of_us("SELECT * FROM ALL_PYQ_DATASTORE_CONTENTS", "DSOWNER") == []
    # Granted, a script and a datastore appear in the other's ALL_ views, never USER_.
    r = oml.post(f"{API}/scripts/square/grants", json={"user": them})
    assert r.status_code in (200, 201), r.text
    r = oml.post(f"{API}/datastores/ds_shared/grants", json={"user": them})
    assert r.status_code in (200, 201), r.text
    assert of_us(f"SELECT OWNER, NAME, SCRIPT FROM ALL_PYQ_SCRIPTS WHERE OWNER <> '{them}'",
                 "OWNER") == [{"OWNER": me, "NAME": "square", "SCRIPT": SQUARE}]
    assert query(c, "SELECT NAME FROM USER_PYQ_SCRIPTS") == [{"NAME": "theirs"}]
    assert of_us("SELECT DSOWNER, DSNAME, OBJNAME FROM ALL_PYQ_DATASTORE_CONTENTS "
                 "ORDER BY OBJNAME", "DSOWNER") == \
        [{"DSOWNER": me, "DSNAME": "ds_shared", "OBJNAME": o}
         for o in ("frame", "n", "table", "words")]
    assert of_us("SELECT DSOWNER, DSNAME FROM ALL_PYQ_DATASTORES", "DSOWNER") == \
        [{"DSOWNER": me, "DSNAME": "ds_shared"}]
    assert query(c, "SELECT * FROM USER_PYQ_DATASTORES") == []


def test_a_users_own_table_of_a_views_name_wins(other: tuple[str, httpx.Client]) -> None:
    _them, c = other
    create_script(c, "theirs", "def theirs():\n    return 1\n")
    put_table(c, "USER_PYQ_SCRIPTS", "NAME,X\nmine,1\n")
    assert query(c, "SELECT * FROM user_pyq_scripts") == [{"NAME": "mine", "X": 1}]
    assert {"NAME": "theirs"} in query(c, "SELECT NAME FROM ALL_PYQ_SCRIPTS")
    r = c.delete(f"{API}/tables/USER_PYQ_SCRIPTS")
    assert r.status_code in (200, 204), r.text
    assert query(c, "SELECT NAME FROM user_pyq_scripts") == [{"NAME": "theirs"}]


def test_a_view_as_a_runs_input(oml: httpx.Client) -> None:
    r = oml.post(f"{API}/table-apply", json={
        "script": "def f(d):\n    return sorted(d['NAME'])\n",
        "input": "SELECT NAME FROM USER_PYQ_SCRIPTS WHERE NAME LIKE 's%'"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == ["slow", "square"]
    # oml.sync inside a function reads SQL the same way: a view, Oracle's dialect.
    r = oml.post(f"{API}/do-eval", json={"script": (
        "def f():\n    import oml\n"
        "    q = \"SELECT NAME FROM USER_PYQ_SCRIPTS WHERE NAME LIKE 's%' AND ROWNUM <= 5\"\n"
        "    return sorted(oml.sync(query=q).pull()['NAME'])\n")})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == ["slow", "square"]


# -- the table functions --------------------------------------------------------------------

# Oracle's output-format example: pyqFun1's DataFrame as one JSON value.
PYQ_FUN1_ROWS = [{"ID": i, "NAME": f"demo_{i}", "FLOAT": i / 10} for i in range(10)]


def test_pyq_eval_json_as_oracles_example(oml: httpx.Client) -> None:
    rows = query(oml, "select * from table(pyqEval(par_lst => '{\"oml_service_level\":"
                      "\"MEDIUM\"}', out_fmt => 'JSON', scr_name => 'pyqFun1'))")
    assert len(rows) == 1 and list(rows[0]) == ["NAME", "VALUE"]
    assert rows[0]["NAME"] is None
    assert json.loads(rows[0]["VALUE"]) == PYQ_FUN1_ROWS


def test_pyq_eval_relational_positional_without_table(oml: httpx.Client) -> None:
    rows = query(oml, "SELECT * FROM pyqEval(NULL, '{\"ID\":\"number\",\"NAME\":\"varchar2(6)\"}',"
                      " 'pyqFun1') WHERE ID < 3")
    assert rows == [{"ID": 0.0, "NAME": "demo_0"}, {"ID": 1.0, "NAME": "demo_1"},
                    {"ID": 2.0, "NAME": "demo_2"}]


def test_pyq_table_eval_relational_as_oracles_example(oml: httpx.Client) -> None:
    """Oracle's computeGradeDiff: NAME cut to varchar2(7) as Oracle cuts it."""
    rows = query(oml, "select * from table(pyqTableEval(inp_nam => 'GRADE', par_lst => "
                      "'{\"oml_input_type\":\"pandas.DataFrame\"}', out_fmt => "
                      "'{\"NAME\":\"varchar2(7)\",\"DIFF\":\"number\"}', scr_name => "
                      "'computeGradeDiff'))")
    assert rows[:4] == [{"NAME": "Abbott", "DIFF": 3.0}, {"NAME": "Branfor", "DIFF": -5.0},
                        {"NAME": "Crandel", "DIFF": 10.0}, {"NAME": "Denniso", "DIFF": 13.0}]
    assert len(rows) == 10


def test_pyq_table_eval_json(oml: httpx.Client) -> None:
    [row] = query(oml, "select * from table(pyqTableEval('GRADE', NULL, 'JSON', "
                       "'computeGradeDiff'))")
    assert json.loads(row["VALUE"])[0] == {"NAME": "Abbott", "DIFF": 3}


def test_pyq_row_eval_json_and_relational(oml: httpx.Client) -> None:
    sql = ("select * from table(pyqRowEval(inp_nam => 'IRIS', par_lst => NULL, out_fmt => {fmt},"
           " row_num => 50, scr_name => 'row_sum'))")
    [row] = query(oml, sql.format(fmt="'JSON'"))
    assert [r["N"] for r in json.loads(row["VALUE"])] == [50, 50, 50]
    rows = query(oml, sql.format(fmt="'{\"N\":\"integer\",\"S\":\"binary_double\"}'"))
    assert [r["N"] for r in rows] == [50, 50, 50]
    assert sum(r["S"] for r in rows) == pytest.approx(876.5)


def test_pyq_group_eval_relational_and_json(oml: httpx.Client) -> None:
    rows = query(oml, "select * from table(pyqGroupEval(inp_nam => 'IRIS', par_lst => "
                      "'{\"oml_parallel_flag\":true}', out_fmt => '{\"SPECIES\":\"varchar2(10)\","
                      "\"CNT\":\"number\"}', grp_col => 'SPECIES', scr_name => 'group_count')) "
                      "order by SPECIES")
    assert rows == [{"SPECIES": s, "CNT": 50.0} for s in ("setosa", "versicolor", "virginica")]
    [row] = query(oml, "select * from pyqGroupEval('IRIS', NULL, 'JSON', 'SPECIES', NULL, "
                       "'group_count')")
    assert set(json.loads(row["VALUE"])) == {"setosa", "versicolor", "virginica"}


def test_pyq_index_eval_relational(oml: httpx.Client) -> None:
    rows = query(oml, "select * from table(pyqIndexEval(par_lst => NULL, out_fmt => "
                      "'{\"I\":\"number\",\"SQ\":\"number\"}', times_num => 4, scr_name => "
                      "'square'))")
    assert rows == [{"I": float(i), "SQ": float(i * i)} for i in range(1, 5)]


def test_png_output_as_images_with_their_ids(oml: httpx.Client) -> None:
    rows = query(oml, "select * from table(pyqEval(par_lst => '{\"n\":4}', out_fmt => 'PNG', "
                      "scr_name => 'plot'))")
    [row] = rows
    assert list(row) == ["NAME", "ID", "VALUE", "TITLE", "IMAGE"]
    assert (row["NAME"], row["ID"], row["VALUE"], row["TITLE"]) == (None, 1, "4", "Line of 4")
    assert base64.b64decode(row["IMAGE"]).startswith(b"\x89PNG\r\n\x1a\n")
    rows = query(oml, "select NAME, ID, TITLE from table(pyqIndexEval(NULL, 'PNG', 2, 'plot'))"
                      " order by NAME")
    assert rows == [{"NAME": "0", "ID": 1, "TITLE": "Line of 1"},
                    {"NAME": "1", "ID": 1, "TITLE": "Line of 2"}]


def test_png_images_as_binary_in_arrow(oml: httpx.Client) -> None:
    import pyarrow as pa

    r = oml.post(f"{API}/query", json={"input": "select IMAGE from pyqEval(NULL, 'PNG', 'plot')"},
                 headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200, r.text
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.schema.field("IMAGE").type == pa.binary()
    assert table.column("IMAGE")[0].as_py().startswith(b"\x89PNG")


def test_a_table_function_joined_and_used_as_a_runs_input(oml: httpx.Client) -> None:
    rows = query(oml, "select g.NAME, g.DIFF, i.SQ from table(pyqTableEval('GRADE', NULL, "
                      "'{\"NAME\":\"varchar2(20)\",\"DIFF\":\"number\"}', 'computeGradeDiff')) g "
                      "join pyqIndexEval(NULL, '{\"I\":\"number\",\"SQ\":\"number\"}', 3, 'square')"
                      " i on g.DIFF = i.I order by g.NAME")
    assert rows == [{"NAME": "Abbott", "DIFF": 3.0, "SQ": 9.0},
                    {"NAME": "Isley", "DIFF": 2.0, "SQ": 4.0}]
    r = oml.post(f"{API}/table-apply", json={
        "script": "def f(d):\n    return int(d['SQ'].sum())\n",
        "parameters": '{"oml_input_type":"pandas.DataFrame"}',
        "input": "select * from pyqIndexEval(NULL, '{\"SQ\":\"number\"}', 3, 'square')"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 14


def test_table_functions_fail_as_rest_does(oml: httpx.Client,
                                           other: tuple[str, httpx.Client]) -> None:
    # A script the caller may not run is the same 404 as over REST.
    _them, c = other
    rest = c.post(f"{API}/do-eval/pyqFun1")
    sql = c.post(f"{API}/query", json={"input": "select * from pyqEval(NULL, 'JSON', 'pyqFun1')"})
    assert sql.status_code == rest.status_code == 404
    assert sql.json()["errorCode"] == rest.json()["errorCode"]
    # A failing function: the same error, the same code.
    rest = oml.post(f"{API}/do-eval/bad")
    sql = oml.post(f"{API}/query", json={"input": "select * from pyqEval(NULL, 'JSON', 'bad')"})
    assert sql.status_code == rest.status_code
    assert sql.json()["errorCode"] == rest.json()["errorCode"]
    assert "no good" in sql.json()["errorMessage"]
    assert "unknown_arg" in query_error(oml, "select * from pyqEval(unknown_arg => 1)")
    assert "PNG" in query_error(oml, "select * from pyqEval(NULL, 'XML', 'pyqFun1')")
    assert "row_num" in query_error(oml, "select * from pyqRowEval('IRIS', NULL, 'JSON', NULL,"
                                         " 'row_sum')")
    assert "pyqNope" in query_error(oml, "select * from pyqNope()") or \
        "PYQNOPE" in query_error(oml, "select * from pyqNope()")


# -- async from SQL --------------------------------------------------------------------------


def test_async_then_job_status_and_result(oml: httpx.Client) -> None:
    [row] = query(oml, "select * from table(pyqEval(par_lst => '{\"oml_async_flag\":true,"
                       "\"s\":1}', out_fmt => 'JSON', scr_name => 'slow'))")
    url = row["VALUE"]
    assert "/jobs/" in url
    job_id = url.rsplit("/", 1)[-1]

    def status() -> str:
        [r] = query(oml, f"select * from table(pyqJobStatus(job_id => '{job_id}'))")
        return str(r["VALUE"])

    done = wait_for(lambda: (s := status()) != "job is still running" and s)
    assert done.endswith(f"/jobs/{job_id}/result")
    # The URLs the calls answered with are ids too.
    assert query(oml, f"select VALUE from pyqJobStatus('{url}')") == [{"VALUE": done}]
    assert query(oml, f"select * from pyqJobResult('{done}', '{{\"DONE\":\"integer\"}}')") \
        == [{"DONE": 1}]
    assert query(oml, f"select * from pyqJobResult('{job_id}', '{{\"DONE\":\"number\"}}')") \
        == [{"DONE": 1.0}]
    [row] = query(oml, f"select * from pyqJobResult(job_id => '{job_id}', out_fmt => 'JSON')")
    assert json.loads(row["VALUE"]) == {"DONE": 1}
    # The REST API sees the same job.
    assert oml.get(f"{API}/jobs/{job_id}/result").json() == {"result": {"DONE": 1}}


def test_an_async_job_that_failed_gives_its_error(oml: httpx.Client) -> None:
    [row] = query(oml, "select * from pyqEval('{\"oml_async_flag\":true}', 'JSON', 'bad')")
    job_id = row["VALUE"].rsplit("/", 1)[-1]
    wait_for(lambda: query(oml, f"select * from pyqJobStatus('{job_id}')")[0]["VALUE"]
             != "job is still running")
    assert "no good" in query_error(oml, f"select * from pyqJobResult('{job_id}')")
    assert query_error(oml, "select * from pyqJobStatus('nosuchjob')", 404)


# -- Oracle's dialect ----------------------------------------------------------------------

EMP_CSV = ("EMPNO,ENAME,JOB,MGR,HIREDATE,SAL,COMM,DEPTNO\n"
           "7369,SMITH,CLERK,7902,1980-12-17,800,,20\n"
           "7499,ALLEN,SALESMAN,7698,1981-02-20,1600,300,30\n"
           "7521,WARD,SALESMAN,7698,1981-02-22,1250,500,30\n"
           "7566,JONES,MANAGER,7839,1981-04-02,2975,,20\n"
           "7839,KING,PRESIDENT,,1981-11-17,5000,,10\n")
DEPT_CSV = ("DEPTNO,DNAME,LOC\n10,ACCOUNTING,NEW YORK\n20,RESEARCH,DALLAS\n30,SALES,CHICAGO\n"
            "40,OPERATIONS,BOSTON\n")

# Oracle's SQL, as Oracle's examples write it, and the same by hand in the backend's own
# dialect: one text where DuckDB and PostgreSQL agree (names quoted, as PostgreSQL
# needs for upper-case ones), else one each.
Native = str | dict[str, str]
ORACLE_AND_NATIVE: list[tuple[str, Native]] = [
    ("SELECT ENAME, NVL(COMM, 0) AS C FROM EMP ORDER BY EMPNO",
     'SELECT "ENAME", coalesce("COMM", 0) AS "C" FROM "EMP" ORDER BY "EMPNO"'),
    ("SELECT ENAME, DECODE(DEPTNO, 10, 'ACCOUNTING', 20, 'RESEARCH', 'OTHER') AS D FROM EMP "
     "ORDER BY EMPNO",
     """SELECT "ENAME", CASE "DEPTNO" WHEN 10 THEN 'ACCOUNTING' WHEN 20 THEN 'RESEARCH' """
     """ELSE 'OTHER' END AS "D" FROM "EMP" ORDER BY "EMPNO\""""),
    ("SELECT ENAME FROM (SELECT ENAME FROM EMP ORDER BY SAL DESC) WHERE ROWNUM <= 2",
     'SELECT "ENAME" FROM "EMP" ORDER BY "SAL" DESC LIMIT 2'),
    ("SELECT ROWNUM AS RN, ENAME FROM (SELECT ENAME FROM EMP ORDER BY EMPNO) WHERE ROWNUM < 3",
     'SELECT row_number() OVER (ORDER BY "EMPNO") AS "RN", "ENAME" FROM "EMP" '
     'ORDER BY "EMPNO" LIMIT 2'),
    ("SELECT ENAME FROM EMP ORDER BY SAL DESC FETCH FIRST 2 ROWS ONLY",
     'SELECT "ENAME" FROM "EMP" ORDER BY "SAL" DESC LIMIT 2'),
    ("SELECT ENAME FROM EMP ORDER BY SAL DESC OFFSET 1 ROWS FETCH NEXT 2 ROWS ONLY",
     'SELECT "ENAME" FROM "EMP" ORDER BY "SAL" DESC LIMIT 2 OFFSET 1'),
    ("SELECT ENAME, TO_CHAR(HIREDATE, 'YYYY-MM-DD') AS H FROM EMP ORDER BY EMPNO",
     {"duckdb": """SELECT "ENAME", strftime("HIREDATE", '%Y-%m-%d') AS "H" FROM "EMP" """
                """ORDER BY "EMPNO\"""",
      "postgresql": """SELECT "ENAME", to_char("HIREDATE", 'YYYY-MM-DD') AS "H" FROM "EMP" """
                    """ORDER BY "EMPNO\""""}),
    ("SELECT 1 + 1 AS TWO, DUMMY FROM DUAL", """SELECT 2 AS "TWO", 'X' AS "DUMMY\""""),
    ("SELECT COUNT(*) AS N FROM EMP WHERE HIREDATE < SYSDATE",
     'SELECT count(*) AS "N" FROM "EMP" WHERE "HIREDATE" < current_date'),
    ('SELECT "ENAME", "SAL" FROM "EMP" WHERE "DEPTNO" = 30 ORDER BY "EMPNO"',
     'SELECT "ENAME", "SAL" FROM "EMP" WHERE "DEPTNO" = 30 ORDER BY "EMPNO"'),
    ("SELECT DEPTNO FROM DEPT MINUS SELECT DEPTNO FROM EMP",
     'SELECT "DEPTNO" FROM "DEPT" EXCEPT SELECT "DEPTNO" FROM "EMP"'),
    ("SELECT SUBSTR(ENAME, 1, 3) AS S, INSTR(ENAME, 'A') AS I FROM EMP ORDER BY EMPNO",
     """SELECT substring("ENAME", 1, 3) AS "S", strpos("ENAME", 'A') AS "I" FROM "EMP" """
     """ORDER BY "EMPNO\""""),
    ("SELECT NVL2(COMM, 'Y', 'N') AS HAS_COMM FROM EMP ORDER BY EMPNO",
     """SELECT CASE WHEN "COMM" IS NULL THEN 'N' ELSE 'Y' END AS "HAS_COMM" FROM "EMP" """
     """ORDER BY "EMPNO\""""),
    ("SELECT DEPTNO, LISTAGG(ENAME, ',') WITHIN GROUP (ORDER BY ENAME) AS NAMES FROM EMP "
     "GROUP BY DEPTNO ORDER BY DEPTNO",
     """SELECT "DEPTNO", string_agg("ENAME", ',' ORDER BY "ENAME") AS "NAMES" FROM "EMP" """
     """GROUP BY "DEPTNO" ORDER BY "DEPTNO\""""),
    ("SELECT TO_CHAR(ADD_MONTHS(HIREDATE, 2), 'YYYY-MM-DD') AS H FROM EMP ORDER BY EMPNO",
     {"duckdb": """SELECT strftime("HIREDATE" + INTERVAL 2 MONTH, '%Y-%m-%d') AS "H" """
                """FROM "EMP" ORDER BY "EMPNO\"""",
      "postgresql": """SELECT to_char("HIREDATE" + INTERVAL '2 months', 'YYYY-MM-DD') AS "H" """
                    """FROM "EMP" ORDER BY "EMPNO\""""}),
    ("SELECT ENAME FROM EMP WHERE HIREDATE > TO_DATE('01-06-1981', 'DD-MM-YYYY')",
     """SELECT "ENAME" FROM "EMP" WHERE "HIREDATE" > DATE '1981-06-01'"""),
    ("SELECT TO_CHAR(TRUNC(HIREDATE, 'YYYY'), 'YYYY-MM-DD') AS Y FROM EMP ORDER BY EMPNO",
     {"duckdb": """SELECT strftime(date_trunc('year', "HIREDATE"), '%Y-%m-%d') AS "Y" """
                """FROM "EMP" ORDER BY "EMPNO\"""",
      "postgresql": """SELECT to_char(date_trunc('year', "HIREDATE"), 'YYYY-MM-DD') AS "Y" """
                    """FROM "EMP" ORDER BY "EMPNO\""""}),
    ("SELECT MOD(SAL, 300) AS M, EXTRACT(YEAR FROM HIREDATE) AS Y FROM EMP ORDER BY EMPNO",
     'SELECT "SAL" % 300 AS "M", extract(year FROM "HIREDATE") AS "Y" FROM "EMP" '
     'ORDER BY "EMPNO"'),
    ("SELECT TO_NUMBER('42') + 1 AS N FROM DUAL",
     """SELECT CAST('42' AS DOUBLE PRECISION) + 1 AS "N\""""),
    ("SELECT d.DNAME, COUNT(e.EMPNO) AS N FROM DEPT d LEFT OUTER JOIN EMP e "
     "ON d.DEPTNO = e.DEPTNO GROUP BY d.DNAME HAVING COUNT(e.EMPNO) < 2 ORDER BY d.DNAME",
     'SELECT "DNAME", count("EMPNO") AS "N" FROM "DEPT" LEFT JOIN "EMP" USING ("DEPTNO") '
     'GROUP BY "DNAME" HAVING count("EMPNO") < 2 ORDER BY "DNAME"'),
]


@pytest.fixture(scope="module")
def scott(data_server: EpeServer) -> httpx.Client:
    _user, c = data_server.new_client()
    put_table(c, "EMP", EMP_CSV)
    put_table(c, "DEPT", DEPT_CSV)
    return c


@pytest.mark.parametrize(("oracle", "native"), ORACLE_AND_NATIVE,
                         ids=[f"q{i + 1:02d}" for i in range(len(ORACLE_AND_NATIVE))])
def test_oracle_sql_gives_the_rows_of_its_native_equivalent(scott: httpx.Client, backend: str,
                                                            oracle: str, native: Native) -> None:
    text = native if isinstance(native, str) else native[backend]
    expected = query(scott, text, dialect="native")
    assert expected
    assert query(scott, oracle, dialect="oracle") == expected
    assert query(scott, oracle) == expected  # auto: translated once the backend refuses it


def test_a_runs_input_in_oracles_dialect(scott: httpx.Client) -> None:
    r = scott.post(f"{API}/table-apply", json={
        "script": "def f(d):\n    return list(d['ENAME'])\n",
        "parameters": '{"oml_input_type":"pandas.DataFrame"}',
        "input": "SELECT ENAME FROM (SELECT * FROM EMP ORDER BY EMPNO) WHERE ROWNUM <= 2"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == ["SMITH", "ALLEN"]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE X AS SELECT * FROM DUAL",
    "INSERT INTO EMP (EMPNO, ENAME) SELECT 1, 'X' FROM DUAL",
    "MERGE INTO EMP e USING DUAL ON (1 = 1) WHEN MATCHED THEN UPDATE SET SAL = 0",
    "UPDATE EMP SET SAL = NVL(SAL, 0) * 2",
    "DELETE FROM EMP WHERE ROWNUM <= 1",
    "TRUNCATE TABLE EMP",
    "ALTER TABLE EMP ADD (X NUMBER)",
    "BEGIN EXECUTE IMMEDIATE 'DROP TABLE EMP'; END;",
    "SELECT * FROM DUAL; DROP TABLE EMP",
    "DROP TABLE EMP PURGE",
])
def test_ddl_hidden_in_oracle_syntax_is_refused(scott: httpx.Client, sql: str) -> None:
    for dialect in ("oracle", "auto"):
        query_error(scott, sql, dialect=dialect)
    assert query(scott, "SELECT COUNT(*) AS N, MAX(SAL) AS S FROM EMP") == [{"N": 5, "S": 5000}]
    assert {t["name"] for t in scott.get(f"{API}/tables").json()["result"]} == {"EMP", "DEPT"}
    assert query(scott, 'SELECT COUNT(*) AS "N", MAX("SAL") AS "S" FROM "EMP"',
                 dialect="native") == [{"N": 5, "S": 5000}]


def test_what_has_no_translation_says_which_construct(scott: httpx.Client) -> None:
    assert "CONNECT BY" in query_error(scott, "SELECT LEVEL FROM DUAL CONNECT BY LEVEL <= 3",
                                       dialect="oracle")
    assert "(+)" in query_error(scott, "SELECT e.ENAME, d.DNAME FROM EMP e, DEPT d "
                                       "WHERE e.DEPTNO = d.DEPTNO(+)")
    assert "ROWNUM" in query_error(scott, "SELECT ENAME FROM EMP WHERE ROWNUM <= 2 ORDER BY SAL",
                                   dialect="oracle")
    # A native query stays native: no translation, the backend's own error.
    assert "rownum" in query_error(scott, 'SELECT * FROM "EMP" WHERE ROWNUM <= 2',
                                   dialect="native").lower()


def test_the_setting_reads_every_query_as_oracles(make_server: Callable[..., EpeServer]) -> None:
    """EPE_SQL_DIALECT=oracle: what DuckDB alone understands (``//``) is refused unless the
    request says ``"dialect": "native"`` (or ``auto``); Oracle's SQL is read at once."""
    _user, c = make_server(EPE_SQL_DIALECT="oracle").new_client()
    assert "Oracle" in query_error(c, "SELECT 7 // 2 AS D")
    assert query(c, "SELECT 7 // 2 AS D", dialect="native") == [{"D": 3}]
    assert query(c, "SELECT 7 // 2 AS D", dialect="auto") == [{"D": 3}]
    assert query(c, "SELECT NVL(NULL, 1) AS N FROM DUAL WHERE ROWNUM = 1") == [{"N": 1}]
    assert_error(c.post(f"{API}/query", json={"input": "SELECT 1", "dialect": "mysql"}), 400)
