"""Reading users' SQL (``epe.core.sql``) and shaping table functions' output
(``epe.core.tablefunctions``): the pure parts of docs/sql.md."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pyarrow as pa
import pytest

from epe.core import tablefunctions as fmt
from epe.core.sql import RELATION_PREFIX, VIEW_PREFIX, Call, mentions_pyq, read
from epe.errors import InvalidRequest

# -- OML's names ----------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "SELECT * FROM TABLE(pyqEval(par_lst => '{\"n\":1}', out_fmt => 'JSON', scr_name => 'f'))",
    "select * from pyqEval('{\"n\":1}', 'JSON', 'f')",
    "SELECT * FROM PYQEVAL(PAR_LST => '{\"n\":1}', OUT_FMT => 'JSON', SCR_NAME => 'f')",
    "select * from table(pyqeval('{\"n\":1}', out_fmt => 'JSON', scr_name => 'f'))",
])
def test_a_call_named_or_positional_with_or_without_table(sql: str) -> None:
    for dialect, oracle in (("duckdb", True), ("postgres", True), ("duckdb", False)):
        statement = read(sql, dialect, oracle)
        [(relation, call)] = statement.calls
        assert relation.startswith(RELATION_PREFIX)
        assert call == Call("PYQEVAL", (("par_lst", '{"n":1}'), ("out_fmt", "JSON"),
                                        ("scr_name", "f")))
        # The call is gone from the text; its relation stands where it was.
        assert "par_lst" not in statement.sql.lower() and "'JSON'" not in statement.sql
        assert relation in statement.sql


def test_every_function_takes_its_own_arguments_in_oml_order() -> None:
    statement = read("select * from pyqGroupEval('IRIS', NULL, 'JSON', 'SPECIES', 'X', 'g', "
                     "'OML', 'env') a, pyqIndexEval(NULL, 'JSON', 3, 'h') b, "
                     "pyqRowEval('T', NULL, 'JSON', 10, 'r') c, pyqJobStatus('j') d, "
                     "pyqJobResult('j', 'PNG') e", "duckdb", oracle=True)
    calls = dict(c for _, c in [(r, (c.function, dict(c.args))) for r, c in statement.calls])
    assert calls["PYQGROUPEVAL"] == {"inp_nam": "IRIS", "par_lst": None, "out_fmt": "JSON",
                                     "grp_col": "SPECIES", "ord_col": "X", "scr_name": "g",
                                     "scr_owner": "OML", "env_name": "env"}
    assert calls["PYQINDEXEVAL"]["times_num"] == 3
    assert calls["PYQROWEVAL"]["row_num"] == 10
    assert calls["PYQJOBSTATUS"] == {"job_id": "j"}
    assert calls["PYQJOBRESULT"] == {"job_id": "j", "out_fmt": "PNG"}


@pytest.mark.parametrize(("sql", "words"), [
    ("select * from pyqEval(nope => 1)", "no argument nope"),
    ("select * from pyqEval(scr_name => 'f', 'JSON')", "positional"),
    ("select * from pyqEval(1, 2, 3, 4, 5, 6)", "at most 5"),
    ("select * from pyqEval(scr_name => 'a', scr_name => 'b')", "twice"),
    ("select * from pyqEval(scr_name => upper('f'))", "literal"),
    ("select * from pyqFoo()", "no table function"),
])
def test_bad_calls_are_refused_by_name(sql: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        read(sql, "duckdb", oracle=True)


def test_views_are_found_ignoring_case_and_replaced() -> None:
    statement = read("select c.OBJNAME from all_pyq_datastore_contents c join USER_PYQ_SCRIPTS "
                     "on 1 = 1", "duckdb", oracle=False)
    assert dict((v, r) for r, v in statement.views) == {
        "ALL_PYQ_DATASTORE_CONTENTS": VIEW_PREFIX + "all_pyq_datastore_contents",
        "USER_PYQ_SCRIPTS": VIEW_PREFIX + "user_pyq_scripts"}
    assert "AS c" in statement.sql and "AS USER_PYQ_SCRIPTS" in statement.sql


def test_a_table_of_a_views_name_its_own_cte_or_another_schema_is_not_the_view() -> None:
    assert read("select * from USER_PYQ_SCRIPTS", "duckdb", False,
                has_table=lambda name: name == "USER_PYQ_SCRIPTS").views == ()
    assert read("with ALL_PYQ_SCRIPTS as (select 1) select * from ALL_PYQ_SCRIPTS", "duckdb",
                False).views == ()
    assert read("select * from other.ALL_PYQ_SCRIPTS", "duckdb", False).views == ()


def test_only_queries_mentioning_pyq_need_parsing() -> None:
    assert mentions_pyq("select * from ALL_PYQ_SCRIPTS")
    assert mentions_pyq("select * from table(PyqEval())")
    assert not mentions_pyq("select * from IRIS")


# -- Oracle's dialect -----------------------------------------------------------------------


@pytest.mark.parametrize(("oracle", "duckdb"), [
    ("SELECT NVL(A, 0) FROM T", "SELECT COALESCE(A, 0) FROM T"),
    ("SELECT * FROM T WHERE ROWNUM <= 5", "SELECT * FROM T LIMIT 5"),
    ("SELECT * FROM T WHERE ROWNUM < 5 AND X = 1", "SELECT * FROM T WHERE X = 1 LIMIT 4"),
    ("SELECT * FROM T WHERE 5 >= ROWNUM", "SELECT * FROM T LIMIT 5"),
    ("SELECT * FROM T WHERE ROWNUM = 1", "SELECT * FROM T LIMIT 1"),
    ("SELECT ROWNUM, A FROM T", "SELECT ROW_NUMBER() OVER () AS ROWNUM, A FROM T"),
    ("SELECT 1 FROM DUAL", "SELECT 1 FROM (SELECT 'X' AS DUMMY) AS DUAL"),
    ("SELECT * FROM T ORDER BY A FETCH FIRST 3 ROWS ONLY",
     "SELECT * FROM T ORDER BY A LIMIT 3"),
    ("SELECT A FROM T MINUS SELECT A FROM U", "SELECT A FROM T EXCEPT SELECT A FROM U"),
    ("SELECT TO_CHAR(D, 'YYYY-MM-DD HH24:MI') FROM T",
     "SELECT STRFTIME(D, '%Y-%m-%d %H:%M') FROM T"),
    ("SELECT TO_NUMBER('1') FROM T", "SELECT CAST('1' AS DOUBLE) FROM T"),
    ("SELECT TRUNC(D, 'MM') FROM T", "SELECT DATE_TRUNC('MONTH', D) FROM T"),
    ("SELECT * FROM (SELECT * FROM T)", 'SELECT * FROM (SELECT * FROM T) AS "__epe_subquery_1"'),
])
def test_oracle_to_duckdb(oracle: str, duckdb: str) -> None:
    statement = read(oracle, "duckdb", oracle=True)
    assert statement.sql == duckdb
    assert statement.translated


def test_oracle_to_postgres_quotes_names_as_oracle_stores_them() -> None:
    assert read("select ename, \"Mixed\" from emp e where rownum <= 2", "postgres", True).sql \
        == 'SELECT "ENAME", "Mixed" FROM "EMP" AS "E" LIMIT 2'
    assert read("SELECT ADD_MONTHS(D, 2) FROM T", "postgres", True).sql == \
        """SELECT "D" + (2) * INTERVAL '1 MONTH' FROM "T\""""


