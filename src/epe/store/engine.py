"""The SQLite engine, and write transactions that take the lock up front.

SQLite's default deferred transaction reads first and upgrades to a write lock
later; two of those racing (two parallel ``oml.ds.save(append=True)``, say) can
fail instead of waiting. Every multi-statement write here goes through
``writing``, which begins ``IMMEDIATE`` so writers queue on ``busy_timeout``
and nothing is lost; reads stay plain deferred transactions and never block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

_IMMEDIATE = "epe_immediate"


def sqlite_engine(path: Path) -> Engine:
    # hide_parameters: an error (and so the log) never carries the values of a statement,
    # such as a job's request with its parameters.
    engine = create_engine(f"sqlite:///{path}", hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode, which is what
        # "survive kill -9" needs; only a power cut may lose the last commit.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop(_IMMEDIATE, False)
                             else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info[_IMMEDIATE] = True
        with conn.begin():
            yield conn
