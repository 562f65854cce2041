"""The store raises epe's own errors: a database that cannot serve now is a
``ServerBusy`` with the store's ``Retry-After``, whoever asks, so that nothing above the
store (the HTTP layer included) knows a database driver's errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event, text

from epe.errors import ServerBusy
from epe.store import open_store
from epe.store.engine import busy_pool


def test_a_database_locked_past_its_wait_is_server_busy(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite"
    store = open_store(f"sqlite:///{path}", retry_after=7)
    # The store's connections wait 50 ms for a lock, not 30 s.
    event.listen(store.engine, "connect",
                 lambda conn, _record: conn.execute("PRAGMA busy_timeout=50"))
    store.engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
    try:
        with pytest.raises(ServerBusy) as raised:
            store.add_user("ALICE", "hash", False)
        assert raised.value.extra["retry_after"] == 7
        assert "metadata database cannot be reached" in raised.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.add_user("ALICE", "hash", False)  # served again once the lock is gone
    store.close()


def test_every_connection_taken_past_the_pools_timeout_is_server_busy(tmp_path: Path) -> None:
    pool = busy_pool(retry_after=3)(lambda: sqlite3.connect(tmp_path / "db"), pool_size=1,
                                     max_overflow=0, timeout=0.05)
    held = pool.connect()
    with pytest.raises(ServerBusy) as raised:
        pool.connect()
    assert raised.value.extra["retry_after"] == 3
    held.close()
    pool.connect().close()


def test_a_wrong_statement_stays_a_bug_not_a_busy_database(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    with store.engine.connect() as conn, pytest.raises(Exception) as raised:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, ServerBusy)
    store.close()
