"""What is the PostgreSQL catalog's own (the shared contract is in
``test_catalog_conformance.py``): column types in DuckDB's vocabulary, ``numeric``
read as doubles, what ingest cannot store refused with a message, a user's session
left clean for their next query, and the names it will not take."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import os
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pytest

from epe.data import Catalog, open_catalog
from epe.data.postgres.catalog import duckdb_type
from tests.pgserver import PostgresServer
from tests.serverproc import wait_for

_prefixes = itertools.count(1)


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.new_database("pgcat")
    yield url
    postgres.drop_database(url)


@pytest.fixture
def prefix() -> str:
    return f"p{os.getpid()}_{next(_prefixes)}_"


@pytest.fixture
def catalog(url: str, prefix: str) -> Iterator[Catalog]:
    cat = open_catalog(url, query_timeout=60, role_prefix=prefix)
    yield cat
    cat.close()


def test_types_are_reported_in_duckdbs_names(catalog: Catalog) -> None:
    table = pa.table({
        "I16": pa.array([1], pa.int16()), "I32": pa.array([1], pa.int32()),
        "I64": pa.array([1], pa.int64()), "F32": pa.array([1.0], pa.float32()),
        "F64": pa.array([1.0]), "S": ["a"], "B": [True], "D": [dt.date(2020, 1, 1)],
        "TS": pa.array([0], pa.timestamp("us")),
        "TZ": pa.array([0], pa.timestamp("us", tz="UTC")), "BIN": [b"x"],
        "L": pa.array([[1, 2]]), "N": pa.array([decimal.Decimal("1.25")],
                                               pa.decimal128(10, 2))})
    info = catalog.put("ANN", "TYPES", table, overwrite=False)
    assert {c.name: c.type for c in info.columns} == {
        "I16": "SMALLINT", "I32": "INTEGER", "I64": "BIGINT", "F32": "FLOAT",
        "F64": "DOUBLE", "S": "VARCHAR", "B": "BOOLEAN", "D": "DATE", "TS": "TIMESTAMP",
        "TZ": "TIMESTAMP WITH TIME ZONE", "BIN": "BLOB", "L": "BIGINT[]", "N": "DECIMAL"}
    # numeric reaches a function as a double, as DuckDB's DECIMAL does.
    back = catalog.query("ANN", 'SELECT "N", 2.5::numeric(4, 1) AS "M" FROM "TYPES"')
    assert back.schema.types == [pa.float64(), pa.float64()]
    assert back.to_pylist() == [{"N": 1.25, "M": 2.5}]


@pytest.mark.parametrize(("typname", "shown", "category", "expected"), [
    ("numeric", "numeric(12,3)", "N", "DECIMAL(12,3)"), ("varchar", "character varying(9)",
                                                         "S", "VARCHAR"),
    ("_text", "text[]", "A", "VARCHAR[]"), ("inet", "inet", "I", "INET"),
    ("jsonb", "jsonb", "U", "JSON"), ("timetz", "time with time zone", "D",
                                      "TIME WITH TIME ZONE"),
])
def test_duckdb_names_of_postgresql_types(typname: str, shown: str, category: str,
                                          expected: str) -> None:
    assert duckdb_type(typname, shown, category) == expected


def test_records_are_refused_with_a_message(catalog: Catalog) -> None:
    from epe.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="'R' holds records"):
        catalog.put("ANN", "NESTED", pa.table({"R": [{"x": 1}]}), overwrite=False)
    assert catalog.tables("ANN") == []


def test_a_query_leaves_nothing_in_the_session(catalog: Catalog) -> None:
    """Settings and advisory locks a query takes end with it, though the connection
    is kept for the user's next query."""
    catalog.query("ANN", "SELECT set_config('application_name', 'left over', false), "
                         "pg_advisory_lock(42)")
    after = catalog.query("ANN", "SELECT current_setting('application_name') AS a, "
                                 "(SELECT count(*) FROM pg_locks "
                                 " WHERE locktype = 'advisory') AS n")
    assert after.to_pylist() == [{"a": "", "n": 0}]


def test_a_role_epe_did_not_make_is_not_taken_over(catalog: Catalog, url: str,
                                                   prefix: str) -> None:
    from epe.errors import InvalidRequest

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{prefix}eve" LOGIN')
    with pytest.raises(InvalidRequest, match="did not make"):
        catalog.add_owner("EVE")
    with pytest.raises(InvalidRequest, match="too long"):
        catalog.add_owner("A" * 70)
    with pytest.raises(InvalidRequest, match="no role"):
        catalog.add_owner("ANN", db_role="nobody here")


def test_an_overwrite_that_fails_in_the_database_keeps_the_old_table(catalog: Catalog) -> None:
    from epe.errors import InvalidRequest

    catalog.put("ANN", "T", pa.table({"X": [1, 2, 3]}), overwrite=False)
    with pytest.raises(InvalidRequest, match="could not store table T"):
        # The old table is dropped, then text with a NUL, which PostgreSQL refuses.
        catalog.put("ANN", "T", pa.table({"X": ["a\x00b"]}), overwrite=True)
    with pytest.raises(InvalidRequest, match="bigint"):  # ADBC alone would wrap it
        catalog.put("ANN", "T", pa.table({"X": pa.array([2**64 - 1], pa.uint64())}),
                    overwrite=True)
    assert catalog.query("ANN", 'SELECT * FROM "T"').to_pylist() == [{"X": 1}, {"X": 2},
                                                                      {"X": 3}]


def test_a_role_owning_things_elsewhere_is_not_dropped_half_way(
        catalog: Catalog, postgres: PostgresServer, prefix: str) -> None:
    from epe.errors import InvalidRequest

    catalog.put("ANN", "T", pa.table({"X": [1]}), overwrite=False)
    elsewhere = postgres.new_database("elsewhere")
    try:
        with psycopg.connect(elsewhere, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute(f'ALTER TABLE kept OWNER TO "{prefix}ann"')
        with pytest.raises(InvalidRequest, match="other databases"):
            catalog.drop_owner("ANN")
        assert [t.name for t in catalog.tables("ANN")] == ["T"]  # nothing dropped
    finally:
        postgres.drop_database(elsewhere)
    catalog.drop_owner("ANN")
    assert catalog.tables("ANN") == []


def test_idle_connections_do_not_add_up_with_users(catalog: Catalog, url: str,
                                                   prefix: str) -> None:
    from epe.data.postgres.connections import MAX_IDLE

    for i in range(MAX_IDLE + 8):
        catalog.query(f"U{i}", "SELECT 1")

    def open_as_users() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            [(count,)] = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND usename LIKE %s", (prefix + "%",)).fetchall()
        return int(count)

    # A closed connection's backend takes a moment to leave pg_stat_activity.
    assert wait_for(lambda: open_as_users() <= MAX_IDLE)