@pytest.mark.parametrize(("sql", "construct"), [
    ("SELECT LEVEL FROM DUAL CONNECT BY LEVEL <= 3", "CONNECT BY"),
    ("SELECT * FROM T WHERE ROWNUM <= 3 ORDER BY A", "ROWNUM with ORDER BY"),
    ("SELECT * FROM T WHERE ROWNUM > 3", "ROWNUM in a WHERE"),
    ("SELECT TO_CHAR(N, '999.99') FROM T", "TO_CHAR with a number format"),
    ("SELECT TO_NUMBER('1,0', '9,9') FROM T", "TO_NUMBER with a format"),
    ("SELECT * FROM A, B WHERE A.X = B.X(+)", "(+)"),
    ("SELECT * FROM T WHERE", "invalid SQL"),
    ("SELECT 1 FROM DUAL; SELECT 2 FROM DUAL", "one query"),
])
def test_what_cannot_be_translated_names_the_construct(sql: str, construct: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        read(sql, "duckdb", oracle=True)
    assert construct in caught.value.message


def test_ddl_stays_ddl_for_the_backend_to_refuse() -> None:
    assert read("CREATE TABLE X AS SELECT * FROM DUAL", "duckdb", True).sql.startswith(
        "CREATE TABLE X")
    assert read("DELETE FROM T WHERE NVL(X, 0) = 1", "duckdb", True).sql.startswith("DELETE")


# -- output formats -------------------------------------------------------------------------


def test_json_is_one_row() -> None:
    table = fmt.as_json(b'[{"A":1}]')
    assert table.to_pylist() == [{"NAME": None, "VALUE": '[{"A":1}]'}]


def test_relational_types_cut_strings_and_match_names_ignoring_case() -> None:
    out = '{"NAME":"varchar2(3)","N":"number","I":"INTEGER","D":"date","F":"binary_double"}'
    result = json.dumps([{"name": "Abcdef", "N": 1.5, "I": 2, "D": "2024-01-02T03:04:05",
                          "F": None}]).encode()
    table = fmt.relational(out, result)
    assert table.schema.types == [pa.string(), pa.float64(), pa.int64(), pa.timestamp("us"),
                                  pa.float64()]
    assert table.to_pylist() == [{"NAME": "Abc", "N": 1.5, "I": 2,
                                  "D": dt.datetime(2024, 1, 2, 3, 4, 5), "F": None}]


@pytest.mark.parametrize(("value", "rows"), [
    ([{"A": 1}, {"A": 2}], [{"A": 1}, {"A": 2}]),  # a DataFrame's records
    ({"g1": [{"A": 1}], "g2": [{"A": 2}]}, [{"A": 1}, {"A": 2}]),  # keyed by group
    ({"g1": {"A": {"0": 1, "1": 2}}}, [{"A": 1}, {"A": 2}]),  # group-apply's column form
    ([[{"A": 1}], [{"A": 2}]], [{"A": 1}, {"A": 2}]),  # one list per chunk
    ({"A": 1, "B": 2}, [{"A": 1, "B": 2}]),  # a dict is a row
    (7, [{"": 7}]),  # a scalar fills the first column
])
def test_rows_of_every_result_shape(value: object, rows: list[dict[str, object]]) -> None:
    assert fmt.records(value) == rows


def test_relational_refuses_unknown_types_and_bad_values() -> None:
    with pytest.raises(InvalidRequest, match="not supported"):
        fmt.column_types('{"A":"sdo_geometry"}')
    with pytest.raises(InvalidRequest, match="not a number"):
        fmt.relational('{"A":"number"}', b'[{"A":"x"}]')
    with pytest.raises(InvalidRequest, match="XML"):
        fmt.kind_of("XML")
    assert fmt.kind_of(None) == "JSON" and fmt.kind_of("png") == "PNG"
    assert fmt.kind_of('{"A":"number"}') == "relational"


def test_png_rows_carry_names_ids_titles_and_bytes() -> None:
    png = base64.b64encode(b"\x89PNG-bytes").decode()
    one = json.dumps([{"IMAGE": png, "DATA": "3", "TITLE": "t", "ID": 1}]).encode()
    assert fmt.images(one).to_pylist() == [
        {"NAME": None, "ID": 1, "VALUE": "3", "TITLE": "t", "IMAGE": b"\x89PNG-bytes"}]
    keyed = json.dumps({"a": [{"IMAGE": png, "DATA": "1", "TITLE": None, "ID": 1},
                              {"IMAGE": None, "DATA": "1", "TITLE": None, "ID": 2}]}).encode()
    assert [(r["NAME"], r["ID"], r["IMAGE"] is None) for r in fmt.images(keyed).to_pylist()] \
        == [("a", 1, False), ("a", 2, True)]
    with pytest.raises(InvalidRequest, match="graphics"):
        fmt.images(b'[{"A": 1}]')
