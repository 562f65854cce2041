"""The Alembic migrations build exactly the schema in epe.store.schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from epe.store import Store, open_store
from epe.store.migrate import alembic_config
from epe.store.schema import metadata


def schema_diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(store: Store) -> str | None:
    return ScriptDirectory.from_config(alembic_config(store.engine)).get_current_head()


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    try:
        assert schema_diff(store) == []
        tables = set(inspect(store.engine).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
        assert current_revision(store) == head_revision(store)
    finally:
        store.close()


def test_the_comparison_does_see_a_schema_that_drifted(tmp_path: Path) -> None:
    # Guards the test above: an empty diff must mean "equal", not "not compared".
    store = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    try:
        with store.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_jobs_owner_created"))
            conn.execute(text("ALTER TABLE users ADD COLUMN nickname TEXT"))
        kinds = {diff[0] for diff in schema_diff(store) if isinstance(diff, tuple)}
        assert {"add_index", "remove_column"} <= kinds
    finally:
        store.close()


def test_opening_twice_is_idempotent_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    first = open_store(f"sqlite:///{path}")
    first.add_user("ALICE", "hash", False)
    first.close()
    second = open_store(f"sqlite:///{path}")
    try:
        assert schema_diff(second) == []
        assert current_revision(second) == head_revision(second)
        user = second.get_user("ALICE")
        assert user is not None and user.password_hash == "hash"
        with second.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        second.close()


def test_the_store_runs_sqlite_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'metadata.sqlite'}")  # parents are created
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        store.close()
