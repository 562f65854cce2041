"""The table catalog's contract, which every backend must pass: owner-scoped tables
in and out as Arrow, atomic replacement, read-only queries as tables and streams (with
relations handed in for one statement),
a time limit, and the errors of ``epe.data.catalog``.

Run on embedded DuckDB files in a temporary folder and on a new database of the
session's PostgreSQL server; another backend is one more entry of ``BACKENDS``.
(``test_catalog.py`` and ``test_postgres_catalog.py`` test what is each one's own.)"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from epe.data import Catalog, open_catalog
from epe.errors import (
    Conflict,
    InvalidRequest,
    InvalidSetting,
    NotFound,
    NotReady,
    TimeLimitExceeded,
)

# A query that runs until stopped, in each backend's SQL.
SLOW = {"duckdb": "SELECT count(*) FROM range(1000000000) a, range(1000000000) b",
        "postgresql": "SELECT pg_sleep(600)"}
_prefixes = itertools.count(1)


def duckdb_url(request: pytest.FixtureRequest, folder: Path) -> str:
    return f"duckdb:///{folder / 'tables'}"


def postgresql_url(request: pytest.FixtureRequest, folder: Path) -> str:
    return str(request.getfixturevalue("postgres").new_database("catalog"))


# Each backend: how to name a fresh, empty catalog (given a folder of the test's own).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "duckdb": duckdb_url, "postgresql": postgresql_url}


@pytest.fixture(params=sorted(BACKENDS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def prefix() -> str:
    """Roles are the whole PostgreSQL server's: each test's users get names of their own."""
    return f"c{os.getpid()}_{next(_prefixes)}_"


@pytest.fixture
def catalog(url: str, prefix: str) -> Iterator[Catalog]:
    cat = open_catalog(url, query_timeout=60, role_prefix=prefix)
    yield cat
    cat.close()


def fruit() -> pa.Table:
    return pa.table({"ID": pa.array([1, 2, 3], pa.int64()),
                     "NAME": ["apple", "pear", None],
                     "PRICE": pa.array([2.5, 3.0, 1.25], pa.float64())})


def test_a_table_goes_in_and_comes_back_as_arrow(catalog: Catalog) -> None:
    info = catalog.put("ANN", "FRUIT", fruit(), overwrite=False)
    assert (info.name, info.rows) == ("FRUIT", 3)
    assert [c.name for c in info.columns] == ["ID", "NAME", "PRICE"]
    back = catalog.query("ANN", 'SELECT * FROM "FRUIT" ORDER BY "ID"')
    assert back.to_pylist() == fruit().to_pylist()


def test_list_describe_and_drop(catalog: Catalog) -> None:
    assert catalog.tables("ANN") == []
    catalog.put("ANN", "B_T", fruit(), overwrite=False)
    catalog.put("ANN", "A_T", fruit().slice(0, 1), overwrite=False)
    assert [(t.name, t.rows) for t in catalog.tables("ANN")] == [("A_T", 1), ("B_T", 3)]
    assert catalog.describe("ANN", "a_t") == catalog.tables("ANN")[0]  # names ignore case
    catalog.drop("ANN", "A_T")
    assert [t.name for t in catalog.tables("ANN")] == ["B_T"]
    with pytest.raises(NotFound):
        catalog.drop("ANN", "A_T")
    with pytest.raises(NotFound):
        catalog.describe("ANN", "A_T")


def test_an_existing_table_needs_overwrite_which_replaces_it_whole(catalog: Catalog) -> None:
    catalog.put("ANN", "T", fruit(), overwrite=False)
    with pytest.raises(Conflict):
        catalog.put("ANN", "t", fruit(), overwrite=False)
    info = catalog.put("ANN", "T", pa.table({"X": ["only"]}), overwrite=True)
    assert (info.rows, [c.name for c in info.columns]) == (1, ["X"])


def test_owners_never_see_each_others_tables(catalog: Catalog) -> None:
    catalog.put("ANN", "SECRET", fruit(), overwrite=False)
    assert catalog.tables("BOB") == []
    with pytest.raises(InvalidRequest):
        catalog.query("BOB", 'SELECT * FROM "SECRET"')
    with pytest.raises(NotFound):
        catalog.describe("BOB", "SECRET")


@pytest.mark.parametrize("sql", [
    'INSERT INTO "T" VALUES (4, \'fig\', 1.0)',
    'DROP TABLE "T"',
    'SELECT 1; SELECT 2',
    "not sql at all",
])
def test_only_one_read_only_query_runs(catalog: Catalog, sql: str) -> None:
    catalog.put("ANN", "T", fruit(), overwrite=False)
    with pytest.raises(InvalidRequest):
        catalog.query("ANN", sql)
    assert catalog.describe("ANN", "T").rows == 3


def test_a_stream_gives_the_same_rows_in_batches(catalog: Catalog) -> None:
    big = pa.table({"N": pa.array(range(300_000), pa.int64())})
    catalog.put("ANN", "BIG", big, overwrite=False)
    with catalog.stream("ANN", 'SELECT "N" FROM "BIG" ORDER BY "N"') as rows:
        batches = list(rows)
    assert len(batches) > 1
    assert pa.Table.from_batches(batches).column("N").to_pylist() == list(range(300_000))


def test_a_bad_query_in_a_stream_is_refused_before_any_row(catalog: Catalog) -> None:
    with pytest.raises(InvalidRequest), catalog.stream("ANN", 'SELECT * FROM "NOPE"') as rows:
        list(rows)


def test_a_query_past_its_time_limit_is_stopped(url: str, prefix: str) -> None:
    catalog = open_catalog(url, query_timeout=0.5, role_prefix=prefix)
    try:
        with pytest.raises(TimeLimitExceeded):
            catalog.query("ANN", SLOW[url.split(":", 1)[0]])
        assert catalog.query("ANN", 'SELECT 1 AS "X"').to_pylist() == [{"X": 1}]
    finally:
        catalog.close()


def test_dropping_an_owner_drops_all_their_tables_only(catalog: Catalog) -> None:
    catalog.put("ANN", "A", fruit(), overwrite=False)
    catalog.put("ANN", "B", fruit(), overwrite=False)
    catalog.put("BOB", "A", fruit(), overwrite=False)
    catalog.drop_owner("ANN")
    assert catalog.tables("ANN") == []
    assert [t.name for t in catalog.tables("BOB")] == ["A"]


@pytest.mark.parametrize("name", ["1ABC", "A-B", "", "A B", "x" * 129])
def test_a_bad_table_name_is_refused(catalog: Catalog, name: str) -> None:
    with pytest.raises(InvalidRequest):
        catalog.put("ANN", name, fruit(), overwrite=False)


def test_warm_up_then_work(catalog: Catalog) -> None:
    catalog.warm_up()
    assert catalog.query("ANN", 'SELECT 42 AS "X"').to_pylist() == [{"X": 42}]


def test_adding_an_owner_twice_changes_nothing(catalog: Catalog) -> None:
    catalog.add_owner("ANN")
    catalog.put("ANN", "T", fruit(), overwrite=False)
    catalog.add_owner("ANN")
    assert [t.name for t in catalog.tables("ANN")] == ["T"]


@pytest.mark.parametrize("bad", ["mysql://host/db", "duckdb://", "tables", "postgresql:///db",
                                 "postgresql://u:secret@/db"])
def test_a_url_that_names_no_catalog_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidSetting, match="data URL") as e:
        open_catalog(bad, query_timeout=1)
    assert "secret" not in str(e.value)  # a password is never shown


def test_a_catalog_says_whether_it_can_serve(catalog: Catalog) -> None:
    catalog.check()  # ready: returns
    catalog.close()
    with pytest.raises(NotReady):
        catalog.check()


def test_relations_are_read_by_name_for_one_statement(catalog: Catalog) -> None:
    """Arrow tables handed with a query (OML's views, table functions' results) are read
    as relations of that statement only, typed as they are, empty ones too."""
    catalog.put("ANN", "FRUIT", fruit(), overwrite=False)
    extra = pa.table({"ID": pa.array([2, 3], pa.int64()), "TAG": ["it's", None],
                      "IMAGE": pa.array([b"\x89PNG", None], pa.binary())})
    empty = extra.slice(0, 0)
    sql = ('SELECT f."NAME", x."TAG", x."IMAGE", (SELECT count(*) FROM "__epe_none") AS "N" '
           'FROM "FRUIT" f JOIN "__epe_x" x ON f."ID" = x."ID" ORDER BY f."ID"')
    relations = {"__epe_x": extra, "__epe_none": empty}
    rows = catalog.query("ANN", sql, relations).to_pylist()
    assert rows == [{"NAME": "pear", "TAG": "it's", "IMAGE": b"\x89PNG", "N": 0},
                    {"NAME": None, "TAG": None, "IMAGE": None, "N": 0}]
    with catalog.stream("ANN", sql, relations) as reader:
        assert reader.read_all().to_pylist() == rows
    with pytest.raises(InvalidRequest):  # gone after the statement
        catalog.query("ANN", 'SELECT * FROM "__epe_x"')
    assert catalog.query("ANN", 'SELECT count(*) AS "N" FROM "FRUIT"').to_pylist() == [{"N": 3}]
