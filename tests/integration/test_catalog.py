"""The table catalog on real DuckDB files in a temporary folder: ingest with
inferred types, overwrite, bad input, the read-only rules, isolation between
users, and the query time limit."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from epe.data import TableInfo
from epe.data.duckdb.catalog import DuckDBCatalog as Catalog
from epe.data.duckdb.databases import UserDatabases
from epe.data.duckdb.query import run_query
from epe.data.ingest import read_upload
from epe.data.names import check_table_name
from epe.errors import Conflict, InvalidRequest, NotFound, TimeLimitExceeded
from tests.serverproc import wait_for

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
SLOW = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "tables", query_timeout=60)
    yield cat
    cat.close()


def upload(catalog: Catalog, owner: str, name: str, body: bytes, content_type: str,
           overwrite: bool) -> TableInfo:
    """An upload as the table service makes it, less the storage quota (the store's, not
    the catalog's: tests/integration/test_store_conformance.py)."""
    check_table_name(name)
    return catalog.put(owner, name, read_upload(body, content_type), overwrite)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def types(info: TableInfo) -> dict[str, str]:
    return {c.name: c.type for c in info.columns}


def rows(catalog: Catalog, owner: str, sql: str) -> list[dict[str, object]]:
    return catalog.query(owner, sql).to_pylist()


# --- ingest -----------------------------------------------------------------------------

def test_csv_types_are_inferred(catalog: Catalog) -> None:
    body = (b"ID,PRICE,NAME,DAY,OK,EMPTY\n"
            b"1,2.5,apple,2024-01-02,true,\n"
            b"2,3,pear,2024-02-03,false,\n")
    info = upload(catalog, "ANN", "FRUIT", body, "text/csv; charset=utf-8", False)
    assert info.name == "FRUIT" and info.rows == 2
    assert types(info) == {"ID": "BIGINT", "PRICE": "DOUBLE", "NAME": "VARCHAR",
                           "DAY": "DATE", "OK": "BOOLEAN", "EMPTY": "VARCHAR"}
    assert rows(catalog, "ANN", "SELECT NAME FROM fruit ORDER BY ID") == [
        {"NAME": "apple"}, {"NAME": "pear"}]


def test_parquet_keeps_its_types(catalog: Catalog) -> None:
    table = pa.table({"I": pa.array([1, 2, 3], pa.int32()),
                      "F": pa.array([0.5, 1.5, None], pa.float32()),
                      "S": ["a", "b", None]})
    info = upload(catalog, "ANN", "P", parquet_bytes(table), PARQUET, False)
    assert info.rows == 3
    assert types(info) == {"I": "INTEGER", "F": "FLOAT", "S": "VARCHAR"}
    assert catalog.query("ANN", "SELECT * FROM P ORDER BY I").equals(table)


@pytest.mark.parametrize("content_type", ["application/x-parquet", "application/octet-stream"])
def test_parquet_under_other_content_types(catalog: Catalog, content_type: str) -> None:
    body = parquet_bytes(pa.table({"X": [1, 2]}))
    assert upload(catalog, "ANN", "P", body, content_type, False).rows == 2


def test_json_records_unify_keys_and_types(catalog: Catalog) -> None:
    records = [{"A": 1, "B": "x"}, {"A": 2.5, "C": {"D": True}}, {"B": None}]
    info = upload(catalog, "ANN", "J", orjson.dumps(records), JSON, False)
    assert info.rows == 3
    assert types(info) == {"A": "DOUBLE", "B": "VARCHAR", "C": "STRUCT(D BOOLEAN)"}
    assert rows(catalog, "ANN", "SELECT A, B FROM J") == [
        {"A": 1.0, "B": "x"}, {"A": 2.5, "B": None}, {"A": None, "B": None}]


def test_query_result_is_an_arrow_table(catalog: Catalog) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n2\n3\n", CSV, False)
    result = catalog.query("ANN", "SELECT X * 2 AS Y FROM T ORDER BY X")
    assert isinstance(result, pa.Table)
    assert result.column("Y").to_pylist() == [2, 4, 6]


def test_list_describe_and_drop(catalog: Catalog) -> None:
    assert catalog.tables("ANN") == []
    upload(catalog, "ANN", "B_T", b"X\n1\n", CSV, False)
    upload(catalog, "ANN", "A_T", b"Y,Z\n1,2\n3,4\n", CSV, False)
    assert [(t.name, t.rows) for t in catalog.tables("ANN")] == [("A_T", 2), ("B_T", 1)]
    assert catalog.describe("ANN", "a_t") == catalog.tables("ANN")[0]
    catalog.drop("ANN", "a_t")
    assert [t.name for t in catalog.tables("ANN")] == ["B_T"]
    with pytest.raises(NotFound):
        catalog.describe("ANN", "A_T")
    with pytest.raises(NotFound):
        catalog.drop("ANN", "A_T")


# --- overwrite --------------------------------------------------------------------------

def test_existing_table_is_kept_without_overwrite(catalog: Catalog) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
    for name in ("T", "t"):  # SQL names ignore case, so t is the same table
        with pytest.raises(Conflict, match="overwrite"):
            upload(catalog, "ANN", name, b"X\n7\n8\n", CSV, False)
    assert rows(catalog, "ANN", "SELECT * FROM T") == [{"X": 1}]


def test_overwrite_replaces(catalog: Catalog) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
    info = upload(catalog, "ANN", "T", b"Y,Z\na,b\nc,d\n", CSV, True)
    assert (info.rows, types(info)) == (2, {"Y": "VARCHAR", "Z": "VARCHAR"})
    assert [t.name for t in catalog.tables("ANN")] == ["T"]


def test_failed_overwrite_leaves_the_old_table(catalog: Catalog) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
    with pytest.raises(InvalidRequest):
        upload(catalog, "ANN", "T", b"not parquet", PARQUET, True)
    with pytest.raises(InvalidRequest):
        upload(catalog, "ANN", "T", b"A,a\n1,2\n", CSV, True)
    assert rows(catalog, "ANN", "SELECT * FROM T") == [{"X": 1}]


def test_readers_see_the_old_or_the_new_table_never_half(catalog: Catalog) -> None:
    small, big = b"X\n" + b"1\n" * 10, b"X\n" + b"2\n" * 5000
    upload(catalog, "ANN", "T", small, CSV, False)
    stop, seen = threading.Event(), set()

    def overwrite() -> None:
        for i in range(40):
            upload(catalog, "ANN", "T", big if i % 2 == 0 else small, CSV, True)
        stop.set()

    writer = threading.Thread(target=overwrite)
    writer.start()
    while not stop.is_set():
        seen.add(tuple(catalog.query("ANN", "SELECT count(*), min(X), max(X) FROM T")
                       .to_pylist()[0].values()))
    writer.join()
    assert seen <= {(10, 1, 1), (5000, 2, 2)}


# --- bad input --------------------------------------------------------------------------

BAD_FILES = [
    (b"", CSV),
    (b"A,B\n1,2\n3\n", CSV),
    (b"A,a\n1,2\n", CSV),
    (b"A,,C\n1,2,3\n", CSV),
    (b"PAR1 but not really parquet", PARQUET),
    (b"not parquet", "application/octet-stream"),
    (b"{", JSON),
    (b'{"A": 1}', JSON),
    (b"[]", JSON),
    (b"[1, 2]", JSON),
    (b'[{"A": 1}, {"A": "x"}]', JSON),
    (b"A,B\n1,2\n", "application/xml"),
    (b"A,B\n1,2\n", ""),
]


@pytest.mark.parametrize(("body", "content_type"), BAD_FILES)
def test_bad_files_are_refused_and_create_nothing(catalog: Catalog, body: bytes,
                                                  content_type: str) -> None:
    with pytest.raises(InvalidRequest):
        upload(catalog, "ANN", "T", body, content_type, False)
    assert catalog.tables("ANN") == []


def test_unknown_content_type_names_the_accepted_ones(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest, match=r"text/csv.*parquet.*json"):
        upload(catalog, "ANN", "T", b"A\n1\n", "application/xml", False)


BAD_NAMES = ["", "1ABC", "A-B", "A B", 'A"B', "A;DROP", "../X", "x" * 129, "ÉTÉ"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_table_names_are_refused(catalog: Catalog, name: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid table name"):
        upload(catalog, "ANN", name, b"A\n1\n", CSV, False)
    with pytest.raises(InvalidRequest):
        catalog.describe("ANN", name)
    with pytest.raises(InvalidRequest):
        catalog.drop("ANN", name)
    assert catalog.tables("ANN") == []


@pytest.mark.parametrize("name", ["_", "_X1", "t", "A" * 128, "select"])
def test_good_table_names_work(catalog: Catalog, name: str) -> None:
    assert upload(catalog, "ANN", name, b"A\n1\n", CSV, False).name == name
    assert catalog.describe("ANN", name).rows == 1


# --- read-only input --------------------------------------------------------------------

REFUSED = [
    "CREATE TABLE X AS SELECT 1",
    "CREATE TEMP TABLE X AS SELECT 1",
    "CREATE VIEW V AS SELECT * FROM T",
    "INSERT INTO T VALUES (9)",
    "UPDATE T SET X = 0",
    "DELETE FROM T",
    "DROP TABLE T",
    "ALTER TABLE T ADD COLUMN Y INT",
    "ATTACH '{tmp}/other.duckdb' AS O",
    "DETACH ANN",
    "USE system",
    "COPY T TO '{tmp}/x.csv'",
    "EXPORT DATABASE '{tmp}/export'",
    "PRAGMA table_info('T')",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL checkpoint()",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE T",
    "",
    "   -- just a comment",
    "SELEC 1",
    "SELECT * FROM query('DROP TABLE T')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{tmp}/tables/ANN.duckdb')",
    "SELECT * FROM 'https://example.com/data.csv'",
    "SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')",
    "SELECT * FROM read_json('s3://bucket/x.json')",
    "WITH F AS (SELECT * FROM read_text('/etc/hostname')) SELECT * FROM F",
    "SELECT * FROM T WHERE X > (SELECT count(*) FROM read_csv('/etc/passwd'))",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_input_must_be_one_read_only_query(catalog: Catalog, tmp_path: Path,
                                           sql: str) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n2\n", CSV, False)
    before = catalog.tables("ANN")
    with pytest.raises(InvalidRequest):
        catalog.query("ANN", sql.format(tmp=tmp_path))
    assert catalog.tables("ANN") == before
    assert rows(catalog, "ANN", "SELECT * FROM T ORDER BY X") == [{"X": 1}, {"X": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM T", "FROM T", "TABLE T", "VALUES (1)", "WITH Y AS (SELECT 1) SELECT * FROM Y",
    "DESCRIBE T", "SHOW TABLES", "SUMMARIZE T", "SELECT 1;", "(SELECT 1) UNION ALL (SELECT 2)",
])
def test_read_only_query_forms_are_allowed(catalog: Catalog, sql: str) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
    assert catalog.query("ANN", sql).num_rows >= 1


def test_refusals_carry_duckdbs_message(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest, match="NOPE"):
        catalog.query("ANN", "SELECT * FROM NOPE")
    with pytest.raises(InvalidRequest, match="INSERT statements are not allowed"):
        catalog.query("ANN", "INSERT INTO T VALUES (1)")
    with pytest.raises(InvalidRequest, match="files or URLs"):
        catalog.query("ANN", "SELECT * FROM read_text('/etc/passwd')")


def test_the_guarding_settings_hold_and_are_locked(catalog: Catalog) -> None:
    settings = ["enable_external_access", "python_enable_replacements", "lock_configuration"]
    sql = ("SELECT name, value FROM duckdb_settings() WHERE name IN "
           f"({', '.join(repr(s) for s in settings)}) ORDER BY name")
    expected = [{"name": "enable_external_access", "value": "false"},
                {"name": "lock_configuration", "value": "true"},
                {"name": "python_enable_replacements", "value": "false"}]
    assert rows(catalog, "ANN", sql) == expected


@pytest.mark.parametrize("sql", [
    "INSERT INTO T VALUES (9)",
    "DROP TABLE T",
    "ATTACH '{tmp}/other.duckdb' AS O",
    "COPY T TO '{tmp}/x.csv'",
    "SET enable_external_access = true",
    "SELECT * FROM read_text('/etc/passwd')",
])
def test_duckdb_itself_refuses_even_past_the_parser_check(tmp_path: Path, sql: str) -> None:
    """The second and third guards alone: a READ ONLY transaction and locked settings."""
    dbs = UserDatabases(tmp_path / "tables")
    try:
        with dbs.cursor("ANN", write=True) as cur:
            cur.execute("CREATE TABLE T AS SELECT 1 AS X")
        with dbs.cursor("ANN") as cur, pytest.raises(InvalidRequest):
            run_query(cur, sql.format(tmp=tmp_path), 30)
        with dbs.cursor("ANN") as cur:
            assert run_query(cur, "SELECT * FROM T", 30).to_pylist() == [{"X": 1}]
            assert run_query(cur, "SELECT current_setting('enable_external_access') AS E",
                             30).to_pylist() == [{"E": False}]
    finally:
        dbs.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables"]


# --- isolation --------------------------------------------------------------------------

@pytest.fixture
def two_users(catalog: Catalog) -> Catalog:
    upload(catalog, "ANN", "T", b"WHO\nann\n", CSV, False)
    upload(catalog, "ANN", "SECRET", b"S\nann's secret\n", CSV, False)
    upload(catalog, "BOB", "T", b"WHO\nbob\n", CSV, False)
    return catalog


def test_each_user_sees_own_table_by_plain_name(two_users: Catalog) -> None:
    assert rows(two_users, "ANN", "SELECT WHO FROM T") == [{"WHO": "ann"}]
    assert rows(two_users, "BOB", "SELECT WHO FROM T") == [{"WHO": "bob"}]
    assert [t.name for t in two_users.tables("BOB")] == ["T"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM SECRET",
    "SELECT * FROM ANN.SECRET",
    "SELECT * FROM ANN.main.SECRET",
    'SELECT * FROM "ANN"."main"."SECRET"',
    "SELECT * FROM ann.main.secret",
    "SELECT * FROM ANN.T",
    "SELECT * FROM system.main.SECRET",
    "SELECT * FROM temp.main.SECRET",
    "SELECT * FROM main.SECRET",
    "SELECT * FROM query_table('SECRET')",
    "ATTACH '{root}/ANN.duckdb' AS A",
    "SELECT * FROM read_text('{root}/ANN.duckdb')",
])
def test_no_name_reaches_another_users_tables(two_users: Catalog, tmp_path: Path,
                                              sql: str) -> None:
    with pytest.raises(InvalidRequest):
        two_users.query("BOB", sql.format(root=tmp_path / "tables"))


@pytest.mark.parametrize("sql", [
    "SELECT table_name AS N FROM information_schema.tables",
    "SELECT table_name AS N FROM duckdb_tables()",
    "SELECT DISTINCT table_name AS N FROM duckdb_columns() WHERE NOT internal",
])
def test_listings_show_own_tables_only(two_users: Catalog, sql: str) -> None:
    assert rows(two_users, "BOB", sql) == [{"N": "T"}]


def test_other_databases_are_not_attached(two_users: Catalog) -> None:
    names = {r["database_name"] for r in
             rows(two_users, "BOB", "SELECT database_name FROM duckdb_databases()")}
    assert names == {"BOB", "system", "temp"}


def test_a_user_cannot_drop_or_describe_anothers_table(two_users: Catalog) -> None:
    with pytest.raises(NotFound):
        two_users.drop("BOB", "SECRET")
    with pytest.raises(NotFound):
        two_users.describe("BOB", "SECRET")
    assert two_users.describe("ANN", "SECRET").rows == 1


# --- time limit and file handling -------------------------------------------------------

def test_query_time_limit_stops_a_slow_query(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "tables", query_timeout=0.5)
    try:
        upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
        with pytest.raises(TimeLimitExceeded, match="query_timeout"):
            catalog.query("ANN", SLOW)
        assert rows(catalog, "ANN", "SELECT * FROM T") == [{"X": 1}]
    finally:
        catalog.close()


# A result of more rows than one batch (122,880), so that it streams in several.
MANY = "SELECT range AS X FROM range(300000)"
# Fails only when the scan reaches rows many batches later, after the first has been read
# (far later: DuckDB's threads scan ahead of the reader by a few batches).
LATE_FAILURE = ("SELECT CASE WHEN range < 2900000 THEN range ELSE error('row ' || range) END "
                "AS X FROM range(3000000)")
# Rows at once, and endlessly: the time limit stops it in the middle of its stream.
ENDLESS = "SELECT a.range + b.range AS X FROM range(1000000000) a, range(1000) b"


def test_a_stream_comes_in_batches_with_the_rows_of_the_query(catalog: Catalog) -> None:
    with catalog.stream("ANN", MANY) as stream:
        batches = list(stream)
    assert len(batches) > 1
    assert pa.Table.from_batches(batches).equals(catalog.query("ANN", MANY))


def test_a_query_failing_midway_through_its_stream_is_a_bad_request(catalog: Catalog) -> None:
    read: list[int] = []
    with pytest.raises(InvalidRequest, match=r"the input query failed: .*row 29\d{5}"), \
            catalog.stream("ANN", LATE_FAILURE) as stream:
        for batch in stream:
            read.append(batch.num_rows)
    assert read, "the first batch came before the failure"
    assert rows(catalog, "ANN", "SELECT 1 AS A") == [{"A": 1}]  # the cursor is usable


def test_the_time_limit_stops_a_query_midway_through_its_stream(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "tables", query_timeout=0.5)
    try:
        read = 0
        with pytest.raises(TimeLimitExceeded, match="query_timeout"), \
                catalog.stream("ANN", ENDLESS) as stream:
            for batch in stream:
                read += batch.num_rows
        assert read > 0
        assert rows(catalog, "ANN", "SELECT 2 AS A") == [{"A": 2}]
    finally:
        catalog.close()


def test_a_stream_is_checked_read_only_before_it_runs(catalog: Catalog) -> None:
    upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
    for sql in ("DROP TABLE T", "SELECT 1; SELECT 2", "SELECT * FROM read_text('/etc/passwd')"):
        with pytest.raises(InvalidRequest), catalog.stream("ANN", sql) as stream:
            stream.read_all()
    assert rows(catalog, "ANN", "SELECT * FROM T") == [{"X": 1}]


def test_warming_up_touches_no_users_database(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "tables", query_timeout=30)
    try:
        catalog.warm_up()
        assert list((tmp_path / "tables").iterdir()) == []
        assert rows(catalog, "ANN", "SELECT 3 AS A") == [{"A": 3}]
    finally:
        catalog.close()


def test_quick_queries_are_not_stopped(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "tables", query_timeout=30)
    try:
        for _ in range(20):
            assert rows(catalog, "ANN", "SELECT 42 AS A") == [{"A": 42}]
    finally:
        catalog.close()


def can_open_elsewhere(path: Path) -> bool:
    """Whether another process can open ``path`` for writing (DuckDB's file lock)."""
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    return subprocess.run([sys.executable, "-c", code, str(path)],
                          capture_output=True).returncode == 0


def test_idle_databases_are_released_for_other_processes(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "tables", query_timeout=30, idle_close=0.2)
    try:
        upload(catalog, "ANN", "T", b"X\n1\n", CSV, False)
        wait_for(lambda: can_open_elsewhere(tmp_path / "tables" / "ANN.duckdb"))
        assert rows(catalog, "ANN", "SELECT * FROM T") == [{"X": 1}]
    finally:
        catalog.close()


def test_tables_persist_across_catalogs(tmp_path: Path) -> None:
    first = Catalog(tmp_path / "tables", query_timeout=30)
    upload(first, "ANN", "T", b"X\n1\n", CSV, False)
    first.close()
    second = Catalog(tmp_path / "tables", query_timeout=30)
    try:
        assert [t.name for t in second.tables("ANN")] == ["T"]
    finally:
        second.close()


def test_a_database_role_needs_postgresql(catalog: Catalog) -> None:
    catalog.add_owner("ANN")  # nothing to make: the first upload makes the file
    with pytest.raises(InvalidRequest, match="PostgreSQL"):
        catalog.add_owner("ANN", db_role="analysts")
