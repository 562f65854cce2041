"""The same Alembic migrations build the same schema on SQLite and on PostgreSQL, and
opening a store says in one line what stops it (a newer database, a server that
cannot be reached, a missing database); replicas starting at once migrate once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Float, inspect, text

from epe.errors import InvalidSetting
from epe.store import Store, open_store
from epe.store.schema import metadata
from tests.pgserver import PostgresServer, free_port
from tests.unit.test_migrations import current_revision, head_revision, schema_diff


def generic(column_type: Any) -> str:
    """A column's type as both report it: PostgreSQL's float is a double, SQLite's REAL."""
    kind = column_type.as_generic()
    return "Float" if isinstance(kind, Float) else type(kind).__name__


def shape(store: Store) -> dict[str, Any]:
    """What a schema is made of, in terms both dialects report alike."""
    found = inspect(store.engine)
    tables: dict[str, Any] = {}
    for table in sorted(set(found.get_table_names()) - {"alembic_version"}):
        tables[table] = {
            "columns": [(c["name"], c["nullable"], generic(c["type"]))
                        for c in found.get_columns(table)],
            "primary key": found.get_pk_constraint(table)["constrained_columns"],
            # PostgreSQL lists a unique constraint's index too; it is compared below.
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in found.get_indexes(table)
                              if "duplicates_constraint" not in i),
            "unique": sorted((u["name"], tuple(u["column_names"]))
                             for u in found.get_unique_constraints(table)),
            "foreign keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    f["options"].get("ondelete"))
                                   for f in found.get_foreign_keys(table)),
        }
    return tables


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    yield store
    store.close()


@pytest.fixture
def pg_store(postgres: PostgresServer) -> Any:
    store = open_store(postgres.new_database())
    yield store
    store.close()


def test_migrations_build_the_declared_schema_on_postgresql(pg_store: Store) -> None:
    assert schema_diff(pg_store) == []
    assert set(inspect(pg_store.engine).get_table_names()) == \
        set(metadata.tables) | {"alembic_version"}
    assert current_revision(pg_store) == head_revision(pg_store)


def test_both_databases_get_the_same_schema(sqlite_store: Store, pg_store: Store) -> None:
    sqlite_shape, pg_shape = shape(sqlite_store), shape(pg_store)
    assert set(sqlite_shape) == set(metadata.tables)
    for table in sqlite_shape:  # table by table, for a readable failure
        assert pg_shape[table] == sqlite_shape[table], table
    assert pg_shape == sqlite_shape


def stamp(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_of_a_newer_epe_is_refused_in_one_line(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'metadata.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    store = open_store(url)
    stamp(store, "0099_from_the_future")
    store.close()
    with pytest.raises(InvalidSetting, match=r"at migration 0099_from_the_future.*newer epe"):
        open_store(url)


def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"postgresql://epe:secret-pw@127.0.0.1:{free_port()}/epe"
    with pytest.raises(InvalidSetting, match="cannot open the metadata database") as caught:
        open_store(url)
    assert "secret-pw" not in str(caught.value)  # the password is never shown


def test_a_missing_database_is_a_clear_error(postgres: PostgresServer) -> None:
    with pytest.raises(InvalidSetting, match='database "no_such_db" does not exist'):
        open_store(postgres.url("no_such_db"))


OPEN = "import sys; from epe.store import open_store; open_store(sys.argv[1]).close()"


def test_servers_starting_at_once_migrate_once(postgres: PostgresServer) -> None:
    # Separate processes, as replicas are: the advisory lock orders their migrations.
    url = postgres.new_database()
    starts = [subprocess.Popen([sys.executable, "-c", OPEN, url], stderr=subprocess.PIPE,
                               text=True) for _ in range(4)]
    for proc in starts:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = open_store(url)
    try:
        assert schema_diff(store) == []
        assert current_revision(store) == head_revision(store)
    finally:
        store.close()
